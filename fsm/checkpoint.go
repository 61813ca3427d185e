package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/batchrepr"
	"github.com/cockroachdb/pebble/v2/record"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// ErrReplaced: the database a snapshot was taken from was replaced by a
// Restore before its checkpoint was made; raft takes the next one.
var ErrReplaced = errors.New("fsm: state was restored since the snapshot began")

// TakeCheckpoint is what a Checkpointer's FSMSnapshot calls from Persist,
// off the FSM goroutine, while entries keep being applied: it makes a
// Pebble checkpoint of the live database in dir (a directory that must not
// exist; hard-linked SSTs, synced WAL) and returns the raft index and term
// of the last entry whose effects the checkpoint holds. That index is at
// least the snapshot's index and may be higher: the checkpoint captures a
// prefix of the applied batches that ends wherever Pebble copied the WAL.
// Raft re-delivers the entries above the snapshot index after an install
// and the state machine skips those at or below its applied index, so a
// checkpoint that is ahead of its snapshot index is installed correctly.
//
// walPrefix names the checkpoint's WAL files that are hard links to a live
// WAL rather than copies (nothing is written for them inside the call):
// only the first walPrefix[name] bytes belong to the checkpoint, they end
// at a record boundary and are synced, and the file beyond them keeps
// growing until the live DB moves to a new WAL. A Checkpointer must read
// no more than that of such a file (and must not modify it); Pebble must
// not open dir until each is replaced by a copy of its prefix.
//
// reuse, when not nil, is called (within take, one table at a time) with
// the live path of each table (.sst) as Pebble is about to link it into
// dir, while Pebble holds the version
// that references it. It returns "" to have the table linked as usual, or
// the path of a file that is that very table (the caller's own hard link
// to it), which the caller keeps until take returns and records itself:
// the table is then not linked and is absent from dir. (Reading the
// applied index may need the whole checkpoint opened; the held files are
// linked in for that and removed again.)
type TakeCheckpoint = func(dir string, reuse func(src string) (held string)) (index, term uint64, walPrefix map[string]int64, err error)

// takeCheckpoint returns the TakeCheckpoint of the database generation
// gen. The WAL sync that Pebble's WithFlushedWAL performs first is also
// what makes the state at the snapshot index durable in the live DB before
// raft truncates the log behind it (raft compacts only after Persist).
//
// The memtable is not flushed for a checkpoint: its WAL, linked, holds
// what the memtable does (up to MemTableSize), and Pebble flushes when the
// memtable fills, as it would without checkpoints. Flushing after every
// checkpoint whose WAL held more than 4 MiB (sessions 3–6) made each
// frequent checkpoint cost an extra L0 table and the compactions it
// triggers: at 100 MiB of state, 80–190 ms of a concurrent write load's
// throughput per create counting the half second after it, against 20–70
// ms without (docs/benchmarks-checkpoints.md, session 7). The snapshot
// package hashes a growing linked WAL incrementally, so a longer WAL costs
// a create only what was written since the previous one.
func (f *FSM) takeCheckpoint(gen uint64) TakeCheckpoint {
	return func(dir string, reuse func(string) string) (uint64, uint64, map[string]int64, error) {
		f.mu.RLock()
		defer f.mu.RUnlock()
		if f.db == nil {
			return 0, 0, nil, ErrClosed
		}
		if f.gen != gen {
			return 0, 0, nil, ErrReplaced
		}
		if err := f.Err(); err != nil {
			return 0, 0, nil, err
		}
		var skip func(string) bool
		held := map[string]string{} // table left out of dir -> the caller's link to it
		if reuse != nil {
			skip = func(src string) bool {
				h := reuse(src)
				if h != "" {
					held[filepath.Base(src)] = h
				}
				return h != ""
			}
		}
		done := f.walfs.linkInto(dir, skip)
		err := f.db.Checkpoint(dir, pebble.WithFlushedWAL())
		f.walfs.endReuse() // links from here on (openedApplied's) are real
		var index, term uint64
		var ends map[string]int64
		if err == nil {
			// Read through walfs: a linked WAL only up to what was captured.
			index, term, ends, err = checkpointState(f.walfs, dir, held)
		}
		linked := done()
		if err != nil {
			return 0, 0, nil, fmt.Errorf("fsm: pebble checkpoint: %w", err)
		}
		prefix := map[string]int64{}
		for name, end := range ends {
			if linked[name] {
				prefix[name] = end // the valid records: a torn tail is left out
			}
		}
		return index, term, prefix, nil
	}
}

