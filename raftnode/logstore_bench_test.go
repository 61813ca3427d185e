package raftnode

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// BenchmarkStoreLogs measures one durable append of n entries of 200 bytes
// to each log store (on the disk of the test's temp dir). Compare with
// benchstat:
//
//	go test ./raftnode -run x -bench StoreLogs -benchtime 2000x -count 6 | tee out.txt; benchstat -col /store out.txt
func BenchmarkStoreLogs(b *testing.B) {
	for _, n := range []int{1, 64} {
		for _, kind := range []string{LogStoreBolt, LogStoreWAL} {
			b.Run(fmt.Sprintf("n=%d/store=%s", n, kind), func(b *testing.B) {
				s, err := openLogStore(Config{Dir: b.TempDir(), LogStore: kind}, hclog.NewNullLogger(), slog.New(slog.DiscardHandler))
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				data := make([]byte, 200)
				idx := uint64(1)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					idx = appendLogs(b, s, idx, n, data)
				}
			})
		}
	}
}

// BenchmarkBoltAppendAfterCompaction measures a durable append of 64
// entries of 1 KiB (one raft batch) to a bolt log through which 256 MiB
// went and was compacted away, with bbolt's default options and with
// boltOptions (freelist as a map, not written at every commit):
//
//	go test ./raftnode -run x -bench BoltAppendAfterCompaction -benchtime 500x -count 6 | tee out.txt; benchstat -col /freelist out.txt
func BenchmarkBoltAppendAfterCompaction(b *testing.B) {
	for _, tc := range boltFreelists() {
		b.Run("freelist="+tc.name, func(b *testing.B) {
			path, idx := compactedBoltLog(b, tc.opts)
			s, err := raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: tc.opts})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			data := make([]byte, 1<<10)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				idx = appendLogs(b, s, idx, 64, data)
			}
		})
	}
}

// BenchmarkBoltOpenAfterCompaction measures opening that log: what not
// writing the freelist costs (bbolt rebuilds it by scanning the file's
// reachable pages).
//
//	go test ./raftnode -run x -bench BoltOpenAfterCompaction -count 6 | tee out.txt; benchstat -col /freelist out.txt
func BenchmarkBoltOpenAfterCompaction(b *testing.B) {
	for _, tc := range boltFreelists() {
		b.Run("freelist="+tc.name, func(b *testing.B) {
			path, _ := compactedBoltLog(b, tc.opts)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s, err := raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: tc.opts})
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func boltFreelists() []struct {
	name string
	opts *bbolt.Options
} {
	return []struct {
		name string
		opts *bbolt.Options
	}{{"bbolt-default", nil}, {"cairn", boltOptions()}}
}

// compactedBoltLog writes 256 MiB of 1 KiB entries to a new bolt log
// without syncs, deletes all of them and closes it; it returns its path
// and the next index.
func compactedBoltLog(b *testing.B, opts *bbolt.Options) (string, uint64) {
	b.Helper()
	path := filepath.Join(b.TempDir(), boltFile)
	s, err := raftboltdb.New(raftboltdb.Options{Path: path, NoSync: true, BoltOptions: opts})
	if err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 1<<10)
	idx := uint64(1)
	for filled := 0; filled < 256<<20; filled += 1024 * len(data) {
		idx = appendLogs(b, s, idx, 1024, data)
	}
	if err := s.DeleteRange(1, idx-1); err != nil {
		b.Fatal(err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	return path, idx
}

// appendLogs stores n command entries holding data from index from on, in
// one StoreLogs, and returns the next index.
func appendLogs(tb testing.TB, s raft.LogStore, from uint64, n int, data []byte) uint64 {
	tb.Helper()
	logs := make([]*raft.Log, n)
	for j := range logs {
		logs[j] = &raft.Log{Index: from + uint64(j), Term: 1, Type: raft.LogCommand, Data: data}
	}
	if err := s.StoreLogs(logs); err != nil {
		tb.Fatal(err)
	}
	return from + uint64(n)
}

// BenchmarkLazyHeadCompactLargeEntries measures how long a one-entry
// append waits while the background compaction deletes 256 entries of
// 2 MiB (a bulk load's batches) from the bolt log: the longest append
// (max_append_ms) with deletions of a fixed 1,024 entries (the chunk
// before nextTruncChunk) and with the adaptive size.
//
//	go test ./raftnode -run x -bench LazyHeadCompactLargeEntries -benchtime 1x -count 5
func BenchmarkLazyHeadCompactLargeEntries(b *testing.B) {
	for _, mode := range []string{"fixed1024", "adaptive"} {
		b.Run("chunk="+mode, func(b *testing.B) {
			var worst []float64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				s, err := openLogStore(Config{Dir: b.TempDir(), LogStore: LogStoreBolt}, hclog.NewNullLogger(), slog.New(slog.DiscardHandler))
				if err != nil {
					b.Fatal(err)
				}
				l := s.(*lazyHead)
				if mode == "fixed1024" {
					l.chunk = maxTruncChunk
					fixed := time.Now()
					l.now = func() time.Time { return fixed } // never shrinks
				}
				big := make([]byte, 2<<20)
				idx := uint64(1)
				for j := 0; j < 256; j += 8 {
					idx = appendLogs(b, s, idx, 8, big)
				}
				small := make([]byte, 200)
				idx = appendLogs(b, s, idx, 1, small)
				b.StartTimer()
				if err := s.DeleteRange(1, 256); err != nil {
					b.Fatal(err)
				}
				var longest time.Duration
				for {
					if _, _, ok := l.pending(); !ok {
						break
					}
					t0 := time.Now()
					idx = appendLogs(b, s, idx, 1, small)
					longest = max(longest, time.Since(t0))
				}
				b.StopTimer()
				worst = append(worst, float64(longest.Microseconds())/1000)
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(slices.Max(worst), "max_append_ms")
		})
	}
}
