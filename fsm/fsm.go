package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"

	"github.com/cairn-db/cairn/fsm/command"
)

// FormatMajorVersion is the Pebble on-disk format cairn creates and expects.
const FormatMajorVersion = pebble.FormatNewest

// Config configures an FSM.
type Config struct {
	// Dir holds the live Pebble database (Dir/db) and restore scratch space.
	Dir string
	// Applier holds the deterministic rules; identical on every replica.
	Applier ApplierConfig
	// SyncApply commits every applied batch with fsync. Off by default: the
	// Raft log is the durable record, entries above the persisted applied
	// index are re-applied after a crash, and Snapshot syncs the WAL before
	// raft may truncate the log (see DESIGN.md).
	SyncApply bool
	// FS is the filesystem Pebble uses; nil means the OS. Tests pass a
	// crashable in-memory FS.
	FS vfs.FS
	// Checkpointer makes and installs snapshots; nil means full transfer.
	Checkpointer Checkpointer
	// PebbleOptions, if set, adjusts the Pebble options before open.
	PebbleOptions func(*pebble.Options)
	Logger        *slog.Logger
}

// DefaultConfig returns a Config for dir with defaults.
func DefaultConfig(dir string) Config {
	return Config{Dir: dir, Applier: DefaultApplierConfig()}
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if c.Dir == "" {
		return errors.New("fsm: Dir is required")
	}
	return c.Applier.Validate()
}

// Checkpointer makes Raft snapshots of the Pebble state and installs them.
type Checkpointer interface {
	// Snapshot runs on the FSM goroutine while no entry is being applied
	// (db holds exactly the state at index) and must return at once: the
	// state machine applies nothing while it runs. The returned
	// FSMSnapshot's Persist runs concurrently with later applies and makes
	// the checkpoint itself by calling take (see TakeCheckpoint).
	Snapshot(db *pebble.DB, index, term uint64, take TakeCheckpoint) (raft.FSMSnapshot, error)
	// Restore reads a snapshot written by Snapshot's Persist and builds a
	// complete Pebble directory at dir, which does not exist yet.
	Restore(r io.Reader, dir string) error
}

// BaseRestorer is a Checkpointer that can build the restored directory
// from a copy of the live state: base makes a Pebble checkpoint of the
// live DB at a directory. snapshot.Checkpointer uses it for delta
// installs, which ship only the keys that differ.
type BaseRestorer interface {
	RestoreWithBase(r io.Reader, dir string, base func(dir string) error) error
}

// FSM is cairn's raft.BatchingFSM: a thin adapter that owns the Pebble DB,
// persists the applied index with every batch, and delegates the meaning of
// entries to the stateless applier.
type FSM struct {
	cfg     Config
	log     *slog.Logger
	applier applier
	fs      vfs.FS
	walfs   *walFS // fs, with WAL extents tracked: Pebble runs on it

	mu  sync.RWMutex // guards db and gen against Restore's swap; readers hold RLock
	db  *pebble.DB
	gen uint64 // incremented by every Restore

	applied atomic.Uint64
	term    atomic.Uint64
	failed  atomic.Pointer[error] // set on a storage failure: nothing more is persisted

	waitMu sync.Mutex
	waitCh chan struct{} // closed and replaced whenever applied advances

	// sweep is keySweep as of the last committed batch (FSM goroutine only;
	// reset by Restore).
	sweep sweepMark
	// scratch is reused by every batch's staged keys and values (FSM
	// goroutine only).
	scratch []byte
}

var _ raft.BatchingFSM = (*FSM)(nil)

