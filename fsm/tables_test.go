package fsm

import (
	"bytes"
	"fmt"
	"math/rand"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"

	"github.com/cairn-db/cairn/fsm/command"
	"github.com/cairn-db/cairn/window"
)

func createTable(name, spec string) *command.Command {
	return &command.Command{Type: command.TypeCreateTable, CreateTable: &command.CreateTable{Name: name, Spec: []byte(spec)}}
}

func wadd(table, key string, t, n int64) command.Op {
	return command.Op{Kind: command.OpWindowAdd, Table: table, Key: []byte(key), Time: t, Num: n}
}

func commitW(p *command.Producer, wm int64, o ...command.Op) *command.Command {
	c := ops(p, nil, o...)
	c.Batch.Watermarks = []command.Watermark{{Source: "s0", Time: wm}}
	return c
}

func TestTableLifecycle(t *testing.T) {
	f := openMem(t, vfs.NewMem())
	defer f.Close()
	lg := newLogger()
	if r := applyOne(t, f, lg.next(createTable("clicks", "tumbling 1m count lateness=10s retention=2m"))); !r.OK() {
		t.Fatal(r.Message)
	}
	if r := applyOne(t, f, lg.next(createTable("clicks", "tumbling 1m count"))); r.Code != command.CodeExists {
		t.Fatalf("duplicate create: %v", r.Code)
	}
	if r := applyOne(t, f, lg.next(createTable("bad", "tumbling 0s count"))); r.Code != command.CodeInvalid || r.Message == "" {
		t.Fatalf("invalid spec: %v %q", r.Code, r.Message)
	}
	if r := applyOne(t, f, lg.next(ops(nil, nil, wadd("nope", "k", 0, 1)))); r.Code != command.CodeInvalid {
		t.Fatalf("unknown table: %v", r.Code)
	}
	reg := applyOne(t, f, lg.next(register("op")))
	seq := uint64(0)
	p := func() *command.Producer { seq++; return &command.Producer{ID: reg.Producer, Epoch: 1, Seq: seq} }
	const min = 60_000
	// Out of order events in two windows, watermark behind.
	r := applyOne(t, f, lg.next(commitW(p(), 0, wadd("clicks", "a", 30_000, 1), wadd("clicks", "a", 90_000, 1), wadd("clicks", "a", 10_000, 1), wadd("clicks", "b", 5_000, 1))))
	if !r.OK() || r.Late != 0 {
		t.Fatalf("%+v", r)
	}
	ws, err := f.Windows("clicks", []byte("a"), 0, 2*min)
	if err != nil || len(ws) != 2 || ws[0].Value.Int != 2 || ws[1].Value.Int != 1 || ws[0].Closed {
		t.Fatalf("windows %+v %v", ws, err)
	}
	// Watermark passes the first window's end + lateness: it closes.
	r = applyOne(t, f, lg.next(commitW(p(), min+10_000, wadd("clicks", "a", 65_000, 1))))
	if !r.OK() {
		t.Fatal(r.Message)
	}
	closed, err := f.ClosedSince("clicks", 0, 0, 0)
	if err != nil || len(closed) != 2 || string(closed[0].Key) != "a" || closed[0].Value.Int != 2 || string(closed[1].Key) != "b" {
		t.Fatalf("closed %+v %v", closed, err)
	}
	// A late event is counted, reported, and not applied.
	r = applyOne(t, f, lg.next(commitW(p(), min+10_000, wadd("clicks", "a", 20_000, 1))))
	if r.Late != 1 {
		t.Fatalf("late %+v", r)
	}
	info, _ := f.Table("clicks")
	if info.Late != 1 || info.Watermark != min+10_000 || info.Closed != 2 {
		t.Fatalf("info %+v", info)
	}
	keys, err := f.WindowKeys("clicks", 0, min, nil, 0)
	if err != nil || len(keys) != 2 {
		t.Fatalf("window keys %+v %v", keys, err)
	}
	// Resume after the first closed window.
	rest, _ := f.ClosedSince("clicks", closed[0].Index, closed[0].Ord, 0)
	if len(rest) != 1 || string(rest[0].Key) != "b" {
		t.Fatalf("resume %+v", rest)
	}
	// Far ahead: everything closes and expires; the table is empty again
	// (the watch log is trimmed at the advance after expiry).
	applyOne(t, f, lg.next(commitW(p(), 100*min)))
	applyOne(t, f, lg.next(commitW(p(), 101*min)))
	if ws, _ := f.Windows("clicks", []byte("a"), 0, 200*min); len(ws) != 0 {
		t.Fatalf("not evicted: %+v", ws)
	}
	if _, err := f.ClosedSince("clicks", closed[0].Index, closed[0].Ord, 0); err == nil {
		t.Fatal("resume from a trimmed position did not fail")
	}
	if r := applyOne(t, f, lg.next(&command.Command{Type: command.TypeDropTable, DropTable: &command.DropTable{Name: "clicks"}})); !r.OK() {
		t.Fatal(r.Message)
	}
	if n := countPrefix(t, f, []byte{prefixTable}); n != 0 {
		t.Fatalf("%d table keys left after drop", n)
	}
}