// CheckpointApplied returns the applied index and term recorded in the
// Pebble checkpoint in dir without opening it (see checkpointState).
func CheckpointApplied(fs vfs.FS, dir string) (index, term uint64, err error) {
	index, term, _, err = checkpointState(fs, dir, nil)
	return index, term, err
}

// checkpointState returns the applied index and term recorded in the
// Pebble checkpoint in dir, and where the valid records of each of its
// WAL files end. Every applied batch sets the applied-index key, last, so
// the last batch of the newest WAL that holds any batch names the newest
// applied entry; only that batch is decoded. When no WAL holds a batch
// (or, unexpectedly, the last one does not set the key), the key is read
// from the checkpoint opened read-only, with the tables left out of it
// (held: name -> a link to the same file elsewhere) linked in for as long
// as that takes.
func checkpointState(fs vfs.FS, dir string, held map[string]string) (index, term uint64, ends map[string]int64, err error) {
	names, err := fs.List(dir)
	if err != nil {
		return 0, 0, nil, err
	}
	type wal struct {
		num  uint64
		name string
	}
	var wals []wal
	for _, n := range names {
		if num, ok := strings.CutSuffix(n, ".log"); ok {
			v, err := strconv.ParseUint(num, 10, 64)
			if err != nil {
				return 0, 0, nil, fmt.Errorf("fsm: unexpected WAL file %q in checkpoint", n)
			}
			wals = append(wals, wal{v, n})
		}
	}
	sort.Slice(wals, func(i, j int) bool { return wals[i].num > wals[j].num })
	ends = map[string]int64{}
	var newest []byte // the last batch of the newest WAL holding one
	for _, w := range wals {
		last, end, err := scanWAL(fs, filepath.Join(dir, w.name), w.num)
		if err != nil {
			return 0, 0, nil, err
		}
		ends[w.name] = end
		if newest == nil {
			newest = last // nil: no batch in this WAL, look at the older one
		}
	}
	if newest != nil {
		i, t, ok, err := batchApplied(newest)
		if err != nil {
			return 0, 0, nil, err
		}
		if ok {
			return i, t, ends, nil
		} // else a batch the FSM did not write: let Pebble replay decide
	}
	if len(wals) > 0 {
		// Pebble would replay the WALs: only a checkpoint with whole
		// files can be opened (a linked prefix cannot be cut here).
		for _, w := range wals {
			st, err := fs.Stat(filepath.Join(dir, w.name))
			if err != nil {
				return 0, 0, nil, err
			}
			if st.Size() != ends[w.name] {
				return 0, 0, nil, fmt.Errorf("%w: WAL %s has no applied index to read and cannot be opened as is", ErrCorruptState, w.name)
			}
		}
	}
	index, term, err = openedApplied(fs, dir, held)
	if err != nil {
		return 0, 0, nil, err
	}
	return index, term, ends, nil
}

// openedApplied reads the applied index of the checkpoint in dir by
// opening it read-only, with the held tables linked in meanwhile.
func openedApplied(fs vfs.FS, dir string, held map[string]string) (index, term uint64, err error) {
	var linked []string
	defer func() {
		for _, p := range linked {
			if rerr := fs.Remove(p); rerr != nil && err == nil {
				err = rerr
			}
		}
	}()
	for name, h := range held {
		p := filepath.Join(dir, name)
		if err := fs.Link(h, p); err != nil {
			return 0, 0, fmt.Errorf("fsm: open checkpoint %s: link held table %s: %w", dir, name, err)
		}
		linked = append(linked, p)
	}
	o := PebbleOptions(fs)
	o.ReadOnly = true
	db, err := pebble.Open(dir, o)
	if err != nil {
		return 0, 0, fmt.Errorf("fsm: open checkpoint %s: %w", dir, err)
	}
	defer db.Close()
	v, c, err := db.Get(keyApplied)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	return decodeApplied(v)
}

