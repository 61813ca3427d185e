package raftnode

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

func TestLogStoresKeepStateAcrossReopen(t *testing.T) {
	for _, kind := range []string{LogStoreBolt, LogStoreWAL} {
		t.Run(kind, func(t *testing.T) {
			cfg := Config{Dir: t.TempDir(), LogStore: kind}
			s, err := openLogStore(cfg, hclog.NewNullLogger(), slog.New(slog.DiscardHandler))
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
			if s, err = openLogStore(cfg, hclog.NewNullLogger(), slog.New(slog.DiscardHandler)); err != nil {
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
		s, err := openLogStore(Config{Dir: dir, LogStore: tc.from}, hclog.NewNullLogger(), slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		_ = s.Close()
		if _, err := openLogStore(Config{Dir: dir, LogStore: tc.to}, hclog.NewNullLogger(), slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "holds this node's raft log") {
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

// After raft compacts a long log away, an append must not pay for the
// pages the log once used: with bbolt's default freelist (a sorted array,
// written at every commit) each commit allocated and wrote the whole list,
// 2 MB per append after 1 GiB of state had gone through the log. Fails if
// boltOptions syncs the freelist.
func TestBoltAppendAfterCompactionDoesNotWriteTheFreelist(t *testing.T) {
	s, err := openLogStore(Config{Dir: t.TempDir(), LogNoSync: true}, hclog.NewNullLogger(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	lh := s.(*lazyHead)
	bolt := lh.logStore.(*raftboltdb.BoltStore)
	const n = 4000
	appendLogs(t, s, 1, n, make([]byte, 16<<10))
	if err := s.DeleteRange(1, n-1); err != nil {
		t.Fatal(err)
	}
	if err := lh.flush(); err != nil {
		t.Fatal(err)
	}
	free := bolt.Stats().FreePageN
	if free < n {
		t.Fatalf("%d free pages after deleting %d entries of 16 KiB: the setup did not free the log's pages", free, n-1)
	}
	before := bolt.Stats().TxStats.PageAlloc
	if err := s.StoreLog(&raft.Log{Index: n + 1, Term: 1, Type: raft.LogCommand, Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if alloc := bolt.Stats().TxStats.PageAlloc - before; alloc > 32<<10 {
		t.Fatalf("appending one small entry allocated %d bytes of pages with %d pages free: the freelist is written at every commit", alloc, free)
	}
}
