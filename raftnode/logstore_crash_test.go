package raftnode

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sort"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
)

// TestWALSealedTailIsStuck pins down a raft-wal v0.4.1 defect that keeps
// the wal store opt-in: when the append that fills a segment (and writes its
// index block) is followed by Close — or a crash — before the background
// rotation records the seal, the reopened log treats the sealed segment as
// its open tail and every later append fails with "segment is sealed". The
// node can then never write its log again without manual repair. The test
// passes while the defect reproduces (it skips when the close happens not to
// race the rotation); once an upgrade makes it skip every time, revisit the
// wal store's status.
func TestWALSealedTailIsStuck(t *testing.T) {
	dir := t.TempDir()
	open := func() *raftwal.WAL {
		w, err := raftwal.Open(dir, raftwal.WithSegmentSize(8<<10), raftwal.WithLogger(hclog.NewNullLogger()))
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	w := open()
	// With 8 KiB segments, the 15th append of 500 bytes fills the first
	// segment and seals it; Close follows at once.
	for idx := uint64(1); idx <= 15; idx++ {
		if err := w.StoreLogs([]*raft.Log{{Index: idx, Term: 1, Data: make([]byte, 500)}}); err != nil {
			t.Fatal(err)
		}
	}
	_ = w.Close()
	w = open()
	defer w.Close()
	err := w.StoreLogs([]*raft.Log{{Index: 16, Term: 1, Data: []byte("x")}})
	if !errors.Is(err, types.ErrSealed) {
		t.Skipf("append after reopen: %v; the close did not race the rotation this time", err)
	}
}

// TestWALStoreSurvivesPowerLoss checks the raft-wal store against a model
// of power loss: segment files live in a VFS that keeps, per file, what was
// last fsynced. A crash is armed to strike after a random number of file
// operations — in the middle of an append, a head or a tail truncation —
// after which nothing more reaches the files; then every file falls back
// to its synced content plus a random subset of the 512-byte sectors
// written since (torn writes), and the log is reopened. After every reopen:
// every acknowledged append is there with its exact payload, nothing that
// was never written appears, an acknowledged head truncation is not undone,
// and the term is the last acknowledged one.
//
// The metadata store (bbolt, which fsyncs its own commits) stays on the
// real disk: this checks raft-wal's segment handling, not bbolt.
func TestWALStoreSurvivesPowerLoss(t *testing.T) {
	seeds := 40
	if testing.Short() {
		seeds = 8
	}
	for seed := uint64(1); seed <= uint64(seeds); seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { walPowerLoss(t, seed) })
	}
}

