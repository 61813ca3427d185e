package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"gocloud.dev/blob"

	"github.com/cairn-db/cairn/raftnode"
	"github.com/cairn-db/cairn/snapshot"
)

// RestoreConfig prepares a data directory from an exported checkpoint.
type RestoreConfig struct {
	// Bucket (or BucketURL, opened here) holds the export; Checkpoint
	// names one ("" takes the newest).
	Bucket     *blob.Bucket
	BucketURL  string
	Checkpoint string
	// DataDir is the new node's --data-dir; it must hold no state.
	DataDir string
	NodeID  string
	// Peers are the voters of the new cluster (ids and raft addresses),
	// the same list for every node; it must include NodeID.
	Peers []raftnode.Peer
	// GRPCAdvertise, if known, is recorded as where peers fetch the
	// checkpoint's files from this node (members' announced addresses are
	// tried as well).
	GRPCAdvertise string
}

// RestoreResult says what a data directory was prepared with.
type RestoreResult struct {
	Manifest   *snapshot.Manifest
	SnapshotID string // the snapshot committed in the node's store
}

// ErrHasState: a restore target already holds a node's state.
var ErrHasState = errors.New("node: data directory already holds state")

// Restore prepares DataDir so that `cairn serve` on it starts a member of
// a new cluster with the exported checkpoint's state:
//
//  1. snapshot.RestoreFrom downloads and verifies the checkpoint into the
//     state machine's directory (DataDir/state/db);
//  2. before anything opens that DB, Store.Adopt puts its files in the
//     node's snapshot store and commits a raft snapshot at the
//     index and term of the last entry the checkpoint holds
//     (Manifest.State) whose configuration is Peers. raft
//     starts from that snapshot (no bootstrap needed), so the new
//     cluster's log continues above the state's applied index instead of
//     being numbered from 1 and skipped by the state machine;
//  3. the raft stable store's current term is raised to the checkpoint's
//     term, so that the new cluster's terms do not go backwards behind
//     the snapshot (its leaders' entries would otherwise carry terms
//     lower than the snapshot's, which breaks raft's log comparison).
//
// Every node of the new cluster is prepared from the same checkpoint and
// Peers. On failure, what Restore created is removed.
func Restore(ctx context.Context, cfg RestoreConfig) (res *RestoreResult, err error) {
	if cfg.DataDir == "" || cfg.NodeID == "" {
		return nil, errors.New("node: restore needs a data directory and a node id")
	}
	conf := raft.Configuration{}
	self := false
	for _, p := range cfg.Peers {
		conf.Servers = append(conf.Servers, raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr), Suffrage: raft.Voter})
		self = self || p.ID == cfg.NodeID
	}
	if !self {
		return nil, fmt.Errorf("node: restore: the new cluster's members (%d given) must include this node %q", len(cfg.Peers), cfg.NodeID)
	}
	stateDir, snapDir, raftDir := filepath.Join(cfg.DataDir, "state"), filepath.Join(cfg.DataDir, "snapshots"), filepath.Join(cfg.DataDir, "raft")
	for _, d := range []string{stateDir, snapDir, raftDir} {
		if _, err := os.Stat(d); err == nil {
			return nil, fmt.Errorf("%w: %s exists", ErrHasState, d)
		}
	}
	_, statErr := os.Stat(cfg.DataDir)
	created := errors.Is(statErr, fs.ErrNotExist)
	if err := claimDataDir(cfg.DataDir, cfg.NodeID); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			for _, d := range []string{stateDir, snapDir, raftDir} {
				_ = os.RemoveAll(d)
			}
			if created { // leave nothing of a failed restore behind
				_ = os.RemoveAll(cfg.DataDir)
			}
		}
	}()
	b := cfg.Bucket
	if b == nil {
		if b, err = snapshot.OpenBucket(ctx, cfg.BucketURL); err != nil {
			return nil, fmt.Errorf("node: restore: %w", err)
		}
		defer b.Close()
	}
	m, err := snapshot.RestoreFromBucket(ctx, b, cfg.Checkpoint, stateDir)
	if err != nil {
		return nil, err
	}
	store, err := snapshot.Open(snapshot.DefaultConfig(snapDir, cfg.NodeID, cfg.GRPCAdvertise))
	if err != nil {
		return nil, err
	}
	stateIndex, stateTerm := m.State()
	id, err := store.Adopt(m, filepath.Join(stateDir, "db"), conf, stateIndex)
	if err != nil {
		return nil, err
	}
	if err := seedTerm(raftDir, max(m.Term, stateTerm)); err != nil {
		return nil, err
	}
	return &RestoreResult{Manifest: m, SnapshotID: id}, nil
}

// seedTerm sets the raft stable store's current term (raft's persisted
// key "CurrentTerm") in a new raft directory.
func seedTerm(dir string, term uint64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	st, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		return fmt.Errorf("node: restore: open raft store: %w", err)
	}
	err = st.SetUint64([]byte("CurrentTerm"), term)
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	return err
}
