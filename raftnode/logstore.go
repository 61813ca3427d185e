package raftnode

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	raftwal "github.com/hashicorp/raft-wal"
	"go.etcd.io/bbolt"
)

// logStore is the raft log plus raft's stable store (term, vote), kept in
// one place so that they are never out of step.
type logStore interface {
	raft.LogStore
	raft.StableStore
	Close() error
}

// Paths of the log stores under Config.Dir.
const (
	boltFile = "raft.db"
	walDir   = "wal"
)

// openLogStore opens the configured log store. It refuses to open one kind
// where the other already holds this node's raft state: switching stores
// would silently forget the log, the term and the vote.
func openLogStore(cfg Config, hl hclog.Logger, log *slog.Logger) (logStore, error) {
	boltPath, walPath := filepath.Join(cfg.Dir, boltFile), filepath.Join(cfg.Dir, walDir)
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	switch cfg.LogStore {
	case LogStoreWAL:
		if exists(boltPath) {
			return nil, fmt.Errorf("%s holds this node's raft log (bolt store); it cannot be opened with the wal store", boltPath)
		}
		if err := os.MkdirAll(walPath, 0o755); err != nil {
			return nil, err
		}
		w, err := raftwal.Open(walPath, raftwal.WithLogger(hl.Named("wal")))
		if err != nil {
			return nil, err
		}
		return walStore{w}, nil
	case LogStoreBolt, "":
		if exists(walPath) {
			return nil, fmt.Errorf("%s holds this node's raft log (wal store); start with the wal log store", walPath)
		}
		s, err := openBolt(boltPath, cfg.LogNoSync, cfg.CompactLogAtOpen, log)
		if err != nil {
			return nil, err
		}
		return newLazyHead(s), nil
	}
	return nil, errors.New("unknown log store " + cfg.LogStore)
}

// walStore hides entries below the first index. raft-wal v0.4.1 keeps
// serving entries of a truncated head until their segment file is deleted
// (at the latest on reopen); raft would then replicate from the log instead
// of sending a snapshot, unlike with the bolt store.
type walStore struct{ *raftwal.WAL }

func (w walStore) GetLog(index uint64, out *raft.Log) error {
	first, err := w.WAL.FirstIndex()
	if err != nil {
		return err
	}
	if index < first {
		return raft.ErrLogNotFound
	}
	return w.WAL.GetLog(index, out)
}

// ErrLogLocked: the raft log is in use by a running node.
var ErrLogLocked = errors.New("raftnode: raft log is locked by a running node")

// OpenLogForInspection opens the raft log of a stopped node (raftDir is its
// Config.Dir), whichever store holds it, for tools that read it. The bolt
// store is opened read-only; raft-wal has no read-only mode and runs its
// usual recovery on open, as a restart would.
func OpenLogForInspection(raftDir string) (raft.LogStore, func() error, error) {
	boltPath, walPath := filepath.Join(raftDir, boltFile), filepath.Join(raftDir, walDir)
	lockCheck := func(path string) error {
		db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
		if errors.Is(err, bbolt.ErrTimeout) {
			return fmt.Errorf("%w: %s", ErrLogLocked, path)
		}
		if err != nil {
			return err
		}
		return db.Close()
	}
	if _, err := os.Stat(walPath); err == nil {
		if err := lockCheck(filepath.Join(walPath, "wal-meta.db")); err != nil {
			return nil, nil, err
		}
		w, err := raftwal.Open(walPath, raftwal.WithLogger(hclog.NewNullLogger()))
		if err != nil {
			return nil, nil, err
		}
		return walStore{w}, w.Close, nil
	}
	if _, err := os.Stat(boltPath); err != nil {
		return nil, nil, fmt.Errorf("raft log: %w", err)
	}
	if err := lockCheck(boltPath); err != nil {
		return nil, nil, err
	}
	s, err := raftboltdb.New(raftboltdb.Options{Path: boltPath, BoltOptions: &bbolt.Options{ReadOnly: true, Timeout: 2 * time.Second}})
	if err != nil {
		return nil, nil, err
	}
	return s, s.Close, nil
}

// boltOptions are bbolt's defaults but for the freelist, as etcd sets
// them: a map instead of a sorted array (releasing pages merges into it
// instead of re-sorting the whole list) and not written at every commit
// (rebuilt by scanning the file on open). After raft compacts a large log
// away, the freelist lists every page the log once used: with bbolt's
// defaults each append then allocated and wrote the whole list — about
// 2 MB per append after 1 GiB of state went through the log.
func boltOptions() *bbolt.Options {
	return &bbolt.Options{NoFreelistSync: true, FreelistType: bbolt.FreelistMapType}
}
