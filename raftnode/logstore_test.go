package raftnode

import (
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

func TestLogStoresKeepStateAcrossReopen(t *testing.T) {
	for _, kind := range []string{LogStoreBolt, LogStoreWAL} {
		t.Run(kind, func(t *testing.T) {
			cfg := Config{Dir: t.TempDir(), LogStore: kind}
			s, err := openLogStore(cfg, hclog.NewNullLogger())
			if err != nil {
				t.Fatal(err)
			}
			var logs []*raft.Log
			for i := uint64(1); i <= 300; i++ {
				logs = append(logs, &raft.Log{Index: i, Term: 2, Type: raft.LogCommand, Data: []byte{byte(i)}})
			}
			if err := s.StoreLogs(logs); err != nil {
				t.Fatal(err)
			}
			if err := s.SetUint64([]byte("CurrentTerm"), 2); err != nil {
				t.Fatal(err)
			}
			// Compaction removes a prefix: it must be gone at once, as
			// with bolt, so that raft sends a snapshot instead.
			if err := s.DeleteRange(1, 200); err != nil {
				t.Fatal(err)
			}
			var l raft.Log
			if err := s.GetLog(150, &l); !errors.Is(err, raft.ErrLogNotFound) {
				t.Fatalf("truncated entry: %v, want not found", err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if s, err = openLogStore(cfg, hclog.NewNullLogger()); err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			first, _ := s.FirstIndex()
			last, _ := s.LastIndex()
			term, _ := s.GetUint64([]byte("CurrentTerm"))
			if first != 201 || last != 300 || term != 2 {
				t.Fatalf("after reopen first=%d last=%d term=%d, want 201 300 2", first, last, term)
			}
			if err := s.GetLog(250, &l); err != nil || l.Data[0] != 250 {
				t.Fatalf("entry 250: %v %v", err, l.Data)
			}
		})
	}
}

func TestLogStoreCannotBeSwitched(t *testing.T) {
	for _, tc := range []struct{ from, to string }{{LogStoreBolt, LogStoreWAL}, {LogStoreWAL, LogStoreBolt}} {
		dir := t.TempDir()
		s, err := openLogStore(Config{Dir: dir, LogStore: tc.from}, hclog.NewNullLogger())
		if err != nil {
			t.Fatal(err)
		}
		_ = s.Close()
		if _, err := openLogStore(Config{Dir: dir, LogStore: tc.to}, hclog.NewNullLogger()); err == nil || !strings.Contains(err.Error(), "holds this node's raft log") {
			t.Fatalf("%s -> %s: %v, want a refusal", tc.from, tc.to, err)
		}
	}
}

func TestLogStoreConfig(t *testing.T) {
	c := DefaultConfig()
	c.NodeID, c.Dir, c.RaftAddr = "n1", "d", "127.0.0.1:0"
	if c.LogStore != LogStoreBolt {
		t.Fatalf("default log store %q, want bolt", c.LogStore)
	}
	c.LogStore, c.LogNoSync = LogStoreWAL, true
	if err := c.Validate(); err == nil {
		t.Fatal("wal with LogNoSync accepted")
	}
	c.LogStore, c.LogNoSync = "rocks", false
	if err := c.Validate(); err == nil {
		t.Fatal("unknown log store accepted")
	}
}
