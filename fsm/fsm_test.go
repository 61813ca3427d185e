package fsm

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/record"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"

	"github.com/cairn-db/cairn/fsm/command"
)

// logger feeds entries with consecutive indexes and a log-carried clock.
type logger struct {
	index uint64
	now   time.Time
}

func newLogger() *logger { return &logger{now: time.Unix(1_700_000_000, 0)} }

func (l *logger) next(c *command.Command) *raft.Log {
	return l.raw(command.MustEncode(c))
}

func (l *logger) raw(data []byte) *raft.Log {
	l.index++
	l.now = l.now.Add(time.Millisecond)
	return &raft.Log{Index: l.index, Term: 1, Type: raft.LogCommand, Data: data, AppendedAt: l.now}
}

func put(k, v string) *command.Command {
	return &command.Command{Type: command.TypeBatch, Batch: &command.Batch{Ops: []command.Op{{Kind: command.OpPut, Key: []byte(k), Value: []byte(v)}}}}
}

func ops(p *command.Producer, offsets []command.Offset, o ...command.Op) *command.Command {
	return &command.Command{Type: command.TypeBatch, Batch: &command.Batch{Producer: p, Ops: o, Offsets: offsets}}
}

func add(k string, n int64) command.Op {
	return command.Op{Kind: command.OpAdd, Key: []byte(k), Num: n}
}

func register(name string) *command.Command {
	return &command.Command{Type: command.TypeRegisterProducer, RegisterProducer: &command.RegisterProducer{Name: name}}
}

