package fsm

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/cairn-db/cairn/fsm/command"
)

// BenchmarkApplyBatch applies raft batches shaped like the benchmark
// workloads (bench/compare) to a state machine on the test's temp dir:
//
//	put64:  64 entries of one 128-byte put each (64 concurrent clients)
//	merged: one entry of 64 puts (the same, merged by api's coalescer)
//	commit: 4 producer commits of 1000 puts each
//	add:    4 producer commits of 1000 counter increments over 10,000 keys
//
// Reported per state update. Compare with benchstat.
func BenchmarkApplyBatch(b *testing.B) {
	val := make([]byte, 128)
	key := func(n int) []byte {
		k := make([]byte, 16)
		binary.PutVarint(k, int64(n))
		return k
	}
	for _, tc := range []struct {
		name             string
		entries, perEnt  int
		producer, adding bool
	}{
		{"put64", 64, 1, false, false},
		{"merged", 1, 64, false, false},
		{"commit", 4, 1000, true, false},
		{"add", 4, 1000, true, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := DefaultConfig(b.TempDir())
			f, err := Open(cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			lg := newLogger()
			var prods []*command.Producer
			if tc.producer {
				for p := 0; p < tc.entries; p++ {
					res := f.ApplyBatch([]*raft.Log{lg.next(register(fmt.Sprint("p", p)))})[0].(*command.Result)
					prods = append(prods, &command.Producer{ID: res.Producer, Epoch: res.Epoch})
				}
			}
			n := 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				logs := make([]*raft.Log, tc.entries)
				for e := range logs {
					o := make([]command.Op, tc.perEnt)
					for j := range o {
						if tc.adding {
							o[j] = command.Op{Kind: command.OpAdd, Key: key(n % 10000), Num: 1}
						} else {
							o[j] = command.Op{Kind: command.OpPut, Key: key(n), Value: val}
						}
						n++
					}
					batch := &command.Batch{Ops: o}
					if tc.producer {
						prods[e].Seq++
						p := *prods[e]
						batch.Producer = &p
						batch.Offsets = []command.Offset{{Source: fmt.Sprint("s", e), Offset: int64(p.Seq)}}
					}
					logs[e] = lg.next(&command.Command{Type: command.TypeBatch, Batch: batch})
				}
				b.StartTimer()
				for j, r := range f.ApplyBatch(logs) {
					if res := r.(*command.Result); res.Code != command.CodeOK {
						b.Fatalf("entry %d: %v %s", j, res.Code, res.Message)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*tc.entries*tc.perEnt), "ns/update")
		})
	}
}
