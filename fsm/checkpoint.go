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
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/batchrepr"
	"github.com/cockroachdb/pebble/v2/record"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
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
type TakeCheckpoint = func(dir string) (index, term uint64, err error)

// takeCheckpoint returns the TakeCheckpoint of the database generation
// gen. The WAL sync that Pebble's WithFlushedWAL performs first is also
// what makes the state at the snapshot index durable in the live DB before
// raft truncates the log behind it (raft compacts only after Persist).
// When the WAL copied was large, flush is set: the snapshot's Release then
// starts a memtable flush (flushingSnapshot).
func (f *FSM) takeCheckpoint(gen uint64, flush *atomic.Bool) TakeCheckpoint {
	return func(dir string) (uint64, uint64, error) {
		f.mu.RLock()
		defer f.mu.RUnlock()
		if f.db == nil {
			return 0, 0, ErrClosed
		}
		if f.gen != gen {
			return 0, 0, ErrReplaced
		}
		if err := f.Err(); err != nil {
			return 0, 0, err
		}
		if err := f.db.Checkpoint(dir, pebble.WithFlushedWAL()); err != nil {
			return 0, 0, fmt.Errorf("fsm: pebble checkpoint: %w", err)
		}
		index, term, err := CheckpointApplied(f.fs, dir)
		if err != nil {
			return 0, 0, err
		}
		if walBytes(f.fs, dir) >= flushAfterCheckpoint {
			// Flush the memtable once the checkpoint is complete (see
			// flushingSnapshot), in the background, rather than when it
			// fills: the next checkpoint then copies only the WAL written
			// since this one, instead of up to a memtable's worth again
			// (64 MiB copied and fsynced inside every checkpoint, competing
			// with the raft log's fsyncs), and the data moves into a table
			// that later checkpoints share instead of re-copying. With
			// checkpoints every 64 MiB of log (the default) this flushes
			// about as often as the memtable would.
			flush.Store(true)
		}
		return index, term, nil
	}
}

// flushingSnapshot starts the memtable flush a checkpoint asked for
// (takeCheckpoint) when raft releases the snapshot: after the checkpoint
// is committed and the log compacted, so that the flush's CPU and writes
// do not slow the checkpoint itself.
type flushingSnapshot struct {
	raft.FSMSnapshot
	f     *FSM
	gen   uint64
	flush *atomic.Bool
}

func (s *flushingSnapshot) Release() {
	s.FSMSnapshot.Release()
	if !s.flush.Load() {
		return
	}
	s.f.mu.RLock()
	defer s.f.mu.RUnlock()
	if s.f.db == nil || s.f.gen != s.gen {
		return
	}
	if _, err := s.f.db.AsyncFlush(); err != nil {
		s.f.log.Warn("fsm: flush after checkpoint", "err", err)
	}
}

// flushAfterCheckpoint is the WAL size in a checkpoint above which the
// memtable is flushed right after it (smaller ones are not worth an SST).
const flushAfterCheckpoint = 4 << 20

// walBytes sums the sizes of the WAL files in a checkpoint directory.
func walBytes(fs vfs.FS, dir string) int64 {
	names, err := fs.List(dir)
	if err != nil {
		return 0
	}
	var n int64
	for _, name := range names {
		if strings.HasSuffix(name, ".log") {
			if st, err := fs.Stat(filepath.Join(dir, name)); err == nil {
				n += st.Size()
			}
		}
	}
	return n
}

// CheckpointApplied returns the applied index and term recorded in the
// Pebble checkpoint in dir without opening it: every applied batch sets
// the applied-index key, last, so the last batch of the newest WAL that
// holds any batch names the newest applied entry; only that batch is
// decoded. When no WAL holds a batch (or, unexpectedly, the last one does
// not set the key), the key is read from the checkpoint opened read-only.
func CheckpointApplied(fs vfs.FS, dir string) (index, term uint64, err error) {
	names, err := fs.List(dir)
	if err != nil {
		return 0, 0, err
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
				return 0, 0, fmt.Errorf("fsm: unexpected WAL file %q in checkpoint", n)
			}
			wals = append(wals, wal{v, n})
		}
	}
	sort.Slice(wals, func(i, j int) bool { return wals[i].num > wals[j].num })
	for _, w := range wals {
		last, err := lastBatch(fs, filepath.Join(dir, w.name), w.num)
		if err != nil {
			return 0, 0, err
		}
		if last == nil {
			continue // no batch in this WAL: look at the older one
		}
		i, t, ok, err := batchApplied(last)
		if err != nil {
			return 0, 0, err
		}
		if ok {
			return i, t, nil
		}
		break // a batch the FSM did not write: let Pebble replay decide
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

// lastBatch returns the last record of one WAL file that writes keys
// (nil if none). Like Pebble's replay of the newest WAL, it stops at the
// end of the valid records — a clean end, or a torn or recycled tail —
// and fails on a corruption the reader confirms.
func lastBatch(fs vfs.FS, path string, num uint64) ([]byte, error) {
	f, err := fs.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := newRecordReader(record.NewReader, f, num)
	var cur, last bytes.Buffer
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
			return nil, fmt.Errorf("fsm: read WAL %s: %w", path, err)
		}
		h, ok := batchrepr.ReadHeader(cur.Bytes())
		if !ok {
			return nil, fmt.Errorf("%w: WAL record of %d bytes in %s", ErrCorruptState, cur.Len(), path)
		}
		if h.Count > 0 {
			cur, last = last, cur
		}
	}
	if last.Len() == 0 {
		return nil, nil
	}
	return last.Bytes(), nil
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