func walPowerLoss(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	metaDir := t.TempDir()
	vfs := newCrashVFS(rng)
	open := func() *raftwal.WAL {
		w, err := raftwal.Open(metaDir, raftwal.WithSegmentFiler(segment.NewFiler(metaDir, vfs)),
			raftwal.WithMetaStore(&crashMeta{BoltMetaDB: &metadb.BoltMetaDB{}, vfs: vfs}),
			raftwal.WithSegmentSize(16<<10), raftwal.WithLogger(hclog.NewNullLogger()))
		if err != nil {
			t.Fatalf("open after crash: %v", err)
		}
		return w
	}
	payload := func(index, gen uint64) []byte { return []byte(fmt.Sprintf("%d/%d/%0100d", index, gen, index)) }

	// The model: what was acknowledged, and what may have been written.
	acked := map[uint64]uint64{}          // index -> generation of its acknowledged payload
	maybe := map[uint64]map[uint64]bool{} // index -> generations attempted but not acknowledged
	var ackedFirst, ackedLast, ackedTerm, gen uint64 = 1, 0, 0, 1

	w := open()
	for round := 0; round < 12; round++ {
		vfs.armCrash(1 + rng.IntN(60))
		crashed := false
		// The operation the crash interrupted may or may not have happened.
		var headTo, tailFrom uint64 // a head truncation up to headTo, a tail one from tailFrom
		for op := 0; op < 40 && !crashed; op++ {
			var err error
			headTo, tailFrom = 0, 0
			switch r := rng.IntN(10); {
			case r < 6: // append a batch
				first, _ := w.LastIndex()
				first = max(first, ackedLast) + 1
				n := 1 + rng.IntN(20)
				var logs []*raft.Log
				for i := uint64(0); i < uint64(n); i++ {
					idx := first + i
					logs = append(logs, &raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: payload(idx, gen)})
					if maybe[idx] == nil {
						maybe[idx] = map[uint64]bool{}
					}
					maybe[idx][gen] = true
				}
				if err = w.StoreLogs(logs); err == nil {
					for _, l := range logs {
						acked[l.Index] = gen
					}
					ackedLast = first + uint64(n) - 1
				}
			case r < 7 && ackedLast > ackedFirst+10: // compaction: drop a prefix
				upTo := ackedFirst + uint64(rng.IntN(int(ackedLast-ackedFirst)/2))
				headTo = upTo
				if err = w.DeleteRange(ackedFirst, upTo); err == nil {
					for i := ackedFirst; i <= upTo; i++ {
						delete(acked, i)
					}
					ackedFirst = upTo + 1
				}
			case r < 8 && ackedLast > ackedFirst+5: // conflict: drop a suffix, later rewritten
				from := ackedLast - uint64(rng.IntN(5))
				gen++
				tailFrom = from
				if err = w.DeleteRange(from, ackedLast); err == nil {
					for i := from; i <= ackedLast; i++ {
						delete(acked, i)
					}
					ackedLast = from - 1
				}
			default: // a new term
				term := ackedTerm + 1
				if err = w.SetUint64([]byte("CurrentTerm"), term); err == nil {
					ackedTerm = term
				}
			}
			if errors.Is(err, types.ErrSealed) && !vfs.isCrashed() {
				// Known raft-wal v0.4.1 defect (see TestWALSealedTailIsStuck):
				// the crash hit between sealing a segment and recording the
				// rotation, and the log can no longer be appended to. The
				// data checks above all passed; nothing more to learn here.
				t.Logf("round %d: stuck on a sealed tail (known raft-wal v0.4.1 defect)", round)
				_ = w.Close()
				return
			}
			if err != nil {
				if !errors.Is(err, errCrashed) && !vfs.isCrashed() {
					t.Fatalf("round %d op %d (ackedFirst %d ackedLast %d): %v", round, op, ackedFirst, ackedLast, err)
				}
				crashed = true
			}
		}
		_ = w.Close()
		vfs.powerLoss()
		w = open()
		// Check the reopened log against the model.
		first, _ := w.FirstIndex()
		last, _ := w.LastIndex()
		if !crashed {
			headTo, tailFrom = 0, 0
		}
		wantLast := ackedLast
		if tailFrom > 0 && last < ackedLast {
			wantLast = tailFrom - 1 // the interrupted tail truncation happened
		}
		switch {
		case ackedLast < ackedFirst: // empty log acknowledged
		case first != ackedFirst && !(headTo > 0 && first == headTo+1):
			t.Fatalf("round %d: first index %d, acknowledged %d (interrupted head truncation to %d)", round, first, ackedFirst, headTo)
		case last < wantLast:
			t.Fatalf("round %d: log [%d,%d] lost acknowledged entries up to %d", round, first, last, wantLast)
		}
		for i := first; i <= last && last > 0; i++ {
			var l raft.Log
			if err := w.GetLog(i, &l); err != nil {
				t.Fatalf("round %d: entry %d of [%d,%d]: %v", round, i, first, last, err)
			}
			if g, ok := acked[i]; ok && i <= wantLast {
				if string(l.Data) != string(payload(i, g)) {
					t.Fatalf("round %d: acknowledged entry %d reads %q", round, i, l.Data)
				}
				continue
			}
			ok := false
			for g := range maybe[i] {
				ok = ok || string(l.Data) == string(payload(i, g))
			}
			if !ok {
				t.Fatalf("round %d: entry %d holds %q, never written", round, i, l.Data)
			}
		}
		if term, _ := w.GetUint64([]byte("CurrentTerm")); term < ackedTerm {
			t.Fatalf("round %d: term %d after crash, %d was acknowledged", round, term, ackedTerm)
		}
		// Whatever survived is now the truth the next round builds on.
		ackedFirst, ackedLast = max(first, 1), last
		if last == 0 {
			ackedFirst = 1
		}
		for i := range acked {
			if i < ackedFirst || i > ackedLast {
				delete(acked, i)
			}
		}
		for i := ackedFirst; i <= ackedLast && ackedLast > 0; i++ {
			var l raft.Log
			_ = w.GetLog(i, &l)
			for g := range maybe[i] {
				if string(l.Data) == string(payload(i, g)) {
					acked[i] = g
				}
			}
		}
		ackedTerm, _ = w.GetUint64([]byte("CurrentTerm"))
	}
	_ = w.Close()
}

var errCrashed = errors.New("crashvfs: power lost")

const tornKeep = 1 // of 2: chance that an unsynced sector survives

// crashMeta gates raft-wal's metadata store (a real bbolt file, committed
// atomically and durably) by the same power switch: a commit is one more
// operation the crash can strike at, and none persists after it.
type crashMeta struct {
	*metadb.BoltMetaDB
	vfs *crashVFS
}