func openMem(t *testing.T, fs vfs.FS) *FSM {
	t.Helper()
	cfg := DefaultConfig("/state")
	cfg.FS = fs
	f, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func applyOne(t *testing.T, f *FSM, l *raft.Log) *command.Result {
	t.Helper()
	r, ok := f.ApplyBatch([]*raft.Log{l})[0].(*command.Result)
	if !ok {
		t.Fatalf("no result for %d", l.Index)
	}
	return r
}

func mustGet(t *testing.T, f *FSM, k string) Value {
	t.Helper()
	v, _, err := f.Get([]byte(k))
	if err != nil {
		t.Fatalf("get %q: %v", k, err)
	}
	return v
}

// dump returns every key and value in the DB, internal ones included.
func dump(t *testing.T, f *FSM) []byte {
	t.Helper()
	var buf bytes.Buffer
	err := f.DB(func(db *pebble.DB) error {
		it, err := db.NewIter(nil)
		if err != nil {
			return err
		}
		defer it.Close()
		for ok := it.First(); ok; ok = it.Next() {
			fmt.Fprintf(&buf, "%q=%q\n", it.Key(), it.Value())
		}
		return it.Error()
	})
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestApplyRestartSkipsApplied(t *testing.T) {
	fs := vfs.NewMem()
	f := openMem(t, fs)
	lg := newLogger()
	var logs []*raft.Log
	for i := 0; i < 5; i++ {
		logs = append(logs, lg.next(ops(nil, nil, add("n", 1))))
	}
	f.ApplyBatch(logs)
	if got := mustGet(t, f, "n"); got.Int != 5 || f.AppliedIndex() != 5 {
		t.Fatalf("n=%v applied=%d", got, f.AppliedIndex())
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f = openMem(t, fs)
	defer f.Close()
	if f.AppliedIndex() != 5 {
		t.Fatalf("applied after reopen = %d", f.AppliedIndex())
	}
	// raft re-delivers entries after its snapshot index: those at or below
	// the persisted applied index must not apply twice.
	more := lg.next(ops(nil, nil, add("n", 1)))
	res := f.ApplyBatch(append(logs[2:], more))
	if got := mustGet(t, f, "n"); got.Int != 6 {
		t.Fatalf("n=%d after replay, want 6", got.Int)
	}
	if r := res[len(res)-1].(*command.Result); r.Index != 6 || r.Nums[0] != 6 {
		t.Fatalf("result %+v", r)
	}
}

func TestCorruptEntryLeavesStateUnchanged(t *testing.T) {
	f := openMem(t, vfs.NewMem())
	defer f.Close()
	lg := newLogger()
	applyOne(t, f, lg.next(put("a", "1")))
	before := dump(t, f)
	good := command.MustEncode(put("b", "2"))
	bad := [][]byte{nil, {1}, {9, 1, 0}, {1, 99, 0}, good[:len(good)-1], append(append([]byte{}, good...), 7)}
	for _, data := range bad {
		r := applyOne(t, f, lg.raw(data))
		if r.Code != command.CodeCorrupt {
			t.Fatalf("corrupt entry %x: code %v", data, r.Code)
		}
	}
	after := dump(t, f)
	// Only the applied index may move.
	strip := func(b []byte) []byte {
		var out [][]byte
		for _, line := range bytes.Split(b, []byte("\n")) {
			if !bytes.HasPrefix(line, []byte(`"\x00a"`)) {
				out = append(out, line)
			}
		}
		return bytes.Join(out, []byte("\n"))
	}
	if !bytes.Equal(strip(before), strip(after)) {
		t.Fatalf("state changed by corrupt entries:\n%s\nvs\n%s", before, after)
	}
	if f.AppliedIndex() != lg.index {
		t.Fatalf("applied %d want %d", f.AppliedIndex(), lg.index)
	}
}

func TestBatchAtomicity(t *testing.T) {
	f := openMem(t, vfs.NewMem())
	defer f.Close()
	lg := newLogger()
	applyOne(t, f, lg.next(put("s", "text")))
	// The add on "s" fails: the put of "x" in the same batch must not land.
	r := applyOne(t, f, lg.next(ops(nil, nil,
		command.Op{Kind: command.OpPut, Key: []byte("x"), Value: []byte("1")},
		add("s", 1))))
	if r.Code != command.CodeTypeMismatch {
		t.Fatalf("code %v", r.Code)
	}
	if _, _, err := f.Get([]byte("x")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("x visible after failed batch: %v", err)
	}
	// CAS
	cas := func(k, exp string, absent bool, v string) *command.Command {
		return ops(nil, nil, command.Op{Kind: command.OpCAS, Key: []byte(k), Expect: []byte(exp), ExpectAbsent: absent, Value: []byte(v)})
	}
	if r := applyOne(t, f, lg.next(cas("c", "", true, "v1"))); r.Code != command.CodeOK {
		t.Fatal(r.Message)
	}
	if r := applyOne(t, f, lg.next(cas("c", "", true, "v2"))); r.Code != command.CodeCASFailed {
		t.Fatalf("cas on present key with ExpectAbsent: %v", r.Code)
	}
	if r := applyOne(t, f, lg.next(cas("c", "v1", false, "v3"))); r.Code != command.CodeOK {
		t.Fatal(r.Message)
	}
	if v := mustGet(t, f, "c"); string(v.Bytes) != "v3" {
		t.Fatalf("c=%q", v.Bytes)
	}
	// min/max
	r = applyOne(t, f, lg.next(ops(nil, nil, command.Op{Kind: command.OpMin, Key: []byte("m"), Num: 5},
		command.Op{Kind: command.OpMin, Key: []byte("m"), Num: 9}, command.Op{Kind: command.OpMax, Key: []byte("M"), Num: -1},
		command.Op{Kind: command.OpMax, Key: []byte("M"), Num: 3})))
	if fmt.Sprint(r.Nums) != "[5 5 -1 3]" {
		t.Fatalf("nums %v", r.Nums)
	}
}

func TestProducerDedupAndFencing(t *testing.T) {
	f := openMem(t, vfs.NewMem())
	defer f.Close()
	lg := newLogger()
	reg := applyOne(t, f, lg.next(register("op")))
	if reg.Code != command.CodeOK || reg.Epoch != 1 {
		t.Fatalf("register %+v", reg)
	}
	p := func(epoch, seq uint64) *command.Producer {
		return &command.Producer{ID: reg.Producer, Epoch: epoch, Seq: seq}
	}
	off := func(n int64) []command.Offset { return []command.Offset{{Source: "in/0", Offset: n}} }
	r1 := applyOne(t, f, lg.next(ops(p(1, 1), off(10), add("k", 1))))
	dup := applyOne(t, f, lg.next(ops(p(1, 1), off(10), add("k", 1))))
	if !dup.Duplicate || dup.Index != r1.Index || dup.Nums[0] != 1 {
		t.Fatalf("duplicate %+v original %+v", dup, r1)
	}
	if v := mustGet(t, f, "k"); v.Int != 1 {
		t.Fatalf("k=%d after duplicate", v.Int)
	}
	if r := applyOne(t, f, lg.next(ops(p(1, 3), off(30), add("k", 1)))); r.Code != command.CodeSequenceGap {
		t.Fatalf("gap: %v", r.Code)
	}
	// Re-register fences epoch 1.
	reg2 := applyOne(t, f, lg.next(register("op")))
	if reg2.Producer != reg.Producer || reg2.Epoch != 2 {
		t.Fatalf("re-register %+v", reg2)
	}
	if r := applyOne(t, f, lg.next(ops(p(1, 2), off(20), add("k", 1)))); r.Code != command.CodeFenced {
		t.Fatalf("zombie write: %v %s", r.Code, r.Message)
	}
	info, err := f.Producer("op")
	if err != nil || info.Offsets[0].Offset != 10 || info.Epoch != 2 || info.LastSeq != 0 {
		t.Fatalf("producer %+v %v", info, err)
	}
	if r := applyOne(t, f, lg.next(ops(p(2, 1), off(20), add("k", 1)))); r.Code != command.CodeOK {
		t.Fatal(r.Message)
	}
	if v := mustGet(t, f, "k"); v.Int != 2 {
		t.Fatalf("k=%d", v.Int)
	}
	if r := applyOne(t, f, lg.next(ops(&command.Producer{ID: 999, Epoch: 1, Seq: 1}, nil, add("k", 1)))); r.Code != command.CodeUnknownProducer {
		t.Fatalf("unknown producer: %v", r.Code)
	}
}

func TestProducerExpiryIsLogTimeDriven(t *testing.T) {
	f := openMem(t, vfs.NewMem())
	defer f.Close()
	lg := newLogger()
	reg := applyOne(t, f, lg.next(register("idle")))
	p := &command.Producer{ID: reg.Producer, Epoch: 1, Seq: 1}
	applyOne(t, f, lg.next(ops(p, []command.Offset{{Source: "s", Offset: 5}}, add("k", 1))))
	lg.now = lg.now.Add(7*24*time.Hour + 2*time.Hour) // log time passes, not the local clock
	applyOne(t, f, lg.next(put("other", "x")))
	p2 := *p
	p2.Seq = 2
	if r := applyOne(t, f, lg.next(ops(&p2, nil, add("k", 1)))); r.Code != command.CodeUnknownProducer {
		t.Fatalf("expired session accepted a write: %v", r.Code)
	}
	info, _ := f.Producer("idle")
	if !info.Expired || info.Offsets[0].Offset != 5 {
		t.Fatalf("expired session lost its offsets: %+v", info)
	}
	reg2 := applyOne(t, f, lg.next(register("idle")))
	if reg2.Epoch != 2 {
		t.Fatalf("re-register epoch %d", reg2.Epoch)
	}
}

// The same log applied with different batch boundaries (leader and
// followers batch differently) gives byte-identical state.
func TestDeterministicAcrossBatching(t *testing.T) {
	lg := newLogger()
	rng := rand.New(rand.NewSource(1))
	var logs []*raft.Log
	logs = append(logs, lg.next(register("a")), lg.next(register("b")))
	seq := map[uint64]uint64{}
	for i := 0; i < 400; i++ {
		pid := uint64(1 + rng.Intn(2))
		switch rng.Intn(4) {
		case 0:
			logs = append(logs, lg.next(put(fmt.Sprintf("k%d", rng.Intn(20)), fmt.Sprint(i))))
		case 1:
			s := seq[pid] + 1
			if rng.Intn(4) == 0 && s > 1 {
				s-- // retry
			} else {
				seq[pid] = s
			}
			logs = append(logs, lg.next(ops(&command.Producer{ID: pid, Epoch: 1, Seq: s},
				[]command.Offset{{Source: "p", Offset: int64(i)}}, add(fmt.Sprintf("c%d", rng.Intn(5)), 1))))
		case 2:
			lg.now = lg.now.Add(time.Duration(rng.Intn(3)) * time.Hour)
			logs = append(logs, lg.next(ops(nil, nil, command.Op{Kind: command.OpDelete, Key: []byte(fmt.Sprintf("k%d", rng.Intn(20)))})))
		case 3:
			logs = append(logs, lg.raw([]byte{1, 1, 0, 5}))
		}
	}
	var dumps [][]byte
	for _, split := range []int{1, 7, 64, len(logs)} {
		f := openMem(t, vfs.NewMem())
		for i := 0; i < len(logs); i += split {
			f.ApplyBatch(logs[i:min(i+split, len(logs))])
		}
		dumps = append(dumps, dump(t, f))
		f.Close()
	}
	for i := 1; i < len(dumps); i++ {
		if !bytes.Equal(dumps[0], dumps[i]) {
			t.Fatalf("replica %d differs", i)
		}
	}
}

// Crash safety of unsynced applies: after a crash that loses unsynced
// Pebble writes, replaying the Raft log from the last snapshot index (what
// raft does with NoSnapshotRestoreOnStart) rebuilds the same state.
func TestCrashLosesNothingAfterReplay(t *testing.T) {
	mem := vfs.NewCrashableMem()
	f := openMem(t, mem)
	lg := newLogger()
	var logs []*raft.Log
	for i := 0; i < 50; i++ {
		logs = append(logs, lg.next(ops(nil, nil, add("n", 1))))
	}
	f.ApplyBatch(logs[:20])
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Persist (after which raft may truncate its log) syncs the WAL.
	if err := snap.Persist(&memSink{}); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	snapIndex := f.AppliedIndex()
	f.ApplyBatch(logs[20:])
	crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	f.Close()
	g := openMem(t, crashed)
	defer g.Close()
	if g.AppliedIndex() < snapIndex {
		t.Fatalf("applied %d below synced snapshot index %d", g.AppliedIndex(), snapIndex)
	}
	g.ApplyBatch(logs[snapIndex:])
	if v := mustGet(t, g, "n"); v.Int != 50 {
		t.Fatalf("n=%d after crash+replay, want 50", v.Int)
	}
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	src := openMem(t, vfs.NewMem())
	defer src.Close()
	lg := newLogger()
	reg := applyOne(t, src, lg.next(register("op")))
	for i := 0; i < 100; i++ {
		applyOne(t, src, lg.next(ops(&command.Producer{ID: reg.Producer, Epoch: 1, Seq: uint64(i + 1)},
			[]command.Offset{{Source: "in", Offset: int64(i)}}, add(fmt.Sprintf("k%d", i%7), 1))))
	}
	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	dst := openMem(t, vfs.NewMem())
	defer dst.Close()
	applyOne(t, dst, newLogger().next(put("stale", "x")))
	if err := dst.Restore(io.NopCloser(bytes.NewReader(sink.buf.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dump(t, src), dump(t, dst)) {
		t.Fatal("restored state differs")
	}
	if dst.AppliedIndex() != src.AppliedIndex() {
		t.Fatalf("applied %d vs %d", dst.AppliedIndex(), src.AppliedIndex())
	}
	// Dedup state travelled with the snapshot.
	r := applyOne(t, dst, lg.next(ops(&command.Producer{ID: reg.Producer, Epoch: 1, Seq: 100}, nil, add("k0", 1))))
	if !r.Duplicate {
		t.Fatalf("retry after restore applied again: %+v", r)
	}
}

type memSink struct {
	buf bytes.Buffer
}

func (s *memSink) Write(p []byte) (int, error) { return s.buf.Write(p) }
func (s *memSink) Close() error                { return nil }
func (s *memSink) ID() string                  { return "mem" }
func (s *memSink) Cancel() error               { return nil }

// A randomized test of the dedup table against a reference model.
func TestDedupAgainstReference(t *testing.T) {
	for seed := int64(1); seed <= 5; seed++ {
		rng := rand.New(rand.NewSource(seed))
		f := openMem(t, vfs.NewMem())
		lg := newLogger()
		type ref struct{ epoch, last uint64 }
		refs := map[string]*ref{}
		ids := map[string]uint64{}
		total := int64(0)
		names := []string{"a", "b", "c"}
		for i := 0; i < 600; i++ {
			name := names[rng.Intn(len(names))]
			if refs[name] == nil || rng.Intn(30) == 0 {
				r := applyOne(t, f, lg.next(register(name)))
				if refs[name] == nil {
					refs[name] = &ref{}
				}
				refs[name].epoch, refs[name].last = r.Epoch, 0
				ids[name] = r.Producer
				continue
			}
			st := refs[name]
			epoch, seq := st.epoch, st.last+1
			switch rng.Intn(6) {
			case 0:
				seq = uint64(rng.Intn(int(st.last) + 1)) // retry of an old seq (or 0)
			case 1:
				seq = st.last + 2 + uint64(rng.Intn(3)) // gap
			case 2:
				if epoch > 1 {
					epoch-- // zombie
				}
			}
			r := applyOne(t, f, lg.next(ops(&command.Producer{ID: ids[name], Epoch: epoch, Seq: seq}, nil, add("total", 1))))
			var want command.Code
			dupe := false
			switch {
			case epoch < st.epoch:
				want = command.CodeFenced
			case seq == 0 || seq > st.last+1:
				want = command.CodeSequenceGap
			case seq <= st.last:
				dupe = true
			default:
				st.last = seq
				total++
			}
			if r.Code != want || r.Duplicate != dupe {
				t.Fatalf("seed %d op %d (%s e%d s%d, ref e%d last%d): got %v dup=%v want %v dup=%v",
					seed, i, name, epoch, seq, st.epoch, st.last, r.Code, r.Duplicate, want, dupe)
			}
		}
		v, _, err := f.Get([]byte("total"))
		if err != nil || v.Int != total {
			t.Fatalf("seed %d: total %d want %d (%v)", seed, v.Int, total, err)
		}
		f.Close()
	}
}

// TestCloseLeavesNoWALToReplay: a clean close flushes the memtable, so the
// next open has no WAL to replay. Pebble replays the newest WAL (older ones
// are obsolete once flushed, kept only for its recycler); after the flush
// that is a new, empty one. Without the flush the puts below stay in the
// newest WAL and the open replays them.
func TestCloseLeavesNoWALToReplay(t *testing.T) {
	fs := vfs.NewMem()
	f := openMem(t, fs)
	lg := newLogger()
	var logs []*raft.Log
	for i := 0; i < 100; i++ {
		logs = append(logs, lg.next(put(fmt.Sprintf("k%03d", i), "value")))
	}
	f.ApplyBatch(logs)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	names, err := fs.List("/state/db")
	if err != nil {
		t.Fatal(err)
	}
	newest := ""
	for _, name := range names {
		if strings.HasSuffix(name, ".log") && name > newest { // zero-padded numbers
			newest = name
		}
	}
	if newest == "" {
		t.Fatalf("no WAL in %v", names)
	}
	if n := walBatches(t, fs, filepath.Join("/state/db", newest)); n != 0 {
		t.Fatalf("the newest WAL %s holds %d batches after a clean close, want 0 (files %v)", newest, n, names)
	}
	f = openMem(t, fs)
	defer f.Close()
	if got := mustGet(t, f, "k099"); string(got.Bytes) != "value" || f.AppliedIndex() != 100 {
		t.Fatalf("after reopen: k099=%+v applied=%d", got, f.AppliedIndex())
	}
}

// walBatches counts the non-empty records of a WAL file.
func walBatches(t *testing.T, fs vfs.FS, path string) int {
	t.Helper()
	f, err := fs.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var num uint64
	if _, err := fmt.Sscanf(filepath.Base(path), "%d.log", &num); err != nil {
		t.Fatal(err)
	}
	r := newRecordReader(record.NewReader, f, num)
	n := 0
	for {
		rec, err := r.Next()
		if err != nil { // io.EOF, or the zeroed tail a WAL may end with
			return n
		}
		b, err := io.ReadAll(rec)
		if err != nil {
			return n
		}
		if len(b) > 0 {
			n++
		}
	}
}

// A second open of the same state — by another node process on the same
// data directory, or in this one — fails with ErrLocked and a hint, not a
// bare "resource temporarily unavailable".
func TestSecondOpenIsLocked(t *testing.T) {
	if dir := os.Getenv("CAIRN_LOCK_CHILD"); dir != "" {
		f, err := Open(DefaultConfig(dir))
		if err != nil {
			fmt.Println("child open:", err)
			os.Exit(3)
		}
		fmt.Println("OPEN")
		_, _ = io.Copy(io.Discard, os.Stdin) // hold it until the parent closes stdin
		_ = f.Close()
		os.Exit(0)
	}
	dir := t.TempDir()
	child := exec.Command(os.Args[0], "-test.run=^TestSecondOpenIsLocked$", "-test.count=1")
	child.Env = append(os.Environ(), "CAIRN_LOCK_CHILD="+dir)
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stdin.Close(); _ = child.Wait() }()
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "OPEN\n" {
		t.Fatalf("child: %q", line)
	}
	check := func(what string) {
		t.Helper()
		g, err := Open(DefaultConfig(dir))
		if err == nil {
			_ = g.Close()
			t.Fatalf("%s: the same state opened twice", what)
		}
		if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "already running") {
			t.Fatalf("%s: %v, want ErrLocked with a hint", what, err)
		}
	}
	check("held by another process")
	_ = stdin.Close()
	_ = child.Wait()
	f, err := Open(DefaultConfig(dir))
	if err != nil {
		t.Fatalf("after the other process closed it: %v", err)
	}
	defer f.Close()
	check("held by this process")
}