func decodeApplied(v []byte) (uint64, uint64, error) {
	if len(v) != 16 {
		return 0, 0, fmt.Errorf("%w: applied index of %d bytes", ErrCorruptState, len(v))
	}
	return binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:]), nil
}

// scanWAL returns the last record of one WAL file that writes keys (nil
// if none) and the offset where its valid records end. Like Pebble's
// replay of the newest WAL, it stops at the end of the valid records — a
// clean end, or a torn or recycled tail — and fails on a corruption the
// reader confirms.
//
// A WAL linked from the live DB (opened through walFS: Pebble wrote it in
// this process, moments ago) is read from its last scanTails[0] bytes
// only, rounded down to a block boundary: chunks never straddle blocks,
// and the reader skips the rest of a record that began earlier. If no
// whole batch is there (a batch larger than the tail), the next, longer
// tail is read, and last the whole file. The copy of a WAL this process
// did not write is always read whole.
func scanWAL(fs vfs.FS, path string, num uint64) (last []byte, end int64, err error) {
	f, err := fs.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	if wr, ok := f.(*walReader); ok {
		size := wr.n.Load()
		for _, tail := range scanTails {
			if size <= tail {
				break
			}
			from := (size - tail) / walBlockSize * walBlockSize
			last, end, err := scanRecords(io.NewSectionReader(f, from, size-from), num, path)
			if err != nil || last != nil {
				return last, from + end, err
			}
		}
	}
	return scanRecords(f, num, path)
}

// scanTails are how much of a linked live WAL scanWAL reads, in turn,
// before it reads all of it: the FSM's batches (one raft batch of entries
// each) are mostly far smaller than the first; a producer's large commit
// may need the second. Reading 1 MiB of each in every create was about a
// sixth of its CPU (internal/node BenchmarkCreateCPU).
var scanTails = []int64{64 << 10, 1 << 20}

// walBlockSize is the block size of Pebble's log format (record package).
const walBlockSize = 32 << 10

func scanRecords(f io.Reader, num uint64, path string) (last []byte, end int64, err error) {
	r := newRecordReader(record.NewReader, f, num)
	var cur, lastBuf bytes.Buffer
	for {
		rec, err := r.Next()
		cur.Reset()
		if err == nil {
			_, err = cur.ReadFrom(rec)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, record.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return nil, 0, fmt.Errorf("fsm: read WAL %s: %w", path, err)
		}
		end = r.Offset()
		h, ok := batchrepr.ReadHeader(cur.Bytes())
		if !ok {
			return nil, 0, fmt.Errorf("%w: WAL record of %d bytes in %s", ErrCorruptState, cur.Len(), path)
		}
		if h.Count > 0 {
			cur, lastBuf = lastBuf, cur
		}
	}
	if lastBuf.Len() == 0 {
		return nil, end, nil
	}
	return lastBuf.Bytes(), end, nil
}

// batchApplied returns the applied index a batch writes, if it does.
func batchApplied(data []byte) (index, term uint64, found bool, err error) {
	if len(data) < batchrepr.HeaderLen {
		return 0, 0, false, fmt.Errorf("%w: WAL record of %d bytes", ErrCorruptState, len(data))
	}
	br := batchrepr.Read(data)
	for {
		kind, k, v, ok, err := br.Next()
		if err != nil {
			return 0, 0, false, fmt.Errorf("%w: WAL batch: %v", ErrCorruptState, err)
		}
		if !ok {
			return index, term, found, nil
		}
		if kind == pebble.InternalKeyKindSet && string(k) == string(keyApplied) {
			i, t, err := decodeApplied(v)
			if err != nil {
				return 0, 0, false, err
			}
			index, term, found = i, t, true
		}
	}
}

// newRecordReader calls record.NewReader, whose log-number parameter has a
// type in a Pebble-internal package: inference names it for us.
func newRecordReader[N ~uint64](newReader func(io.Reader, N) *record.Reader, r io.Reader, num uint64) *record.Reader {
	return newReader(r, N(num))
}
