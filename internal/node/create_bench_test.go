//go:build unix

package node

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math/rand"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"

	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/fsm/command"
	"github.com/cairn-db/cairn/snapshot"
)

var (
	benchCreateMB      = flag.Int("bench-create-mb", 256, "state size in MiB for BenchmarkCreateCPU")
	benchCreateFlushes = flag.Int("bench-create-flushes", 0, "small flushes before BenchmarkCreateCPU measures (a node's MANIFEST grows with its flushes and compactions)")
)

// BenchmarkCreateCPU measures what a `checkpoint create` costs the node
// that takes it, without raft and gRPC around it: the state machine's
// Snapshot, the store's Persist and commit (retention included), and the
// catalog read the API answers with, on a state machine and store wired
// as Start wires them (prehashed tables). Between creates 256 KiB of
// puts are applied, 16 to an entry, as a write load would. Besides wall time it reports
// cpu-us/op, the process's user+system CPU inside the creates
// (getrusage), which on a saturated machine is what a create takes from
// the write load:
//
//	go test ./internal/node -run '^$' -bench CreateCPU -benchtime 100x -args -bench-create-mb=1024 -bench-create-flushes=2000
func BenchmarkCreateCPU(b *testing.B) {
	dir := b.TempDir()
	scfg := snapshot.DefaultConfig(filepath.Join(dir, "snapshots"), "n1", "127.0.0.1:1")
	scfg.Extra, scfg.Logger = checkpointExtra, slog.New(slog.DiscardHandler)
	store, err := snapshot.Open(scfg)
	if err != nil {
		b.Fatal(err)
	}
	fcfg := fsm.DefaultConfig(filepath.Join(dir, "state"))
	fcfg.Checkpointer, fcfg.Logger = store.Checkpointer(), slog.New(slog.DiscardHandler)
	tables := store.PebbleEventListener(filepath.Join(fcfg.Dir, "db"))
	fcfg.PebbleOptions = func(o *pebble.Options) { o.EventListener = &tables }
	f, err := fsm.Open(fcfg)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()

	rng := rand.New(rand.NewSource(1))
	var index uint64
	apply := func(keys, from, perEntry int) {
		ops := make([]command.Op, 0, perEntry)
		var logs []*raft.Log
		for k := 0; k < keys; k++ {
			v := make([]byte, 1024)
			rng.Read(v)
			ops = append(ops, command.Op{Kind: command.OpPut, Key: fmt.Appendf(nil, "k%010d", from+k), Value: v})
			if len(ops) == cap(ops) || k == keys-1 {
				data, err := command.Encode(&command.Command{Type: command.TypeBatch, Batch: &command.Batch{Ops: ops}})
				if err != nil {
					b.Fatal(err)
				}
				index++
				logs = append(logs, &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data, AppendedAt: time.Unix(1_700_000_000, 0)})
				ops = ops[:0]
			}
		}
		f.ApplyBatch(logs)
	}
	keys := *benchCreateMB << 10
	for k := 0; k < keys; k += 16 << 10 {
		apply(min(16<<10, keys-k), k, 256)
	}
	// A node that has been up for a while: every flush and compaction is
	// an edit in the MANIFEST, which each checkpoint copies.
	for i := 0; i < *benchCreateFlushes; i++ {
		apply(16, rng.Intn(keys), 16)
		if err := f.DB(func(db *pebble.DB) error { return db.Flush() }); err != nil {
			b.Fatal(err)
		}
	}
	// A settled LSM: no compaction of the load runs under the creates.
	if err := f.DB(func(db *pebble.DB) error { return db.Compact(context.Background(), nil, []byte{0xff}, true) }); err != nil {
		b.Fatal(err)
	}
	create := func() {
		snap, err := f.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		sink, err := store.Create(raft.SnapshotVersionMax, index, 1, raft.Configuration{Servers: []raft.Server{{ID: "n1", Address: "127.0.0.1:2"}}}, 1, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := snap.Persist(sink); err != nil {
			b.Fatal(err)
		}
		snap.Release()
		if _, err := store.Show(sink.ID()); err != nil {
			b.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ { // the store sees every table once
		create()
	}
	// Quiet before measuring: the prehasher hashes what the compaction
	// wrote, in the background (polled: nothing to wait on from here).
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		before := rusage()
		time.Sleep(200 * time.Millisecond)
		if rusage()-before < 10*time.Millisecond {
			break
		}
	}
	var cpu time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		apply(256, rng.Intn(keys), 16)
		before := rusage()
		b.StartTimer()
		create()
		b.StopTimer()
		cpu += rusage() - before
		b.StartTimer()
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/op")
}

func rusage() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
