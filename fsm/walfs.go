package fsm

import (
	"errors"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// walFS is the filesystem the live Pebble DB runs on. It tracks, for each
// WAL file written by this process, how far it has been written, and a
// reader opened on such a file sees only that much.
//
// Why: Pebble recycles WAL files. A recycled file keeps the stale bytes of
// the log it used to hold beyond what the new log has written, and
// Pebble's checkpoint copies WAL files to their end — with 64 MiB
// memtables, up to 64 MiB of garbage written (and fsynced) inside every
// checkpoint, then cut off again by snapshot's trimWAL. Through walFS the
// copy stops where the live log does. Replay after a restart does not go
// through these limits: a file is tracked only from its creation (or reuse)
// by the DB currently open (reset runs before every open, since a Restore
// swaps in a directory whose WAL names the old DB may have used).
//
// While a checkpoint is taken into a directory armed with linkInto, the
// "copy" of a tracked WAL is a hard link to it instead: Pebble's copy
// stream is counted, not written, and the checkpoint holds the first that
// many bytes of a file the live DB keeps appending to (see
// TakeCheckpoint). No WAL bytes are written inside a checkpoint. For the
// linked prefix to stay what it was, WAL files are never recycled:
// ReuseForWrite creates a new file (Pebble's contract for it allows this).
//
// Pebble's copy opens the live WAL, then creates the copy: once the copy
// turned out to be a link, the reader it opened just before only counts
// (walReader.countOnly): the copy stream's bytes are discarded by the
// link, so reading them — up to a memtable's worth, inside the create
// call — would be wasted.
type walFS struct {
	vfs.FS
	mu      sync.Mutex
	dir     string                   // the open DB's directory: only its WALs are tracked
	wal     map[string]*atomic.Int64 // path -> bytes written so far
	linkTo  string                   // a checkpoint directory whose WAL copies are links
	reuse   func(src string) bool    // tables not linked into linkTo (see Link)
	prefix  map[string]*atomic.Int64 // linked WAL in linkTo -> bytes captured (readers stop there)
	copying map[string]*walReader    // live WAL -> its reader last opened while armed
}

func newWALFS(fs vfs.FS) *walFS {
	return &walFS{FS: fs, wal: map[string]*atomic.Int64{}, prefix: map[string]*atomic.Int64{},
		copying: map[string]*walReader{}}
}

// linkInto arms dir: WALs that Pebble's checkpoint copies into it become
// links (see walFS), and tables for which reuse (if not nil) returns true
// are not linked at all (see Link). It returns the disarm function, which
// reports the names of the linked WALs.
func (fs *walFS) linkInto(dir string, reuse func(src string) bool) (done func() (linked map[string]bool)) {
	dir = filepath.Clean(dir)
	fs.mu.Lock()
	fs.linkTo, fs.reuse = dir, reuse
	fs.mu.Unlock()
	return func() map[string]bool {
		fs.mu.Lock()
		defer fs.mu.Unlock()
		if fs.linkTo == dir {
			fs.linkTo, fs.reuse = "", nil
			clear(fs.copying)
		}
		linked := map[string]bool{}
		for p := range fs.prefix {
			if filepath.Dir(p) == dir {
				linked[filepath.Base(p)] = true
				delete(fs.prefix, p)
			}
		}
		return linked
	}
}

// endReuse stops leaving tables out of the armed directory (Link links
// again); the rest of the arming stays until done.
func (fs *walFS) endReuse() {
	fs.mu.Lock()
	fs.reuse = nil
	fs.mu.Unlock()
}

// reset forgets every tracked file; called before a DB is opened in dir.
// From then on only WALs in dir are tracked: the WAL copies a checkpoint
// writes through fs elsewhere are not (nothing would ever untrack them).
func (fs *walFS) reset(dir string) {
	fs.mu.Lock()
	fs.dir = filepath.Clean(dir)
	fs.wal = map[string]*atomic.Int64{}
	fs.mu.Unlock()
}

func (fs *walFS) isWAL(name string) bool {
	if !strings.HasSuffix(name, ".log") {
		return false
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return filepath.Dir(name) == fs.dir || fs.prefix[name] != nil
}

func (fs *walFS) track(name string, f vfs.File) vfs.File {
	n := new(atomic.Int64)
	fs.mu.Lock()
	fs.wal[name] = n
	fs.mu.Unlock()
	return &walWriter{File: f, n: n}
}

func (fs *walFS) untrack(name string) {
	fs.mu.Lock()
	delete(fs.wal, name)
	fs.mu.Unlock()
}

func (fs *walFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	if f, ok, err := fs.createLink(name); ok {
		return f, err
	}
	f, err := fs.FS.Create(name, c)
	if err == nil && fs.scratchSync(name, false) {
		return noSync{f}, nil
	}
	if err != nil || !fs.isWAL(name) {
		return f, err
	}
	return fs.track(name, f), nil
}

// createLink makes name, a WAL copy in the armed checkpoint directory, a
// hard link to the tracked live WAL of the same name (ok false: copy as
// usual). The returned file counts what is "written" to it.
func (fs *walFS) createLink(name string) (vfs.File, bool, error) {
	if !strings.HasSuffix(name, ".log") {
		return nil, false, nil
	}
	fs.mu.Lock()
	src := filepath.Join(fs.dir, filepath.Base(name))
	armed := fs.linkTo != "" && filepath.Dir(name) == fs.linkTo && fs.wal[src] != nil
	fs.mu.Unlock()
	if !armed {
		return nil, false, nil
	}
	if err := fs.FS.Link(src, name); err != nil {
		return nil, true, err
	}
	f, err := fs.FS.Open(name)
	if err != nil {
		return nil, true, err
	}
	n := new(atomic.Int64)
	fs.mu.Lock()
	fs.prefix[name] = n
	// The copy's source, opened just before: what it reads would only be
	// counted by the link, so it need not read at all.
	if r := fs.copying[src]; r != nil {
		r.countOnly.Store(true)
		delete(fs.copying, src)
	}
	fs.mu.Unlock()
	return &linkedWAL{File: f, n: n}, true, nil
}

// Link leaves out of the armed checkpoint directory each table whose
// content the Checkpointer already holds (reuse(oldname) true): Pebble
// links every table of the current version into a checkpoint, and nearly
// all of them are unchanged since the previous one, already in the
// Checkpointer's store as a link to the same inode. Linking them into the
// scratch directory, only to unlink them again after Persist, was about
// 2 ms of a node's CPU per create at 1 GiB (docs/benchmarks-checkpoints.md,
// session 13). Pebble neither reads nor stats what it linked; the
// Checkpointer lists the reused tables itself (TakeCheckpoint).
func (fs *walFS) Link(oldname, newname string) error {
	fs.mu.Lock()
	reuse := fs.reuse
	armed := reuse != nil && fs.linkTo != "" && filepath.Dir(filepath.Clean(newname)) == fs.linkTo
	fs.mu.Unlock()
	if armed && strings.HasSuffix(newname, ".sst") && reuse(oldname) {
		return nil
	}
	return fs.FS.Link(oldname, newname)
}

// ReuseForWrite never reuses: a linked checkpoint WAL must not be
// overwritten by a later log. The old file is removed and a new one
// created (syncs of a new file also write its metadata: these are not
// the raft log's syncs, and the FSM's writes do not wait for them).
func (fs *walFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	if err := fs.Remove(oldname); err != nil {
		return nil, err
	}
	return fs.Create(newname, c)
}

func (fs *walFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.Open(name, opts...)
	if err != nil || !fs.isWAL(name) {
		return f, err
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	live := fs.wal[name]
	n := live
	if n == nil {
		n = fs.prefix[name]
	}
	if n == nil {
		return f, nil
	}
	r := &walReader{File: f, n: n}
	if live != nil && fs.linkTo != "" {
		fs.copying[name] = r // perhaps the source of a copy about to be linked
	}
	return r, nil
}

func (fs *walFS) Remove(name string) error {
	fs.untrack(name)
	return fs.FS.Remove(name)
}

func (fs *walFS) RemoveAll(name string) error {
	fs.mu.Lock()
	for p := range fs.wal {
		if p == name || strings.HasPrefix(p, strings.TrimSuffix(name, "/")+"/") {
			delete(fs.wal, p)
		}
	}
	fs.mu.Unlock()
	return fs.FS.RemoveAll(name)
}

func (fs *walFS) Rename(oldname, newname string) error {
	if err := fs.FS.Rename(oldname, newname); err != nil {
		return err
	}
	fs.untrack(oldname)
	fs.untrack(newname)
	return nil
}

func (fs *walFS) Unwrap() vfs.FS { return fs.FS }

// walWriter records the extent of what was written.
type walWriter struct {
	vfs.File
	n   *atomic.Int64
	off int64 // sequential write position (Write)
}

func (w *walWriter) grow(end int64) {
	for {
		cur := w.n.Load()
		if end <= cur || w.n.CompareAndSwap(cur, end) {
			return
		}
	}
}

func (w *walWriter) Write(p []byte) (int, error) {
	n, err := w.File.Write(p)
	w.off += int64(n)
	w.grow(w.off)
	return n, err
}

func (w *walWriter) WriteAt(p []byte, off int64) (int, error) {
	n, err := w.File.WriteAt(p, off)
	w.grow(off + int64(n))
	return n, err
}

// walReader reads a tracked WAL up to what has been written when each
// read happens. A countOnly reader is the source of a checkpoint's WAL
// copy whose destination is a link (walFS.createLink): Read reports the
// bytes it would have read, leaving p as it is, since the link discards
// them.
type walReader struct {
	vfs.File
	n         *atomic.Int64
	off       int64
	countOnly atomic.Bool
}

func (r *walReader) Read(p []byte) (int, error) {
	limit := r.n.Load()
	if r.off >= limit {
		return 0, io.EOF
	}
	if int64(len(p)) > limit-r.off {
		p = p[:limit-r.off]
	}
	if r.countOnly.Load() {
		r.off += int64(len(p))
		return len(p), nil
	}
	n, err := r.File.ReadAt(p, r.off)
	r.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (r *walReader) ReadAt(p []byte, off int64) (int, error) {
	limit := r.n.Load()
	if off >= limit {
		return 0, io.EOF
	}
	short := false
	if int64(len(p)) > limit-off {
		p, short = p[:limit-off], true
	}
	n, err := r.File.ReadAt(p, off)
	if err == nil && short {
		err = io.EOF
	}
	return n, err
}

// scratchSync reports whether a sync of name, in or beside the armed
// checkpoint directory, can be skipped: the directory entries of the
// checkpoint and Pebble's marker files (empty; their name is their
// content). A checkpoint directory is scratch: what must be durable is
// what the Checkpointer keeps of it — the copied MANIFEST and OPTIONS,
// whose data Pebble still syncs, and the links to them, which the
// Checkpointer syncs where it keeps them. Each directory sync is a
// filesystem journal commit, which the raft log's syncs wait behind.
func (fs *walFS) scratchSync(name string, dir bool) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.linkTo == "" {
		return false
	}
	name = filepath.Clean(name)
	if dir {
		return name == fs.linkTo || name == filepath.Dir(fs.linkTo)
	}
	return filepath.Dir(name) == fs.linkTo && strings.HasPrefix(filepath.Base(name), "marker.")
}

func (fs *walFS) OpenDir(name string) (vfs.File, error) {
	d, err := fs.FS.OpenDir(name)
	if err != nil || !fs.scratchSync(name, true) {
		return d, err
	}
	return noSync{d}, nil
}

// noSync is a file whose syncs do nothing (see scratchSync).
type noSync struct{ vfs.File }

func (noSync) Sync() error                { return nil }
func (noSync) SyncData() error            { return nil }
func (noSync) SyncTo(int64) (bool, error) { return true, nil }

// linkedWAL is a checkpoint's WAL "copy" that is a hard link to the live
// WAL: what Pebble copies into it is counted, not written, and Sync syncs
// the shared inode, so the linked prefix is durable (Pebble's WAL sync
// just before covers nearly all of it).
type linkedWAL struct {
	vfs.File // the link, opened read-only
	n        *atomic.Int64
}

func (w *linkedWAL) Write(p []byte) (int, error) {
	w.n.Add(int64(len(p)))
	return len(p), nil
}

func (w *linkedWAL) WriteAt(p []byte, off int64) (int, error) {
	return 0, errors.New("fsm: linked checkpoint WAL is append-only")
}