func countPrefix(t *testing.T, f *FSM, p []byte) int {
	n := 0
	_ = f.DB(func(db *pebble.DB) error {
		it, _ := db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
		defer it.Close()
		for ok := it.First(); ok; ok = it.Next() {
			n++
		}
		return nil
	})
	return n
}

// An endless stream with advancing watermarks keeps the table's key count
// bounded, and the same log on differently batched replicas gives
// byte-identical state.
func TestTableBoundedAndDeterministic(t *testing.T) {
	lg := newLogger()
	rng := rand.New(rand.NewSource(7))
	logs := []*raft.Log{lg.next(createTable("t", "session 30s sum lateness=5s retention=1m")),
		lg.next(createTable("h", "hopping 1m 20s max retention=1m")), lg.next(register("p1")), lg.next(register("p2"))}
	seqs := map[uint64]uint64{}
	wm := int64(0)
	for i := 0; i < 600; i++ {
		pid := uint64(3 + rng.Intn(2))
		seqs[pid]++
		wm += int64(rng.Intn(5000))
		var o []command.Op
		for j := 0; j < 5; j++ {
			ts := wm - 20_000 + int64(rng.Intn(40_000))
			o = append(o, wadd("t", fmt.Sprintf("k%d", rng.Intn(10)), ts, int64(rng.Intn(9))), wadd("h", fmt.Sprintf("k%d", rng.Intn(10)), ts, int64(rng.Intn(100))))
		}
		c := ops(&command.Producer{ID: pid, Epoch: 1, Seq: seqs[pid]}, nil, o...)
		c.Batch.Watermarks = []command.Watermark{{Source: "s", Time: wm, Idle: rng.Intn(10) == 0}}
		logs = append(logs, lg.next(c))
	}
	var dumps [][]byte
	maxKeys := 0
	for _, split := range []int{1, 13, len(logs)} {
		f := openMem(t, vfs.NewMem())
		for i := 0; i < len(logs); i += split {
			f.ApplyBatch(logs[i:min(i+split, len(logs))])
			if n := countPrefix(t, f, []byte{prefixTable}); split == 1 && n > maxKeys {
				maxKeys = n
			}
		}
		dumps = append(dumps, dump(t, f))
		f.Close()
	}
	for i := 1; i < len(dumps); i++ {
		if !bytes.Equal(dumps[0], dumps[i]) {
			t.Fatalf("replica %d diverged", i)
		}
	}
	// 10 keys, windows alive for at most a few minutes of event time: the
	// state must stay far below what 6000 events would leave unevicted.
	if maxKeys < 20 {
		t.Fatalf("stream created only %d keys: not exercised", maxKeys)
	}
	if maxKeys > 400 {
		t.Fatalf("table state grew to %d keys", maxKeys)
	}
	_ = window.MinWatermark
}

func TestWatchLogKeepsRetentionZeroResults(t *testing.T) {
	f := openMem(t, vfs.NewMem())
	defer f.Close()
	lg := newLogger()
	applyOne(t, f, lg.next(createTable("v", "tumbling 1m count")))
	reg := applyOne(t, f, lg.next(register("op")))
	applyOne(t, f, lg.next(commitW(&command.Producer{ID: reg.Producer, Epoch: 1, Seq: 1}, 0, wadd("v", "a", 0, 1))))
	applyOne(t, f, lg.next(commitW(&command.Producer{ID: reg.Producer, Epoch: 1, Seq: 2}, 2*60_000)))
	info, _ := f.Table("v")
	got, err := f.ClosedSince("v", 0, 0, 0)
	if info.Closed != 1 || len(got) != 1 {
		t.Fatalf("closed %d windows, watch log holds %d (%v)", info.Closed, len(got), err)
	}
	// The next advance trims it.
	applyOne(t, f, lg.next(commitW(&command.Producer{ID: reg.Producer, Epoch: 1, Seq: 3}, 3*60_000)))
	if got, _ := f.ClosedSince("v", 0, 0, 0); len(got) != 0 {
		t.Fatalf("expired entry not trimmed: %d left", len(got))
	}
}
