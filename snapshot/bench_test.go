package snapshot

import (
	"flag"
	"fmt"
	"path/filepath"
	"testing"
)

var benchStateMB = flag.Int("bench-state-mb", 64, "state size in MiB for BenchmarkCheckpointCreate")

// BenchmarkCheckpointCreate measures a raft snapshot (Snapshot on the FSM
// goroutine + Persist) of a DB holding -bench-state-mb MiB, after a
// one-key change:
//
//	go test ./snapshot -run '^$' -bench CheckpointCreate -args -bench-state-mb=1024
//
// "warm" is the steady state (unchanged SSTs are known by inode and not
// reread); "cold" is a store seeing the DB for the first time (every byte
// hashed once).
func BenchmarkCheckpointCreate(b *testing.B) {
	dir := b.TempDir()
	db := openDB(b, filepath.Join(dir, "db"))
	defer db.Close()
	const val = 4096
	keys := *benchStateMB << 20 / val
	for i := 0; i < keys; i += 16 << 20 / val {
		fill(b, db, "k", i, min(i+16<<20/val, keys), val, int64(i))
	}
	for _, mode := range []string{"warm", "cold"} {
		b.Run(fmt.Sprintf("%s/%dMiB", mode, *benchStateMB), func(b *testing.B) {
			m := &Counters{}
			s := newStore(b, filepath.Join(b.TempDir(), "s"), "n1", "", func(c *Config) { c.Metrics = m })
			checkpoint(b, s, db, 1, 1) // prime the store
			var hashed, newBytes int64
			var pause int64
			b.SetBytes(int64(*benchStateMB) << 20)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if mode == "cold" {
					b.StopTimer()
					s = newStore(b, filepath.Join(b.TempDir(), "s"), "n1", "", func(c *Config) { c.Metrics = m })
					b.StartTimer()
				}
				put(b, db, "change", fmt.Sprint(i))
				checkpoint(b, s, db, uint64(i+2), 1)
				last := m.Totals().LastCheckpoint
				hashed += last.HashedBytes
				newBytes += last.NewBytes
				pause += int64(last.PauseTime)
			}
			b.ReportMetric(float64(hashed)/float64(b.N), "hashedB/op")
			b.ReportMetric(float64(newBytes)/float64(b.N), "newB/op")
			b.ReportMetric(float64(pause)/float64(b.N), "pause-ns/op")
		})
	}
}
