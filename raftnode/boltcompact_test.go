package raftnode

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

func TestWorthCompacting(t *testing.T) {
	for _, tc := range []struct {
		size, free int64
		want       bool
	}{
		{size: 1 << 30, free: 1000 << 20, want: true},
		{size: 1 << 30, free: 960 << 20, want: true},   // 64 MiB live
		{size: 1 << 30, free: 959 << 20, want: false},  // 65 MiB live: the copy would cost too much
		{size: 1 << 30, free: 512 << 20, want: false},  // half live
		{size: 100 << 20, free: 63 << 20, want: false}, // under 64 MiB to gain
		{size: 128 << 20, free: 64 << 20, want: true},
		{size: 0, free: 0, want: false},
	} {
		if got := worthCompacting(tc.size, tc.free); got != tc.want {
			t.Errorf("worthCompacting(%d, %d) = %v, want %v", tc.size, tc.free, got, tc.want)
		}
	}
}

// sparseBoltLog writes 80 MiB of 64 KiB entries and the stable store's
// keys to a bolt log, deletes all entries but the last keep, closes it and
// returns the entries kept.
func sparseBoltLog(t *testing.T, path string, keep int) []raft.Log {
	t.Helper()
	s, err := raftboltdb.New(raftboltdb.Options{Path: path, NoSync: true, BoltOptions: boltOptions()})
	if err != nil {
		t.Fatal(err)
	}
	const n = 1280
	for i := uint64(1); i <= n; i += 64 {
		logs := make([]*raft.Log, 64)
		for j := range logs {
			data := bytes.Repeat([]byte{byte(i + uint64(j))}, 64<<10)
			logs[j] = &raft.Log{Index: i + uint64(j), Term: 3, Type: raft.LogCommand, Data: data}
		}
		if err := s.StoreLogs(logs); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 3); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("n2")); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(1, n-uint64(keep)); err != nil {
		t.Fatal(err)
	}
	var kept []raft.Log
	for i := n - uint64(keep) + 1; i <= n; i++ {
		var l raft.Log
		if err := s.GetLog(i, &l); err != nil {
			t.Fatal(err)
		}
		kept = append(kept, l)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return kept
}

// checkBoltLog asserts that s holds exactly want and the stable keys.
func checkBoltLog(t *testing.T, s *raftboltdb.BoltStore, want []raft.Log) {
	t.Helper()
	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	if first != want[0].Index || last != want[len(want)-1].Index {
		t.Fatalf("log holds %d..%d, want %d..%d", first, last, want[0].Index, want[len(want)-1].Index)
	}
	for _, w := range want {
		var l raft.Log
		if err := s.GetLog(w.Index, &l); err != nil {
			t.Fatalf("entry %d: %v", w.Index, err)
		}
		if l.Term != w.Term || l.Type != w.Type || !bytes.Equal(l.Data, w.Data) {
			t.Fatalf("entry %d differs after the rewrite", w.Index)
		}
	}
	if term, err := s.GetUint64([]byte("CurrentTerm")); err != nil || term != 3 {
		t.Fatalf("CurrentTerm = %d, %v; want 3", term, err)
	}
	if v, err := s.Get([]byte("LastVoteCand")); err != nil || string(v) != "n2" {
		t.Fatalf("LastVoteCand = %q, %v; want n2", v, err)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// A log that is mostly free pages (80 MiB free, 1 MiB live) is rewritten at open: the file shrinks,
// the entries, the term and the vote stay, and the log takes appends.
// Fails with the compaction left out of openBolt.
func TestOpenBoltCompactsAMostlyFreeFile(t *testing.T) {
	for _, compact := range []bool{true, false} {
		t.Run(fmt.Sprintf("compact=%v", compact), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), boltFile)
			kept := sparseBoltLog(t, path, 16)
			before := fileSize(t, path)
			if before < 80<<20 {
				t.Fatalf("setup: file is %d bytes, want at least 80 MiB", before)
			}
			s, err := openBolt(path, true, compact, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			after := fileSize(t, path)
			if compact && after > before/4 {
				t.Fatalf("file %d bytes after the rewrite, %d before: not compacted", after, before)
			}
			if !compact && after != before {
				t.Fatalf("file %d bytes, %d before: rewritten with compact=false", after, before)
			}
			checkBoltLog(t, s, kept)
			next := kept[len(kept)-1].Index + 1
			if err := s.StoreLog(&raft.Log{Index: next, Term: 4, Type: raft.LogCommand, Data: []byte("x")}); err != nil {
				t.Fatal(err)
			}
			if last, _ := s.LastIndex(); last != next {
				t.Fatalf("last index %d after an append, want %d", last, next)
			}
			if _, err := os.Stat(path + boltCompactSuffix); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("temporary file left: %v", err)
			}
		})
	}
}

// A rewrite that a crash interrupted (before the rename) leaves
// raft.db.compact beside an intact raft.db: the next open removes it.
func TestOpenBoltRemovesAnInterruptedRewrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), boltFile)
	kept := sparseBoltLog(t, path, 16)
	if err := os.WriteFile(path+boltCompactSuffix, []byte("half a bolt file"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := openBolt(path, true, true, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkBoltLog(t, s, kept)
	if _, err := os.Stat(path + boltCompactSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the interrupted rewrite's file is still there: %v", err)
	}
}

// A rewrite that fails (here: after copying part of the log) leaves the
// old file as it was, removes the partial copy, and the node opens the
// old file.
func TestOpenBoltKeepsTheFileWhenTheRewriteFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), boltFile)
	kept := sparseBoltLog(t, path, 16)
	before := fileSize(t, path)
	defer func(f func(dst, src *bbolt.DB, txMaxSize int64) error) { bboltCompact = f }(bboltCompact)
	bboltCompact = func(dst, src *bbolt.DB, _ int64) error {
		if err := dst.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("logs")); return err }); err != nil {
			return err
		}
		return errors.New("disk full")
	}
	s, err := openBolt(path, true, true, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if after := fileSize(t, path); after != before {
		t.Fatalf("file %d bytes after a failed rewrite, %d before", after, before)
	}
	checkBoltLog(t, s, kept)
	if _, err := os.Stat(path + boltCompactSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("partial copy left: %v", err)
	}
}