// Open opens (or creates) the state machine in cfg.Dir.
func Open(cfg Config) (*FSM, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	f := &FSM{cfg: cfg, log: cfg.Logger, applier: applier{cfg: cfg.Applier, engines: &engineCache{}}, fs: cfg.FS, waitCh: make(chan struct{})}
	if f.log == nil {
		f.log = slog.Default()
	}
	if f.fs == nil {
		f.fs = vfs.Default
	}
	f.walfs = newWALFS(f.fs)
	if f.cfg.Checkpointer == nil {
		f.cfg.Checkpointer = &FullCheckpointer{FS: f.fs, ScratchDir: filepath.Join(cfg.Dir, "checkpoints")}
	}
	if err := f.fs.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	if err := syncDir(f.fs, filepath.Dir(filepath.Clean(cfg.Dir))); err != nil {
		return nil, err
	}
	if err := f.recoverSwap(); err != nil {
		return nil, err
	}
	db, err := f.openDB(f.dbDir())
	if err != nil {
		return nil, err
	}
	f.db = db
	if err := f.loadApplied(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return f, nil
}

func (f *FSM) dbDir() string      { return filepath.Join(f.cfg.Dir, "db") }
func (f *FSM) restoreDir() string { return filepath.Join(f.cfg.Dir, "db.restore") }
func (f *FSM) oldDir() string     { return filepath.Join(f.cfg.Dir, "db.old") }

// PebbleOptions returns the options cairn opens every state DB with
// (including checkpoints opened for verification).
func PebbleOptions(fs vfs.FS) *pebble.Options {
	o := &pebble.Options{FS: fs, FormatMajorVersion: FormatMajorVersion}
	o.Logger = quietLogger{}
	// 64 MiB memtables instead of Pebble's 4 MiB: a fraction of the flushes,
	// L0 files and L0->Lbase rewrites under sustained commits (server CPU per
	// update 28-40 us -> 17-23 us, docs/benchmarks.md). Memtables grow to
	// this size from 256 KiB, so small or idle databases do not pay for it;
	// the cost is up to 64 MiB more WAL to replay after a crash.
	o.MemTableSize = 64 << 20
	// The FSM commits without syncing its WAL (the raft log is the durable
	// record), so without this the WAL's pages reach the disk only when a
	// checkpoint syncs it — several MB written back at once, inside the
	// create call, on the disk the raft logs' fsyncs need — or when the
	// kernel flushes them. Asking for write-back every 512 KiB (Pebble's
	// default for tables) spreads that over time: docs/benchmarks-checkpoints.md,
	// *Linked WAL (session 5)*.
	o.WALBytesPerSync = 512 << 10
	// Tables of 8 MiB at L0 (16 MiB at Lbase, doubling below) instead of
	// Pebble's 2 MiB: a checkpoint links, checks, stores and lists every
	// table, and retention walks them, so its cost inside the create call
	// grows with their number. At 1 GiB of state: 75 tables instead of
	// 530, a create under a write load 32-35 ms instead of 66-99 ms
	// (docs/benchmarks-checkpoints.md, *Fewer, larger tables (session
	// 7)*). RocksDB's default is 64 MiB at L1; larger tables make each
	// changed key range ship more bytes in a file-level install.
	o.TargetFileSizes[0] = 8 << 20
	// Every checkpoint copies the MANIFEST up to its current size, record by
	// record (Pebble's checkpoint allocates a 32 KiB buffer per record), and
	// Pebble rolls it over only past MaxManifestFileSize — 128 MiB by
	// default, so a node's checkpoints grew slower with every flush and
	// compaction since it started. With a limit of 1 byte the size never
	// holds a roll-over back: Pebble's own rule alone decides, rolling over
	// as soon as the edits since the last roll-over name more tables than
	// the version has (which keeps roll-overs to at most half of what it
	// writes to the MANIFEST). A 64 KiB limit left ~80 records for each
	// create to copy at 1 GiB; 1 byte cut a create's CPU by about a sixth
	// (internal/node BenchmarkCreateCPU, docs/benchmarks-checkpoints.md).
	o.MaxManifestFileSize = manifestRollover
	return o
}

// manifestRollover is the state DB's MaxManifestFileSize (PebbleOptions):
// no size limit of its own (see there).
const manifestRollover = 1

func (f *FSM) openDB(dir string) (*pebble.DB, error) {
	// Only the WALs the DB opened now writes are tracked: a name may have
	// belonged to the DB this one replaces (Restore swaps directories).
	f.walfs.reset(dir)
	o := PebbleOptions(f.walfs)
	if f.cfg.PebbleOptions != nil {
		f.cfg.PebbleOptions(o)
	}
	db, err := pebble.Open(dir, o)
	if err != nil {
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK) || strings.Contains(err.Error(), "lock held by current process") {
			// Pebble's LOCK file is held: flock answers EWOULDBLOCK (another
			// process), Pebble itself says so within one process.
			return nil, fmt.Errorf("%w: %s (is a cairn node already running on this data directory?)", ErrLocked, dir)
		}
		return nil, fmt.Errorf("fsm: open pebble at %s: %w", dir, err)
	}
	return db, nil
}

// recoverSwap finishes or rolls back a Restore interrupted by a crash.
// A completed restore directory is marked by a file named RESTORED.
func (f *FSM) recoverSwap() error {
	exists := func(p string) bool { _, err := f.fs.Stat(p); return err == nil }
	if exists(f.restoreDir()) {
		if exists(filepath.Join(f.restoreDir(), restoredMarker)) {
			if exists(f.dbDir()) {
				if err := f.fs.RemoveAll(f.oldDir()); err != nil {
					return err
				}
				if err := f.fs.Rename(f.dbDir(), f.oldDir()); err != nil {
					return err
				}
			}
			if err := f.fs.Rename(f.restoreDir(), f.dbDir()); err != nil {
				return err
			}
			if err := syncDir(f.fs, f.cfg.Dir); err != nil {
				return err
			}
		} else if err := f.fs.RemoveAll(f.restoreDir()); err != nil {
			return err
		}
	}
	if exists(f.oldDir()) && exists(f.dbDir()) {
		return f.fs.RemoveAll(f.oldDir())
	}
	return nil
}

