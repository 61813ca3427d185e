// Package raftlog is the format `cairn debug raft-log -o json` prints, and
// the harness side that runs it on a stopped node and reads the result.
// The command (cmd/cairn/debug_log.go) and the harness share these types
// so that the format is defined in one place.
package raftlog

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"time"
)

// Commit-bound sources: how the dump decided which entries are committed.
const (
	// CommitFromFlag: the caller passed --commit-index.
	CommitFromFlag = "flag"
	// CommitFromFSM: the state machine's persisted applied index. Only
	// committed entries are ever applied, so every entry at or below it
	// is committed.
	CommitFromFSM = "fsm-applied-index"
	// CommitUnknown: no bound was available; with --all every entry is
	// listed and marked not known to be committed.
	CommitUnknown = "unknown"
)

// Dump is one node's raft log.
type Dump struct {
	DataDir    string `json:"data_dir"`
	FirstIndex uint64 `json:"first_index"` // 0 when the log is empty
	LastIndex  uint64 `json:"last_index"`
	// CommitIndex bounds the entries known committed; CommitSource says
	// where it came from.
	CommitIndex  uint64 `json:"commit_index"`
	CommitSource string `json:"commit_source"`
	// Snapshots lists the raft snapshots on disk: if the log was compacted
	// (FirstIndex > 1) the entries before it are only in a snapshot and
	// their request ids are lost.
	Snapshots []Snapshot `json:"snapshots,omitempty"`
	Entries   []Entry    `json:"entries"`
	// Omitted counts entries above CommitIndex that were not listed.
	Omitted int `json:"omitted,omitempty"`
}

// Snapshot is a raft snapshot's metadata.
type Snapshot struct {
	ID    string `json:"id"`
	Index uint64 `json:"index"`
	Term  uint64 `json:"term"`
}

// Entry is one raft log entry with its decoded cairn command.
type Entry struct {
	Index      uint64    `json:"index"`
	Term       uint64    `json:"term"`
	Type       string    `json:"type"` // raft log type: LogCommand, LogConfiguration, LogNoop, ...
	Committed  bool      `json:"committed"`
	AppendedAt time.Time `json:"appended_at,omitzero"`

	// Command is the cairn command type for LogCommand entries: batch,
	// register-producer, set-node-meta, create-table, drop-table.
	Command   string `json:"command,omitempty"`
	RequestID uint64 `json:"request_id,omitempty"`
	// Producer is set for batches from a producer session.
	Producer *Producer `json:"producer,omitempty"`
	// ProducerName is set for register-producer entries.
	ProducerName string `json:"producer_name,omitempty"`
	Ops          int    `json:"ops,omitempty"`
	// NodeID and GRPCAddr are set for set-node-meta entries.
	NodeID   string `json:"node_id,omitempty"`
	GRPCAddr string `json:"grpc_addr,omitempty"`
	// Servers is the membership of a configuration entry.
	Servers []Server `json:"servers,omitempty"`
	// Error says why an entry could not be decoded.
	Error string `json:"error,omitempty"`
}

// Producer identifies a producer-session batch.
type Producer struct {
	ID    uint64 `json:"id"`
	Epoch uint64 `json:"epoch"`
	Seq   uint64 `json:"seq"`
}

// Server is one member of a configuration entry.
type Server struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	Voter   bool   `json:"voter"`
}

// Read parses a dump.
func Read(r io.Reader) (*Dump, error) {
	var d Dump
	dec := json.NewDecoder(r)
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("raftlog: decoding dump: %w", err)
	}
	return &d, nil
}

// Load runs `BIN debug raft-log --data-dir DIR -o json` on a stopped
// node's data directory and parses the result.
func Load(ctx context.Context, bin, dataDir string) (*Dump, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "debug", "raft-log", "--data-dir", dataDir, "-o", "json")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("raftlog: %s debug raft-log --data-dir %s: %w: %s", bin, dataDir, err, strings.TrimSpace(stderr.String()))
	}
	return Read(&stdout)
}
