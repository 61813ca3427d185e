package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/record"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"

	"github.com/cairn-db/cairn/fsm/command"
)

// captureCheckpointer records the take function the FSM hands out, so
// that a test can call it whenever it likes (as Persist would), and the
// linked WAL prefixes of each checkpoint it took.
type captureCheckpointer struct {
	index  uint64
	real   TakeCheckpoint
	prefix map[string]map[string]int64 // checkpoint dir -> linked WAL -> bytes
	reuse  func(src string) string     // passed to take (nil: link every table)
}

func (c *captureCheckpointer) Snapshot(_ *pebble.DB, index, _ uint64, take TakeCheckpoint) (raft.FSMSnapshot, error) {
	c.index, c.real = index, take
	return nopSnapshot{}, nil
}

// take calls the FSM's take function, recording the linked prefixes.
func (c *captureCheckpointer) take(dir string) (uint64, uint64, error) {
	idx, term, prefix, err := c.real(dir, c.reuse)
	if c.prefix == nil {
		c.prefix = map[string]map[string]int64{}
	}
	c.prefix[dir] = prefix
	return idx, term, err
}

// walBytes is what the checkpoint in dir holds of WALs.
func (c *captureCheckpointer) walBytes(t *testing.T, fs vfs.FS, dir string) int64 {
	t.Helper()
	names, err := fs.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, name := range names {
		if !strings.HasSuffix(name, ".log") {
			continue
		}
		if p, ok := c.prefix[dir][name]; ok {
			n += p
			continue
		}
		st, err := fs.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		n += st.Size()
	}
	return n
}