const restoredMarker = "RESTORED"

func (f *FSM) loadApplied() error {
	v, c, err := f.db.Get(keyApplied)
	if errors.Is(err, pebble.ErrNotFound) {
		f.setApplied(0, 0)
		return nil
	}
	if err != nil {
		return err
	}
	defer c.Close()
	if len(v) != 16 {
		return fmt.Errorf("%w: applied index of %d bytes", ErrCorruptState, len(v))
	}
	f.setApplied(binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:]))
	return nil
}

func (f *FSM) setApplied(index, term uint64) {
	f.applied.Store(index)
	f.term.Store(term)
	f.waitMu.Lock()
	close(f.waitCh)
	f.waitCh = make(chan struct{})
	f.waitMu.Unlock()
}

// AppliedIndex is the index of the last entry whose effects are in Pebble.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// AppliedTerm is the term of that entry.
func (f *FSM) AppliedTerm() uint64 { return f.term.Load() }

// Notify returns a channel closed the next time the applied index moves.
func (f *FSM) Notify() <-chan struct{} {
	f.waitMu.Lock()
	defer f.waitMu.Unlock()
	return f.waitCh
}

// Err returns the storage failure that stopped the FSM, if any.
func (f *FSM) Err() error {
	if p := f.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// Apply implements raft.FSM for a single entry.
func (f *FSM) Apply(l *raft.Log) interface{} { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch applies committed entries in one Pebble batch together with the
// index of the last one. Entries at or below the persisted applied index
// (re-delivered after a restart) are skipped. Each entry yields a
// *command.Result; configuration entries yield nil.
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	out := make([]interface{}, len(logs))
	if err := f.Err(); err != nil {
		return stopped(err, logs, out)
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	applied := f.applied.Load()
	t := &txn{b: f.db.NewIndexedBatch(), sweep: f.sweep, scratch: f.scratch}
	defer func() {
		if cap(t.scratch) <= 1<<20 {
			f.scratch = t.scratch[:0]
		}
	}()
	defer t.b.Close()
	var last, lastTerm uint64
	for i, l := range logs {
		if l.Index <= applied {
			out[i] = &command.Result{Index: l.Index, Message: "already applied"}
			continue
		}
		last, lastTerm = l.Index, l.Term
		if l.Type != raft.LogCommand {
			continue
		}
		ent := Entry{Index: l.Index, Term: l.Term, Data: l.Data}
		if !l.AppendedAt.IsZero() {
			ent.TimeMs = l.AppendedAt.UnixMilli()
		}
		res, err := f.applier.apply(t, ent)
		if err != nil {
			return f.fail(err, logs, out)
		}
		out[i] = res
	}
	if last == 0 {
		return out
	}
	var ab [16]byte
	binary.BigEndian.PutUint64(ab[:8], last)
	binary.BigEndian.PutUint64(ab[8:], lastTerm)
	if err := t.b.Set(keyApplied, ab[:], nil); err != nil {
		return f.fail(err, logs, out)
	}
	wo := pebble.NoSync
	if f.cfg.SyncApply {
		wo = pebble.Sync
	}
	if err := t.b.Commit(wo); err != nil {
		return f.fail(err, logs, out)
	}
	f.sweep = t.sweep
	f.setApplied(last, lastTerm)
	return out
}

// fail records a storage failure. Nothing of this batch was committed, and
// nothing later will be: a restart re-applies from the persisted index.
func (f *FSM) fail(err error, logs []*raft.Log, out []interface{}) []interface{} {
	f.failed.CompareAndSwap(nil, &err)
	f.log.Error("fsm: storage failure, state machine stopped; restart the node to recover", "err", err)
	return stopped(err, logs, out)
}

// stopped answers entries a stopped state machine cannot apply. They are
// committed (raft hands over only those) and take effect on the other
// replicas, and on this one after a restart: the result says so
// (CodeStopped), never that the command was not applied.
func stopped(err error, logs []*raft.Log, out []interface{}) []interface{} {
	for i, l := range logs {
		out[i] = &command.Result{Index: l.Index, Code: command.CodeStopped,
			Message: "committed, but this node's state machine stopped before applying it (" + err.Error() + "); it takes effect on the other members, and here after a restart"}
	}
	return out
}

// Snapshot implements raft.FSM. It does no I/O: the Checkpointer records
// the index (and whatever it reads from db, quiescent at that index) and
// makes the Pebble checkpoint later, in Persist, while applies continue
// (TakeCheckpoint). So taking a checkpoint pauses the state machine for
// microseconds rather than for Pebble's WAL syncs, MANIFEST lock and file
// copies.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	if err := f.Err(); err != nil {
		return nil, err
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.cfg.Checkpointer.Snapshot(f.db, f.applied.Load(), f.term.Load(), f.takeCheckpoint(f.gen))
}

// Restore implements raft.FSM: it builds the snapshot's DB beside the live
// one, then swaps it in. A crash at any point leaves either the old or the
// new DB, never a mix (recoverSwap finishes the job on open).
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if err := f.fs.RemoveAll(f.restoreDir()); err != nil {
		return err
	}
	restore := f.cfg.Checkpointer.Restore
	// A state machine that never applied anything has nothing to offer.
	if br, ok := f.cfg.Checkpointer.(BaseRestorer); ok && f.applied.Load() > 0 {
		restore = func(r io.Reader, dir string) error { return br.RestoreWithBase(r, dir, f.copyLive) }
	}
	if err := restore(rc, f.restoreDir()); err != nil {
		_ = f.fs.RemoveAll(f.restoreDir())
		return fmt.Errorf("fsm: restore: %w", err)
	}
	if err := writeMarker(f.fs, filepath.Join(f.restoreDir(), restoredMarker)); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.db.Close(); err != nil {
		f.log.Warn("fsm: closing db before restore", "err", err)
	}
	if err := f.recoverSwap(); err != nil {
		return fmt.Errorf("fsm: swap restored db: %w", err)
	}
	if err := f.fs.Remove(filepath.Join(f.dbDir(), restoredMarker)); err != nil {
		return err
	}
	db, err := f.openDB(f.dbDir())
	if err != nil {
		return err
	}
	f.db = db
	f.gen++
	f.sweep = sweepMark{}
	if err := f.fs.RemoveAll(f.oldDir()); err != nil {
		f.log.Warn("fsm: removing old db", "err", err)
	}
	f.failed.Store(nil)
	return f.loadApplied()
}

