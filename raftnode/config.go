package raftnode

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hashicorp/raft"
)

// Peer is one member of the initial cluster.
type Peer struct {
	ID   string
	Addr string // raft address host:port
}

// Config configures a Node.
type Config struct {
	NodeID string
	// Dir holds the raft log (raft.db) and snapshots.
	Dir string
	// RaftAddr is the address to listen on for raft traffic; AdvertiseAddr
	// (default RaftAddr) is what peers dial.
	RaftAddr      string
	AdvertiseAddr string
	// GRPCAddr is this node's client-facing address, recorded in the
	// replicated state so that followers can forward to the leader.
	GRPCAddr string
	// Bootstrap lists the initial voters. Every node of a new cluster gets
	// the same list; it is ignored when the node already has raft state.
	Bootstrap []Peer

	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	MaxAppendEntries   int
	// LogCacheBytes bounds the memory of the recent log entries kept for
	// replication and applies (2×MaxAppendEntries of them at most).
	LogCacheBytes     int64
	SnapshotInterval  time.Duration
	SnapshotThreshold uint64
	// SnapshotBytes: log bytes applied since the newest checkpoint that
	// trigger a new one (0: off). raft itself counts only entries
	// (SnapshotThreshold); this trigger is the node's (internal/node
	// cadence.go) and bounds what a restart reads: raft scans the whole
	// log after the newest checkpoint before the node can be ready.
	SnapshotBytes uint64
	TrailingLogs  uint64
	// ApplyTimeout bounds queueing a command (not its commit).
	ApplyTimeout time.Duration
	// Pipeline enables raft's pipelined replication. Off by default: it
	// can deadlock after a partition heals (hashicorp/raft#612).
	Pipeline bool
	// LogNoSync disables fsync of the raft log. Only for benchmarks that
	// show what fsync costs: acknowledged writes are then NOT durable.
	// Bolt store only.
	LogNoSync bool
	// LogStore picks the raft log and stable store: LogStoreBolt (default,
	// Dir/raft.db) or LogStoreWAL (opt-in, hashicorp/raft-wal in Dir/wal).
	// A node keeps the store it was created with.
	LogStore string
	// CompactLogAtOpen rewrites the bolt log into a new file at open when
	// that frees at least 64 MiB and copies at most 64 MiB (boltcompact.go):
	// bbolt never shrinks its file, so a bulk load's log would otherwise
	// keep its size.
	CompactLogAtOpen bool

	// StreamLayer, if set, carries raft traffic (fault injection);
	// otherwise a TCP listener on RaftAddr.
	StreamLayer raft.StreamLayer
	// StreamTLS, if set, wraps that stream layer in TLS (TLSStreamLayer).
	StreamTLS *StreamTLS
	// SnapshotStore, if set, replaces raft's file snapshot store.
	SnapshotStore raft.SnapshotStore
	Logger        *slog.Logger
}

// DefaultConfig returns a Config with production defaults for a LAN.
func DefaultConfig() Config {
	return Config{
		HeartbeatTimeout:   1000 * time.Millisecond,
		ElectionTimeout:    1000 * time.Millisecond,
		LeaderLeaseTimeout: 500 * time.Millisecond,
		CommitTimeout:      5 * time.Millisecond,
		MaxAppendEntries:   256,
		LogCacheBytes:      64 << 20,
		SnapshotInterval:   30 * time.Second,
		SnapshotThreshold:  16384,
		SnapshotBytes:      64 << 20,
		TrailingLogs:       10240,
		ApplyTimeout:       10 * time.Second,
		LogStore:           LogStoreBolt,
		CompactLogAtOpen:   true,
	}
}

// Log stores.
const (
	// LogStoreBolt is raft-boltdb: one bbolt transaction (two fdatasyncs)
	// per append. The default.
	LogStoreBolt = "bolt"
	// LogStoreWAL is hashicorp/raft-wal v0.4.1: append-only segment files,
	// one fsync per append, much faster here (docs/benchmarks.md). Opt-in
	// only: a crash or shutdown between the append that seals a segment and
	// the rotation that follows leaves a log that refuses every later append
	// (TestWALSealedTailIsStuck); acknowledged entries are never lost
	// (TestWALStoreSurvivesPowerLoss).
	LogStoreWAL = "wal"
)

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.NodeID == "" {
		errs = append(errs, errors.New("NodeID is required"))
	}
	if c.Dir == "" {
		errs = append(errs, errors.New("Dir is required"))
	}
	if c.RaftAddr == "" && c.StreamLayer == nil {
		errs = append(errs, errors.New("RaftAddr or StreamLayer is required"))
	}
	if c.MaxAppendEntries < 1 || c.MaxAppendEntries > 1024 {
		errs = append(errs, fmt.Errorf("MaxAppendEntries must be in [1,1024], got %d", c.MaxAppendEntries))
	}
	if c.LogCacheBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("LogCacheBytes must be at least 1 MiB, got %d", c.LogCacheBytes))
	}
	switch c.LogStore {
	case LogStoreBolt:
	case LogStoreWAL:
		if c.LogNoSync {
			errs = append(errs, errors.New("LogNoSync is only supported with the bolt log store"))
		}
	default:
		errs = append(errs, fmt.Errorf("LogStore must be %q or %q, got %q", LogStoreBolt, LogStoreWAL, c.LogStore))
	}
	if c.ApplyTimeout <= 0 {
		errs = append(errs, errors.New("ApplyTimeout must be > 0"))
	}
	seen := map[string]bool{}
	for _, p := range c.Bootstrap {
		if p.ID == "" || p.Addr == "" {
			errs = append(errs, fmt.Errorf("bootstrap peer %q: id and address are required", p.ID+"="+p.Addr))
		}
		if seen[p.ID] {
			errs = append(errs, fmt.Errorf("bootstrap peer %q listed twice", p.ID))
		}
		seen[p.ID] = true
	}
	if len(c.Bootstrap) > 0 && !seen[c.NodeID] {
		errs = append(errs, fmt.Errorf("bootstrap list does not include this node %q", c.NodeID))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("raftnode: invalid config: %w", err)
	}
	return nil
}

func (c Config) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.NodeID)
	rc.HeartbeatTimeout = c.HeartbeatTimeout
	rc.ElectionTimeout = c.ElectionTimeout
	rc.LeaderLeaseTimeout = c.LeaderLeaseTimeout
	rc.CommitTimeout = c.CommitTimeout
	rc.MaxAppendEntries = c.MaxAppendEntries
	rc.SnapshotInterval = c.SnapshotInterval
	rc.SnapshotThreshold = c.SnapshotThreshold
	rc.TrailingLogs = c.TrailingLogs
	// The FSM keeps its state in Pebble with the applied index: a restart
	// reopens it and raft only re-applies entries after the snapshot index.
	rc.NoSnapshotRestoreOnStart = true
	rc.PreVoteDisabled = false
	return rc
}