func (m *crashMeta) gate() error {
	m.vfs.mu.Lock()
	defer m.vfs.mu.Unlock()
	return m.vfs.step()
}

func (m *crashMeta) CommitState(st types.PersistentState) error {
	if err := m.gate(); err != nil {
		return err
	}
	return m.BoltMetaDB.CommitState(st)
}

func (m *crashMeta) SetStable(key, value []byte) error {
	if err := m.gate(); err != nil {
		return err
	}
	return m.BoltMetaDB.SetStable(key, value)
}

// crashVFS is an in-memory types.VFS that remembers what each file held at
// its last Sync. Creating or deleting a file is durable at once (raft-wal
// fsyncs the directory on create).
type crashVFS struct {
	mu      sync.Mutex
	rng     *rand.Rand
	files   map[string]*crashFile
	opsLeft int // operations until the crash; <0: none armed
	crashed bool
}

type crashFile struct {
	data, synced []byte
}

func newCrashVFS(rng *rand.Rand) *crashVFS {
	return &crashVFS{rng: rng, files: map[string]*crashFile{}, opsLeft: -1}
}

func (v *crashVFS) armCrash(ops int) { v.mu.Lock(); v.opsLeft, v.crashed = ops, false; v.mu.Unlock() }

func (v *crashVFS) isCrashed() bool { v.mu.Lock(); defer v.mu.Unlock(); return v.crashed }

// step counts one file operation and reports whether power is already gone.
func (v *crashVFS) step() error {
	if v.crashed {
		return errCrashed
	}
	if v.opsLeft > 0 {
		v.opsLeft--
		if v.opsLeft == 0 {
			v.crashed = true
			return errCrashed
		}
	}
	return nil
}

// powerLoss reverts every file to its synced bytes, keeping a random subset
// of the sectors written since.
func (v *crashVFS) powerLoss() {
	v.mu.Lock()
	defer v.mu.Unlock()
	const sector = 512
	for _, f := range v.files {
		out := append([]byte(nil), f.synced...)
		if len(out) < len(f.data) {
			out = append(out, make([]byte, len(f.data)-len(out))...)
		}
		for s := 0; s < len(f.data); s += sector {
			e := min(s+sector, len(f.data))
			if string(f.data[s:e]) != string(out[s:e]) && v.rng.IntN(2) < tornKeep {
				copy(out[s:e], f.data[s:e])
			}
		}
		f.data, f.synced = out, append([]byte(nil), out...)
	}
	v.opsLeft, v.crashed = -1, false
}

func (v *crashVFS) ListDir(string) ([]string, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	var names []string
	for n := range v.files {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

func (v *crashVFS) Create(_, name string, size uint64) (types.WritableFile, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.step(); err != nil {
		return nil, err
	}
	if _, ok := v.files[name]; ok {
		return nil, fmt.Errorf("crashvfs: %s exists", name)
	}
	f := &crashFile{data: make([]byte, size), synced: make([]byte, size)}
	v.files[name] = f
	return &crashHandle{v: v, f: f}, nil
}

func (v *crashVFS) Delete(_, name string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.step(); err != nil {
		return err
	}
	delete(v.files, name)
	return nil
}

func (v *crashVFS) open(name string) (*crashHandle, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	f, ok := v.files[name]
	if !ok {
		return nil, fmt.Errorf("crashvfs: %s: %w", name, os.ErrNotExist)
	}
	return &crashHandle{v: v, f: f}, nil
}

func (v *crashVFS) OpenReader(_, name string) (types.ReadableFile, error) { return v.open(name) }
func (v *crashVFS) OpenWriter(_, name string) (types.WritableFile, error) { return v.open(name) }

type crashHandle struct {
	v *crashVFS
	f *crashFile
}

func (h *crashHandle) WriteAt(p []byte, off int64) (int, error) {
	h.v.mu.Lock()
	defer h.v.mu.Unlock()
	if err := h.v.step(); err != nil {
		return 0, err
	}
	if end := int(off) + len(p); end > len(h.f.data) {
		h.f.data = append(h.f.data, make([]byte, end-len(h.f.data))...)
	}
	copy(h.f.data[off:], p)
	return len(p), nil
}

func (h *crashHandle) ReadAt(p []byte, off int64) (int, error) {
	h.v.mu.Lock()
	defer h.v.mu.Unlock()
	if int(off) >= len(h.f.data) {
		return 0, io.EOF
	}
	n := copy(p, h.f.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (h *crashHandle) Sync() error {
	h.v.mu.Lock()
	defer h.v.mu.Unlock()
	if err := h.v.step(); err != nil {
		return err
	}
	h.f.synced = append(h.f.synced[:0], h.f.data...)
	return nil
}

func (h *crashHandle) Close() error { return nil }
