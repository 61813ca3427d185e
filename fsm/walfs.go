package fsm

import (
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
type walFS struct {
	vfs.FS
	mu  sync.Mutex
	dir string                   // the open DB's directory: only its WALs are tracked
	wal map[string]*atomic.Int64 // path -> bytes written so far
}

func newWALFS(fs vfs.FS) *walFS { return &walFS{FS: fs, wal: map[string]*atomic.Int64{}} }

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
	return filepath.Dir(name) == fs.dir
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
	f, err := fs.FS.Create(name, c)
	if err != nil || !fs.isWAL(name) {
		return f, err
	}
	return fs.track(name, f), nil
}

func (fs *walFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	if err != nil {
		return f, err
	}
	fs.untrack(oldname)
	if !fs.isWAL(newname) {
		return f, nil
	}
	return fs.track(newname, f), nil
}

func (fs *walFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.Open(name, opts...)
	if err != nil || !fs.isWAL(name) {
		return f, err
	}
	fs.mu.Lock()
	n := fs.wal[name]
	fs.mu.Unlock()
	if n == nil {
		return f, nil
	}
	return &walReader{File: f, n: n}, nil
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
// read happens.
type walReader struct {
	vfs.File
	n   *atomic.Int64
	off int64
}

func (r *walReader) Read(p []byte) (int, error) {
	limit := r.n.Load()
	if r.off >= limit {
		return 0, io.EOF
	}
	if int64(len(p)) > limit-r.off {
		p = p[:limit-r.off]
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