// copyLive makes a Pebble checkpoint of the live DB at dir. Restore runs
// on the FSM goroutine, so the DB is quiescent; whatever it holds, a delta
// install verifies the rebuilt state against the snapshot's digest.
func (f *FSM) copyLive(dir string) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		return ErrClosed
	}
	return f.db.Checkpoint(dir, pebble.WithFlushedWAL())
}

func writeMarker(fs vfs.FS, path string) error {
	fl, err := fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	if err := fl.Sync(); err != nil {
		_ = fl.Close()
		return err
	}
	if err := fl.Close(); err != nil {
		return err
	}
	return syncDir(fs, filepath.Dir(path))
}

// syncDir makes a directory's entries durable.
func syncDir(fs vfs.FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Close flushes the memtable and closes the database.
//
// The flush is for the next start: checkpoints do not flush (the memtable
// grows to MemTableSize between Pebble's own flushes), so without it a node
// stopped cleanly replays up to a memtable of WAL when it opens again (1.7 s
// for 64 MiB on the bench machine, docs/benchmarks.md "Flush at close"). A
// crash still replays; a failed flush is reported and the close still runs,
// since the WAL holds everything the flush would have written. A state
// machine stopped by a storage failure closes without flushing.
func (f *FSM) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.db == nil {
		return ErrClosed
	}
	var ferr error
	if f.Err() == nil { // after a storage failure, do not ask the disk for more
		if ferr = f.db.Flush(); ferr != nil {
			ferr = fmt.Errorf("fsm: flush at close (the next open replays the WAL instead): %w", ferr)
		}
	}
	err := f.db.Close()
	f.db = nil
	return errors.Join(ferr, err)
}

// DB runs fn with the live database under the read lock (for metrics and
// checkpoint tooling). fn must not keep db.
func (f *FSM) DB(fn func(db *pebble.DB) error) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		return ErrClosed
	}
	return fn(f.db)
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...interface{}) {}
func (quietLogger) Errorf(format string, args ...interface{}) {
	slog.Error(fmt.Sprintf("pebble: "+format, args...))
}
func (quietLogger) Fatalf(format string, args ...interface{}) {
	slog.Error(fmt.Sprintf("pebble: fatal: "+format, args...))
	os.Exit(1)
}