// materialize replaces each linked WAL of the checkpoint in dir by a copy
// of its prefix, as a Checkpointer must before Pebble opens the
// directory, and reports how many it replaced. It checks that each link
// still holds at least its prefix.
func (c *captureCheckpointer) materialize(t *testing.T, fs vfs.FS, dir string) int {
	t.Helper()
	for name, n := range c.prefix[dir] {
		p := filepath.Join(dir, name)
		src, err := fs.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(src, buf); err != nil {
			t.Fatalf("linked WAL %s holds less than its prefix of %d bytes: %v", p, n, err)
		}
		_ = src.Close()
		if err := fs.Remove(p); err != nil {
			t.Fatal(err)
		}
		dst, err := fs.Create(p, vfs.WriteCategoryUnspecified)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dst.Write(buf); err != nil {
			t.Fatal(err)
		}
		if err := dst.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return len(c.prefix[dir])
}

// openCheckpointDir opens the checkpoint in dir (materialized) as a
// state machine, moving it to dir-open/db, where a data dir keeps its DB.
func openCheckpointDir(t *testing.T, fs vfs.FS, dir string) *FSM {
	t.Helper()
	if err := fs.MkdirAll(dir+"-open", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := fs.Rename(dir, filepath.Join(dir+"-open", "db")); err != nil {
		t.Fatal(err)
	}
	return openWith(t, fs, dir+"-open", nil)
}

func (c *captureCheckpointer) Restore(io.Reader, string) error { return errors.New("not used") }

type nopSnapshot struct{}

func (nopSnapshot) Persist(raft.SnapshotSink) error { return nil }
func (nopSnapshot) Release()                        {}

func openWith(t *testing.T, fs vfs.FS, dir string, cp Checkpointer) *FSM {
	t.Helper()
	cfg := DefaultConfig(dir)
	cfg.FS, cfg.Checkpointer = fs, cp
	f, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// A checkpoint taken while entries keep being applied holds exactly the
// state after some prefix of them, at or above the snapshot index, and
// CheckpointApplied names that prefix's last index without opening it.
// Checked against a replica that applied exactly that prefix.
func TestCheckpointDuringAppliesIsAPrefix(t *testing.T) {
	fs := vfs.NewMem()
	cp := &captureCheckpointer{}
	f := openWith(t, fs, "/live", cp)
	defer f.Close()
	lg := newLogger()
	var logs []*raft.Log
	for i := 0; i < 20000; i++ {
		logs = append(logs, lg.next(ops(nil, nil, add(fmt.Sprintf("k%d", i%37), int64(i)), command.Op{Kind: command.OpPut, Key: []byte(fmt.Sprintf("p%d", i%101)), Value: bytes.Repeat([]byte{byte(i)}, 200)})))
	}
	f.ApplyBatch(logs[:500])
	if _, err := f.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if cp.index != 500 {
		t.Fatalf("snapshot index %d, want 500", cp.index)
	}
	take := cp.take

	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // the FSM goroutine goes on applying until the checkpoints are taken
		defer close(done)
		for i := 500; i < len(logs); i += 7 {
			select {
			case <-stop:
				return
			default:
			}
			f.ApplyBatch(logs[i:min(i+7, len(logs))])
		}
	}()
	var got []uint64
	for n := 0; n < 8; n++ {
		idx, term, err := take(fmt.Sprintf("/ckpt-%d", n))
		if err != nil {
			t.Fatal(err)
		}
		if idx < 500 || term != 1 {
			t.Fatalf("checkpoint %d at index %d term %d, want >= 500 term 1", n, idx, term)
		}
		got = append(got, idx)
	}
	close(stop)
	<-done
	t.Logf("checkpoint indexes while applying: %v (applied %d)", got, f.AppliedIndex())
	for n, idx := range got {
		// Open the checkpoint itself as a state machine: its applied index
		// must be what CheckpointApplied said, and its state that of a
		// replica fed exactly the first idx entries. Its WAL is a link to
		// the live one (the live DB has written on): only the prefix
		// take named is the checkpoint's.
		dir := fmt.Sprintf("/ckpt-%d", n)
		grown := false
		for name, p := range cp.prefix[dir] {
			st, err := fs.Stat(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			grown = grown || st.Size() > p
		}
		if n == 0 && !grown {
			t.Fatalf("checkpoint %d: no linked WAL grew past its prefix (%v): were they copied?", n, cp.prefix[dir])
		}
		if cp.materialize(t, fs, dir) == 0 {
			t.Fatalf("checkpoint %d: no WAL was linked", n)
		}
		ck := openCheckpointDir(t, fs, dir)
		if ck.AppliedIndex() != idx {
			t.Fatalf("checkpoint opens at %d, CheckpointApplied said %d", ck.AppliedIndex(), idx)
		}
		ref := openWith(t, vfs.NewMem(), "/ref", nil)
		ref.ApplyBatch(logs[:idx])
		if !bytes.Equal(dump(t, ck), dump(t, ref)) {
			t.Fatalf("checkpoint at %d differs from a replica that applied %d entries", idx, idx)
		}
		ck.Close()
		ref.Close()
	}
}

// With the memtable flushed the WAL holds no batch: the applied index
// comes from the checkpoint opened read-only — also when every table was
// left out of it (reused): the held files are linked in for that and
// removed again.
func TestCheckpointAppliedAfterFlush(t *testing.T) {
	for _, reuse := range []bool{false, true} {
		t.Run(fmt.Sprintf("reuse=%v", reuse), func(t *testing.T) {
			fs := vfs.NewMem()
			cp := &captureCheckpointer{}
			f, _ := openWithPuts(t, fs, cp, 40)
			defer f.Close()
			if err := f.DB(func(db *pebble.DB) error { return db.Flush() }); err != nil {
				t.Fatal(err)
			}
			if _, err := f.Snapshot(); err != nil {
				t.Fatal(err)
			}
			var held []string
			if reuse {
				if err := fs.MkdirAll("/held", 0o755); err != nil {
					t.Fatal(err)
				}
				cp.reuse = func(src string) string {
					h := filepath.Join("/held", "x-"+filepath.Base(src))
					if err := fs.Link(src, h); err != nil {
						t.Error(err)
						return ""
					}
					held = append(held, h)
					return h
				}
			}
			idx, term, err := cp.take("/ck")
			if err != nil || idx != 40 || term != 1 {
				t.Fatalf("CheckpointApplied = %d, %d, %v; want 40, 1", idx, term, err)
			}
			if !reuse {
				return
			}
			names, err := fs.List("/ck")
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range names {
				if strings.HasSuffix(n, ".sst") {
					t.Fatalf("table %s left in the checkpoint (all were reused: %v)", n, held)
				}
			}
			if len(held) == 0 {
				t.Fatal("no table was offered for reuse")
			}
			for _, h := range held {
				if _, err := fs.Stat(h); err != nil {
					t.Fatalf("held file %s: %v", h, err)
				}
			}
		})
	}
}

// A Restore between Snapshot and Persist replaces the database: the old
// snapshot's checkpoint is refused rather than taken of the new state.
func TestCheckpointRefusedAfterRestore(t *testing.T) {
	fs := vfs.NewMem()
	src := openMem(t, vfs.NewMem())
	defer src.Close()
	applyOne(t, src, newLogger().next(put("a", "1")))
	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()

	full := &FullCheckpointer{FS: fs, ScratchDir: "/live/checkpoints"}
	cp := &captureCheckpointer{}
	f := openWith(t, fs, "/live", cp)
	defer f.Close()
	applyOne(t, f, newLogger().next(put("b", "2")))
	if _, err := f.Snapshot(); err != nil {
		t.Fatal(err)
	}
	take := cp.take
	f.cfg.Checkpointer = full
	if err := f.Restore(io.NopCloser(bytes.NewReader(sink.buf.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if _, _, err := take("/ck"); !errors.Is(err, ErrReplaced) {
		t.Fatalf("take after restore: %v, want ErrReplaced", err)
	}
}

// A last WAL batch that does not set the applied index (not something the
// FSM writes, but possible for a write made beside it) makes
// CheckpointApplied read the key from the checkpoint opened read-only.
func TestCheckpointAppliedSearchesPastForeignBatch(t *testing.T) {
	fs := vfs.NewMem()
	cp := &captureCheckpointer{}
	f, _ := openWithPuts(t, fs, cp, 30)
	defer f.Close()
	if err := f.DB(func(db *pebble.DB) error { return db.Set([]byte("foreign"), []byte("x"), pebble.NoSync) }); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Snapshot(); err != nil {
		t.Fatal(err)
	}
	idx, term, err := cp.take("/ck")
	if err != nil || idx != 30 || term != 1 {
		t.Fatalf("CheckpointApplied = %d, %d, %v; want 30, 1", idx, term, err)
	}
}

// With small memtables Pebble rotates WAL files often, and would recycle
// them: a recycled file keeps the stale tail of its old log, and a
// checkpoint's linked WAL would be overwritten by the next log. Through
// walFS no WAL is reused, every linked prefix ends where its valid records
// do, and checkpoints opened after the live DB has rotated past their
// WALs still hold exact prefixes of the applied entries.
func TestCheckpointLinkedWALsSurviveRotation(t *testing.T) {
	fs := vfs.NewMem()
	cp := &captureCheckpointer{}
	cfg := DefaultConfig("/live")
	cfg.FS, cfg.Checkpointer = fs, cp
	cfg.PebbleOptions = func(o *pebble.Options) { o.MemTableSize = 256 << 10 }
	f, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lg := newLogger()
	var logs []*raft.Log
	for i := 0; i < 6000; i++ {
		logs = append(logs, lg.next(ops(nil, nil, command.Op{Kind: command.OpPut, Key: []byte(fmt.Sprintf("p%d", i%500)), Value: bytes.Repeat([]byte{byte(i)}, 300)})))
	}
	type taken struct {
		dir string
		idx uint64
	}
	var cks []taken
	for i := 0; i < len(logs); i += 5 {
		f.ApplyBatch(logs[i:min(i+5, len(logs))])
		if i%500 != 0 || i == 0 {
			continue
		}
		if _, err := f.Snapshot(); err != nil {
			t.Fatal(err)
		}
		dir := fmt.Sprintf("/ck-%d", i)
		idx, _, err := cp.take(dir)
		if err != nil {
			t.Fatal(err)
		}
		cks = append(cks, taken{dir, idx})
	}
	var flushes int64
	_ = f.DB(func(db *pebble.DB) error { flushes = db.Metrics().Flush.Count; return nil })
	if flushes < 3 {
		t.Fatalf("%d memtable flushes during %d checkpoints: want the WAL to rotate several times", flushes, len(cks))
	}
	t.Logf("%d checkpoints, %d memtable flushes (WAL rotations)", len(cks), flushes)
	checked, linked := 0, 0
	for _, ck := range cks {
		dir, idx := ck.dir, ck.idx
		linked += cp.materialize(t, fs, dir)
		names, err := fs.List(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			num, ok := strings.CutSuffix(n, ".log")
			if !ok {
				continue
			}
			v, _ := strconv.ParseUint(num, 10, 64)
			end, size := validEnd(t, fs, filepath.Join(dir, n), v)
			if size != end {
				t.Fatalf("checkpoint at %d: %s has %d bytes past its last record (of %d)", idx, n, size-end, size)
			}
			checked++
		}
		ref := openWith(t, vfs.NewMem(), "/ref", nil)
		ref.ApplyBatch(logs[:idx])
		ck := openCheckpointDir(t, fs, dir)
		if ck.AppliedIndex() != idx || !bytes.Equal(dump(t, ck), dump(t, ref)) {
			t.Fatalf("checkpoint at %d is not the state after %d entries (opens at %d)", idx, idx, ck.AppliedIndex())
		}
		ck.Close()
		ref.Close()
	}
	if checked == 0 || linked == 0 {
		t.Fatalf("%d WAL files checked, %d linked: want some of each", checked, linked)
	}
	// The checkpoints' linked WALs are not tracked once taken: nothing
	// would untrack them, so the maps would grow with every one.
	f.walfs.mu.Lock()
	defer f.walfs.mu.Unlock()
	if len(f.walfs.wal) == 0 {
		t.Fatal("walFS tracks no WAL of the live DB")
	}
	for p := range f.walfs.wal {
		if filepath.Dir(p) != f.dbDir() {
			t.Fatalf("walFS tracks %s, outside the live DB %s", p, f.dbDir())
		}
	}
	if len(f.walfs.prefix) != 0 || f.walfs.linkTo != "" {
		t.Fatalf("walFS still limits %d linked WALs (armed: %q)", len(f.walfs.prefix), f.walfs.linkTo)
	}
}

// validEnd returns the offset after the last valid record of a WAL file
// and the file's size.
func validEnd(t *testing.T, fs vfs.FS, path string, num uint64) (int64, int64) {
	t.Helper()
	fl, err := fs.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fl.Close()
	st, err := fl.Stat()
	if err != nil {
		t.Fatal(err)
	}
	r := newRecordReader(record.NewReader, fl, num)
	end := int64(0)
	for {
		rec, err := r.Next()
		if err == nil {
			_, err = io.Copy(io.Discard, rec)
		}
		if err != nil {
			return end, st.Size()
		}
		end = r.Offset()
	}
}

// A checkpoint leaves the memtable to Pebble: taking one, and releasing
// it, starts no flush (each flush of a small memtable is an extra L0
// table and the compactions it triggers), so consecutive checkpoints link
// longer prefixes of the same live WAL, and each prefix is exactly the
// applied entries up to its index.
func TestCheckpointLeavesTheMemtable(t *testing.T) {
	fs := vfs.NewMem()
	cp := &captureCheckpointer{}
	f := openWith(t, fs, "/live", cp)
	defer f.Close()
	lg := newLogger()
	val := bytes.Repeat([]byte{'v'}, 64<<10)
	for i := 0; i < 100; i++ { // ~6.4 MiB in the memtable and WAL
		applyOne(t, f, lg.next(&command.Command{Type: command.TypeBatch, Batch: &command.Batch{Ops: []command.Op{{Kind: command.OpPut, Key: []byte(fmt.Sprintf("k%d", i)), Value: val}}}}))
	}
	flushes := func() int64 {
		var m *pebble.Metrics
		_ = f.DB(func(db *pebble.DB) error { m = db.Metrics(); return nil })
		return m.Flush.Count + m.Flush.NumInProgress
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.take("/ck1"); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	applyOne(t, f, lg.next(put("after", "x")))
	if _, err := f.Snapshot(); err != nil {
		t.Fatal(err)
	}
	idx, _, err := cp.take("/ck2")
	if err != nil || idx != 101 {
		t.Fatalf("second checkpoint at %d (%v), want 101", idx, err)
	}
	if n := flushes(); n != 0 {
		t.Fatalf("%d memtable flushes around two checkpoints, want none", n)
	}
	// Pebble's first memtables are small (they double up to
	// MemTableSize), so the unflushed state spans several WALs: the
	// second checkpoint links the same ones, the newest longer.
	p1, p2 := cp.prefix["/ck1"], cp.prefix["/ck2"]
	newest, total, grew := "", int64(0), 0
	for name, n1 := range p1 {
		n2, ok := p2[name]
		if !ok || n2 < n1 {
			t.Fatalf("linked WAL %s: %d bytes in the first checkpoint, %d (present %v) in the second", name, n1, n2, ok)
		}
		if n2 > n1 {
			grew++
		}
		newest, total = max(newest, name), total+n1
	}
	if len(p2) != len(p1) || grew != 1 || p2[newest] == p1[newest] || total < 6<<20 {
		t.Fatalf("linked WALs %v, then %v: want the same files, only the newest (%s) longer, over 6 MiB in all", p1, p2, newest)
	}
	// Each prefix opens as exactly the state at its index.
	for dir, want := range map[string]uint64{"/ck1": 100, "/ck2": 101} {
		cp.materialize(t, fs, dir)
		ck := openCheckpointDir(t, fs, dir)
		if ck.AppliedIndex() != want {
			t.Fatalf("%s opens at %d, want %d", dir, ck.AppliedIndex(), want)
		}
		ck.Close()
	}
}

// Tables the Checkpointer says it holds (reuse) are left out of the
// checkpoint directory, the others linked into it as before; with the
// held ones put back the checkpoint opens as exactly the state at its
// index. reuse sees every table of the version, each once, while Pebble
// holds it (the test "holds" a table by linking it elsewhere, as the
// snapshot store does).
func TestCheckpointLeavesOutReusedTables(t *testing.T) {
	fs := vfs.NewMem()
	cp := &captureCheckpointer{}
	f, lg := openWithPuts(t, fs, cp, 0)
	defer f.Close()
	for i := 0; i < 3; i++ { // three tables
		applyOne(t, f, lg.next(put(fmt.Sprintf("k%d", i), "v")))
		if err := f.DB(func(db *pebble.DB) error { return db.Flush() }); err != nil {
			t.Fatal(err)
		}
	}
	applyOne(t, f, lg.next(put("unflushed", "x")))
	if _, err := f.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if err := fs.MkdirAll("/held", 0o755); err != nil {
		t.Fatal(err)
	}
	heldAt := map[string]string{}
	var asked, held []string
	cp.reuse = func(src string) string {
		asked = append(asked, filepath.Base(src))
		if len(asked)%2 == 0 {
			return ""
		}
		h := filepath.Join("/held", fmt.Sprintf("%d-%s", len(asked), filepath.Base(src)))
		if err := fs.Link(src, h); err != nil {
			t.Error(err)
			return ""
		}
		held = append(held, filepath.Base(src))
		heldAt[filepath.Base(src)] = h
		return h
	}
	idx, _, err := cp.take("/ck")
	if err != nil || idx != 4 {
		t.Fatalf("checkpoint at %d (%v), want 4", idx, err)
	}
	names, err := fs.List("/ck")
	if err != nil {
		t.Fatal(err)
	}
	var linked []string
	for _, n := range names {
		if strings.HasSuffix(n, ".sst") {
			linked = append(linked, n)
		}
	}
	if len(asked) < 2 || len(held) == 0 || len(linked) != len(asked)-len(held) {
		t.Fatalf("asked about %v, held %v, linked %v: want every table asked about once, the held ones absent", asked, held, linked)
	}
	for _, n := range held {
		if slices.Contains(linked, n) {
			t.Fatalf("held table %s was linked into the checkpoint too", n)
		}
		if err := fs.Link(heldAt[n], filepath.Join("/ck", n)); err != nil {
			t.Fatal(err)
		}
	}
	cp.materialize(t, fs, "/ck")
	ck := openCheckpointDir(t, fs, "/ck")
	defer ck.Close()
	if ck.AppliedIndex() != 4 {
		t.Fatalf("checkpoint opens at %d, want 4", ck.AppliedIndex())
	}
	if !bytes.Equal(dump(t, ck), dump(t, f)) {
		t.Fatal("the checkpoint with its held tables put back differs from the live state")
	}
}

// syncCountFS counts the syncs of each file and directory by path.
type syncCountFS struct {
	vfs.FS
	mu    sync.Mutex
	syncs map[string]int
}

func (fs *syncCountFS) count(name string) {
	fs.mu.Lock()
	fs.syncs[filepath.Clean(name)]++
	fs.mu.Unlock()
}

func (fs *syncCountFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return f, err
	}
	return &syncCountFile{File: f, fs: fs, name: name}, nil
}

func (fs *syncCountFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	return fs.wrap(name, f, err)
}

func (fs *syncCountFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.Open(name, opts...)
	return fs.wrap(name, f, err)
}

func (fs *syncCountFS) OpenDir(name string) (vfs.File, error) {
	f, err := fs.FS.OpenDir(name)
	return fs.wrap(name, f, err)
}

type syncCountFile struct {
	vfs.File
	fs   *syncCountFS
	name string
}

func (f *syncCountFile) Sync() error     { f.fs.count(f.name); return f.File.Sync() }
func (f *syncCountFile) SyncData() error { f.fs.count(f.name); return f.File.SyncData() }
func (f *syncCountFile) SyncTo(n int64) (bool, error) {
	f.fs.count(f.name)
	return f.File.SyncTo(n)
}

// A checkpoint directory is scratch: the Checkpointer keeps its files
// elsewhere and syncs them there. Taking one syncs the data it keeps (the
// copied MANIFEST and OPTIONS, the linked WAL) but neither the directory,
// nor its parent, nor Pebble's empty marker files: each directory sync is
// a journal commit that the raft log's syncs queue behind.
func TestCheckpointSyncsOnlyWhatItKeeps(t *testing.T) {
	fs := &syncCountFS{FS: vfs.NewMem(), syncs: map[string]int{}}
	cp := &captureCheckpointer{}
	f := openWith(t, fs, "/live", cp)
	defer f.Close()
	lg := newLogger()
	for i := 0; i < 50; i++ {
		applyOne(t, f, lg.next(put(fmt.Sprintf("k%d", i), "v")))
	}
	if err := fs.MkdirAll("/scratch", 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Snapshot(); err != nil {
		t.Fatal(err)
	}
	fs.mu.Lock()
	fs.syncs = map[string]int{}
	fs.mu.Unlock()
	if _, _, err := cp.take("/scratch/ck"); err != nil {
		t.Fatal(err)
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	kept := map[string]bool{}
	for p, n := range fs.syncs {
		base := filepath.Base(p)
		switch {
		case p == "/scratch/ck" || p == "/scratch" || strings.HasPrefix(base, "marker."):
			t.Errorf("%s synced %d times", p, n)
		case filepath.Dir(p) == "/scratch/ck":
			kept[strings.SplitN(base, "-", 2)[0]] = true
		}
	}
	if !kept["MANIFEST"] || !kept["OPTIONS"] || len(cp.prefix["/scratch/ck"]) == 0 {
		t.Fatalf("synced %v; want the MANIFEST and OPTIONS copies and the linked WAL (%v)", fs.syncs, cp.prefix["/scratch/ck"])
	}
	for name := range cp.prefix["/scratch/ck"] {
		if fs.syncs[filepath.Join("/scratch/ck", name)] == 0 {
			t.Fatalf("linked WAL %s not synced: %v", name, fs.syncs)
		}
	}
}

// openWithPuts opens a state machine on fs at /live with checkpointer cp
// and applies n puts (k0..k<n-1>), one entry each.
func openWithPuts(t *testing.T, fs vfs.FS, cp Checkpointer, n int) (*FSM, *logger) {
	t.Helper()
	f := openWith(t, fs, "/live", cp)
	lg := newLogger()
	for i := 0; i < n; i++ {
		applyOne(t, f, lg.next(put(fmt.Sprintf("k%d", i), "v")))
	}
	return f, lg
}

// putBytes is a batch of one put of value v.
func putBytes(k string, v []byte) *command.Command {
	return &command.Command{Type: command.TypeBatch, Batch: &command.Batch{Ops: []command.Op{{Kind: command.OpPut, Key: []byte(k), Value: v}}}}
}

// takeCountingReads takes the checkpoint into dir with fs's read counts
// cleared first, so that they count what the take read.
func (c *captureCheckpointer) takeCountingReads(fs *readCountFS, dir string) (uint64, error) {
	fs.mu.Lock()
	clear(fs.bytes)
	fs.mu.Unlock()
	idx, _, err := c.take(dir)
	return idx, err
}

// readCountFS counts the bytes read from each file by path.
type readCountFS struct {
	vfs.FS
	mu    sync.Mutex
	bytes map[string]int64
}

func (fs *readCountFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.Open(name, opts...)
	if err != nil {
		return f, err
	}
	return &readCountFile{File: f, fs: fs, name: filepath.Clean(name)}, nil
}

func (fs *readCountFS) read(name string, n int) {
	fs.mu.Lock()
	fs.bytes[name] += int64(n)
	fs.mu.Unlock()
}

type readCountFile struct {
	vfs.File
	fs   *readCountFS
	name string
}

func (f *readCountFile) Read(p []byte) (int, error) {
	n, err := f.File.Read(p)
	f.fs.read(f.name, n)
	return n, err
}

func (f *readCountFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.File.ReadAt(p, off)
	f.fs.read(f.name, n)
	return n, err
}

// Pebble's checkpoint copies the live WAL through a stream that walFS
// turns into a link: the stream's source must not read the live WAL (up
// to a memtable of bytes inside every create call), and the checkpoint
// must still open as the state at its index.
func TestCheckpointDoesNotReadTheLiveWAL(t *testing.T) {
	fs := &readCountFS{FS: vfs.NewMem(), bytes: map[string]int64{}}
	cp := &captureCheckpointer{}
	f := openWith(t, fs, "/live", cp)
	defer f.Close()
	lg := newLogger()
	val := bytes.Repeat([]byte{'v'}, 16<<10)
	var logs []*raft.Log
	for i := 0; i < 200; i++ { // ~3 MiB in the memtable and WALs
		logs = append(logs, lg.next(putBytes(fmt.Sprintf("k%03d", i), val)))
		applyOne(t, f, logs[i])
	}
	if _, err := f.Snapshot(); err != nil {
		t.Fatal(err)
	}
	idx, err := cp.takeCountingReads(fs, "/ck")
	if err != nil || idx != 200 {
		t.Fatalf("checkpoint at %d (%v), want 200", idx, err)
	}
	if w := cp.walBytes(t, fs, "/ck"); w < 3<<20 {
		t.Fatalf("the checkpoint links %d WAL bytes, want a large WAL for this test", w)
	}
	fs.mu.Lock()
	for p, n := range fs.bytes {
		if filepath.Dir(p) == f.dbDir() && strings.HasSuffix(p, ".log") && n > 0 {
			t.Errorf("the checkpoint read %d bytes of the live WAL %s", n, p)
		}
	}
	fs.mu.Unlock()
	ref := openWith(t, vfs.NewMem(), "/ref", nil)
	defer ref.Close()
	ref.ApplyBatch(logs)
	cp.materialize(t, fs, "/ck")
	ck := openCheckpointDir(t, fs, "/ck")
	defer ck.Close()
	if ck.AppliedIndex() != 200 || !bytes.Equal(dump(t, ck), dump(t, ref)) {
		t.Fatalf("the checkpoint opens at %d with other contents than the state after 200 entries", ck.AppliedIndex())
	}
}

// The applied index of a checkpoint comes from the last batch of its
// newest WAL, read from the WAL's tail: a short tail when the batch fits
// in it, a longer one or the whole file when it does not.
func TestCheckpointReadsOnlyTheWALTailItNeeds(t *testing.T) {
	for _, tc := range []struct {
		name      string
		last      int   // value bytes of the last batch
		maxRead   int64 // bytes read of each of the checkpoint's WALs (64 KiB, then 1 MiB tails, each from a block boundary)
		minNewest int64 // the newest WAL must be longer than the tail, or the case proves nothing
	}{
		{"small batch", 4 << 10, 64<<10 + 32<<10, 3 << 20 / 2},
		{"batch over the short tail", 200 << 10, 64<<10 + 1<<20 + 64<<10, 3 << 20 / 2},
		{"batch over every tail", 1200 << 10, 1 << 40, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := &readCountFS{FS: vfs.NewMem(), bytes: map[string]int64{}}
			cp := &captureCheckpointer{}
			f, lg := openWithPuts(t, fs, cp, 0)
			defer f.Close()
			val := bytes.Repeat([]byte{'v'}, 16<<10)
			for i := 0; i < 600; i++ { // ~9.6 MiB of WALs (memtables double from 256 KiB) before the last batch
				applyOne(t, f, lg.next(putBytes(fmt.Sprintf("k%03d", i), val)))
			}
			applyOne(t, f, lg.next(putBytes("last", bytes.Repeat([]byte{'l'}, tc.last))))
			if _, err := f.Snapshot(); err != nil {
				t.Fatal(err)
			}
			idx, err := cp.takeCountingReads(fs, "/ck")
			if err != nil || idx != 601 {
				t.Fatalf("checkpoint at %d (%v), want 601", idx, err)
			}
			newest := ""
			for name := range cp.prefix["/ck"] {
				newest = max(newest, name)
			}
			if n := cp.prefix["/ck"][newest]; n < tc.minNewest {
				t.Fatalf("the checkpoint's newest WAL %s holds %d bytes, want over %d for this case", newest, n, tc.minNewest)
			}
			fs.mu.Lock()
			defer fs.mu.Unlock()
			for p, n := range fs.bytes {
				if filepath.Dir(p) == "/ck" && strings.HasSuffix(p, ".log") && n > tc.maxRead {
					t.Errorf("read %d bytes of the checkpoint's WAL %s, want at most %d", n, p, tc.maxRead)
				}
			}
		})
	}
}

// The MANIFEST, which every checkpoint copies, stays small however many
// flushes and compactions the state machine has been through: Pebble's
// default rolls it over only at 128 MiB.
func TestManifestRollsOverSmall(t *testing.T) {
	fs := vfs.NewMem()
	f := openMem(t, fs)
	defer f.Close()
	lg := newLogger()
	manifest := func() (string, int64) {
		names, err := fs.List(f.dbDir())
		if err != nil {
			t.Fatal(err)
		}
		var newest string
		for _, n := range names {
			if strings.HasPrefix(n, "MANIFEST-") {
				newest = max(newest, n) // zero-padded numbers
			}
		}
		st, err := fs.Stat(filepath.Join(f.dbDir(), newest))
		if err != nil {
			t.Fatal(err)
		}
		return newest, st.Size()
	}
	first, _ := manifest()
	var largest int64
	for i := 0; i < 1500; i++ {
		applyOne(t, f, lg.next(put(fmt.Sprintf("k%05d", i%97), strconv.Itoa(i))))
		if err := f.DB(func(db *pebble.DB) error { return db.Flush() }); err != nil {
			t.Fatal(err)
		}
		_, n := manifest()
		largest = max(largest, n)
	}
	last, _ := manifest()
	// Pebble's rule alone: rolled over once the edits name more tables
	// than the version has (a handful here), so a few records at most.
	if last == first || largest > 16<<10 {
		t.Fatalf("MANIFEST %s after 1500 flushes (first %s), at most %d bytes: want it rolled over by Pebble's table-count rule", last, first, largest)
	}
}
