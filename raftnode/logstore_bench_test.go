package raftnode

import (
	"fmt"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
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
				s, err := openLogStore(Config{Dir: b.TempDir(), LogStore: kind}, hclog.NewNullLogger())
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				data := make([]byte, 200)
				idx := uint64(1)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					logs := make([]*raft.Log, n)
					for j := range logs {
						logs[j] = &raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: data}
						idx++
					}
					if err := s.StoreLogs(logs); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
