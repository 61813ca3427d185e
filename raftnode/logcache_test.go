package raftnode

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/hashicorp/raft"
)

// countingStore is an in-memory log store that counts the reads that
// reached it (cache misses).
type countingStore struct {
	*raft.InmemStore
	reads map[uint64]int
}

func (s *countingStore) GetLog(index uint64, log *raft.Log) error {
	s.reads[index]++
	return s.InmemStore.GetLog(index, log)
}

func entries(from, to uint64, size int) []*raft.Log {
	var logs []*raft.Log
	for i := from; i <= to; i++ {
		data := bytes.Repeat([]byte{byte(i)}, size)
		logs = append(logs, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: data})
	}
	return logs
}

// readAll reads every index in [from, to] and checks what it got; it
// returns the indexes that reached the store.
func readAll(t *testing.T, c raft.LogStore, s *countingStore, from, to uint64) []uint64 {
	t.Helper()
	clear(s.reads)
	var missed []uint64
	for i := from; i <= to; i++ {
		var l raft.Log
		if err := c.GetLog(i, &l); err != nil {
			t.Fatalf("GetLog(%d): %v", i, err)
		}
		if l.Index != i || len(l.Data) == 0 || l.Data[0] != byte(i) {
			t.Fatalf("GetLog(%d) = index %d, data %d bytes", i, l.Index, len(l.Data))
		}
		if s.reads[i] > 0 {
			missed = append(missed, i)
		}
	}
	return missed
}

func TestLogCacheStaysWithinItsBytes(t *testing.T) {
	for _, tc := range []struct {
		name      string
		entries   int   // cache capacity in entries
		maxBytes  int64 // cache budget
		size      int   // bytes per entry
		stored    uint64
		batch     int
		wantCache []uint64 // [lo, hi] served from memory; the rest from the store
	}{
		// Small commands: the entry count binds, as in raft.LogCache.
		{name: "small entries", entries: 8, maxBytes: 1 << 20, size: 100, stored: 20, batch: 3, wantCache: []uint64{13, 20}},
		// A bulk load's entries: the bytes bind (4 of 1 KiB + overhead fit in 5 KiB).
		{name: "large entries", entries: 8, maxBytes: 5 << 10, size: 1 << 10, stored: 20, batch: 3, wantCache: []uint64{17, 20}},
		{name: "one batch larger than the budget", entries: 64, maxBytes: 5 << 10, size: 1 << 10, stored: 20, batch: 20, wantCache: []uint64{17, 20}},
		// An entry larger than the whole budget is not kept.
		{name: "entry larger than the budget", entries: 8, maxBytes: 1 << 10, size: 2 << 10, stored: 5, batch: 1, wantCache: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &countingStore{InmemStore: raft.NewInmemStore(), reads: map[uint64]int{}}
			c, err := newLogCache(s, tc.entries, tc.maxBytes)
			if err != nil {
				t.Fatal(err)
			}
			for from := uint64(1); from <= tc.stored; from += uint64(tc.batch) {
				to := min(from+uint64(tc.batch)-1, tc.stored)
				if err := c.StoreLogs(entries(from, to, tc.size)); err != nil {
					t.Fatal(err)
				}
				if got := c.cachedBytes(); got > tc.maxBytes {
					t.Fatalf("after storing up to %d: %d bytes cached, budget %d", to, got, tc.maxBytes)
				}
			}
			missed := readAll(t, c, s, 1, tc.stored)
			var want []uint64
			for i := uint64(1); i <= tc.stored; i++ {
				if tc.wantCache == nil || i < tc.wantCache[0] || i > tc.wantCache[1] {
					want = append(want, i)
				}
			}
			if fmt.Sprint(missed) != fmt.Sprint(want) {
				t.Fatalf("reads that reached the store: %v, want %v", missed, want)
			}
		})
	}
}

func TestLogCacheForgetsDeletedRanges(t *testing.T) {
	s := &countingStore{InmemStore: raft.NewInmemStore(), reads: map[uint64]int{}}
	c, err := newLogCache(s, 16, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.StoreLogs(entries(1, 10, 10)); err != nil {
		t.Fatal(err)
	}
	// A follower's conflicting tail is deleted and rewritten: the cache
	// must not serve the old entries.
	if err := c.DeleteRange(6, 10); err != nil {
		t.Fatal(err)
	}
	if c.cachedBytes() != 0 {
		t.Fatalf("%d bytes cached after DeleteRange", c.cachedBytes())
	}
	var l raft.Log
	if err := c.GetLog(8, &l); err != raft.ErrLogNotFound {
		t.Fatalf("GetLog(8) after delete: %v, %+v", err, l)
	}
	rewritten := entries(6, 8, 10)
	for _, e := range rewritten {
		e.Term = 2
	}
	if err := c.StoreLogs(rewritten); err != nil {
		t.Fatal(err)
	}
	if err := c.GetLog(7, &l); err != nil || l.Term != 2 {
		t.Fatalf("GetLog(7) = %+v, %v; want the rewritten entry", l, err)
	}
	if s.reads[7] != 0 {
		t.Fatalf("rewritten entry 7 read from the store, want the cache")
	}
}

// cachedBytes is what the cache holds.
func (c *logCache) cachedBytes() int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.bytes
}
