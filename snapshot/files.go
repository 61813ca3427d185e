package snapshot

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cairn-db/cairn/internal/fsutil"
)

// fileStore is the content-addressed part of the store: files/<checksum>
// holds complete, verified content; files/<checksum>.partial a download in
// progress whose length is its resume offset. Nothing else is in files/.
//
// A stored file may be longer than its content: a checkpoint's WAL is a
// hard link to the live WAL (fsm.TakeCheckpoint), which keeps growing
// until Pebble moves to a new one. The content of files/<checksum> is
// therefore its first File.Size bytes, and every reader stops there.
type fileStore struct {
	dir        string // <root>/files
	quarantine string // <root>/quarantine
	trash      string // <root>/trash: collected files waiting to be unlinked

	mu    sync.Mutex
	cache map[fileKey]string // identity -> checksum of immutable files

	walSums     walSums       // how far linked live WALs were hashed (walsum.go)
	extendEvery time.Duration // walSums' background extension; 0 off (tests that count reads)
}

// fileKey identifies file content without reading it. The content store
// keeps a hard link to every cached inode, so an inode cannot be reused by
// another file while its entry matters.
type fileKey struct {
	dev, ino    uint64
	size, mtime int64
}

const partialSuffix = ".partial"

func newFileStore(root string) (*fileStore, error) {
	s := &fileStore{dir: filepath.Join(root, "files"), quarantine: filepath.Join(root, "quarantine"),
		trash: filepath.Join(root, "trash"), cache: map[fileKey]string{}, extendEvery: walExtendEvery}
	for _, d := range []string{s.dir, s.quarantine, s.trash} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	return s, s.seed()
}

// seed fills the checksum cache from the store itself: a file linked in
// from a live Pebble directory shares its inode with the live SST, so the
// next checkpoint finds the SST's checksum by identity without reading it.
func (s *fileStore) seed() error {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !validChecksum(e.Name()) {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		if k, ok := identity(fi); ok {
			s.cache[k] = e.Name()
		}
	}
	return nil
}

func (s *fileStore) path(sum string) string        { return filepath.Join(s.dir, sum) }
func (s *fileStore) partialPath(sum string) string { return filepath.Join(s.dir, sum+partialSuffix) }

// stat reports whether the complete content f is held: at least f.Size
// bytes (see fileStore).
func (s *fileStore) stat(f File) (present bool, sizeMismatch bool, err error) {
	fi, err := os.Stat(s.path(f.Checksum))
	if errors.Is(err, fs.ErrNotExist) {
		return false, false, nil
	}
	if err != nil {
		return false, false, err
	}
	return fi.Size() >= f.Size, fi.Size() < f.Size, nil
}

// checksum returns the checksum of an immutable file, from the cache when
// its identity is known; hashed reports whether it was read.
func (s *fileStore) checksum(path string, immutableFile bool) (sum string, size int64, hashed bool, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", 0, false, err
	}
	key, ok := identity(fi)
	if ok && immutableFile {
		s.mu.Lock()
		sum, hit := s.cache[key]
		s.mu.Unlock()
		if hit {
			return sum, fi.Size(), false, nil
		}
	}
	sum, n, err := hashFile(path)
	if err != nil {
		return "", 0, true, err
	}
	if n != fi.Size() {
		return "", 0, true, fmt.Errorf("snapshot: %s changed size while hashing", path)
	}
	if ok && immutableFile {
		s.remember(key, sum)
	}
	return sum, n, true, nil
}

// storedAs returns the entry of the table at src when files/ holds that
// very inode (a link an earlier add made from the same live table): its
// content is in the store without a look at its bytes. A checksum known
// by identity alone is not enough — the prehasher caches the sums of
// live tables the store does not hold yet.
func (s *fileStore) storedAs(src string) (File, bool) {
	fi, err := os.Stat(src)
	if err != nil {
		return File{}, false
	}
	key, ok := identity(fi)
	if !ok {
		return File{}, false
	}
	s.mu.Lock()
	sum, hit := s.cache[key]
	s.mu.Unlock()
	if !hit {
		return File{}, false
	}
	held, err := os.Lstat(s.path(sum))
	if err != nil || !os.SameFile(fi, held) {
		return File{}, false
	}
	return File{Name: filepath.Base(src), Size: fi.Size(), Checksum: sum}, true
}

func (s *fileStore) remember(k fileKey, sum string) {
	s.mu.Lock()
	s.cache[k] = sum
	s.mu.Unlock()
}

func (s *fileStore) forget(sum string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.cache {
		if v == sum {
			delete(s.cache, k)
		}
	}
}

// add puts the content at src (whose checksum is f.Checksum) into the
// store: a hard link when possible, so the bytes are shared with src. It
// reports whether the content was new to the store. The caller syncs the
// directory (once for many adds).
func (s *fileStore) add(src string, f File) (bool, error) {
	dst := s.path(f.Checksum)
	if _, err := os.Lstat(dst); err == nil {
		return false, nil
	}
	err := os.Link(src, dst)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		// Another filesystem, or no hard links: copy through a temporary
		// name so that files/<checksum> is complete whenever it exists.
		if err := copyFileAtomic(src, dst); err != nil {
			return false, err
		}
	}
	if fi, err := os.Stat(dst); err == nil {
		if k, ok := identity(fi); ok {
			s.remember(k, f.Checksum)
		}
	}
	return true, nil
}

// discard moves files/<sum> to trash/, where emptyTrash unlinks it later:
// a rename only touches metadata, while the unlink of a file's last link
// frees its blocks (with ext4's discard option, a synchronous TRIM), which
// took up to a second for a few hundred MB inside a create. Once renamed
// the content is no longer in the store: a later add links a new copy.
// It returns the size of what it moved (0 if nothing was there).
func (s *fileStore) discard(sum string) (int64, error) {
	var size int64
	if fi, err := os.Lstat(s.path(sum)); err == nil {
		size = fi.Size()
	}
	err := os.Rename(s.path(sum), filepath.Join(s.trash, fmt.Sprintf("%s.%d", sum, time.Now().UnixNano())))
	if errors.Is(err, fs.ErrNotExist) {
		size, err = 0, nil
	}
	if err != nil {
		return 0, err
	}
	s.forget(sum)
	return size, nil
}

// emptyTrash unlinks what trash/ holds and reports how many it removed.
func (s *fileStore) emptyTrash() (int, error) {
	ents, err := os.ReadDir(s.trash)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		if err := os.Remove(filepath.Join(s.trash, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return n, err
		}
		n++
	}
	return n, nil
}

// trashHolds reports whether trash/ holds anything.
func (s *fileStore) trashHolds() bool {
	ents, err := os.ReadDir(s.trash)
	return err == nil && len(ents) > 0
}

// moveAside moves a corrupt file (complete or partial) to quarantine/ and
// returns its new path.
func (s *fileStore) moveAside(path, sum string) (string, error) {
	base := filepath.Base(path)
	dst := filepath.Join(s.quarantine, fmt.Sprintf("%s.%d", base, time.Now().UnixNano()))
	if err := os.Rename(path, dst); err != nil {
		return "", err
	}
	s.forget(sum)
	if err := syncDir(s.dir); err != nil {
		return dst, err
	}
	return dst, syncDir(s.quarantine)
}

// names lists what files/ holds by checksum, complete files and partial
// ones, without a stat of each (retention needs only the names; a create
// runs it every time). Interrupted copies (.tmp) are removed.
func (s *fileStore) names() (complete, partial []string, err error) {
	f, err := os.Open(s.dir)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	all, err := f.Readdirnames(-1)
	if err != nil {
		return nil, nil, err
	}
	for _, name := range all {
		switch {
		case validChecksum(name):
			complete = append(complete, name)
		case strings.HasSuffix(name, partialSuffix) && validChecksum(strings.TrimSuffix(name, partialSuffix)):
			partial = append(partial, strings.TrimSuffix(name, partialSuffix))
		case strings.HasSuffix(name, ".tmp"):
			_ = os.Remove(filepath.Join(s.dir, name)) // an interrupted copy
		}
	}
	return complete, partial, nil
}

// QuarantinedFile is a file moved aside because its content did not match
// its checksum.
type QuarantinedFile struct {
	Name  string // under <dir>/quarantine
	Size  int64
	Moved time.Time
}

func (s *fileStore) quarantined() ([]QuarantinedFile, error) {
	ents, err := os.ReadDir(s.quarantine)
	if err != nil {
		return nil, err
	}
	out := make([]QuarantinedFile, 0, len(ents))
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			continue
		}
		out = append(out, QuarantinedFile{Name: e.Name(), Size: fi.Size(), Moved: fi.ModTime()})
	}
	return out, nil
}

// linkOrCopy hard-links src to dst, copying when linking is impossible.
func linkOrCopy(src, dst string) error {
	err := os.Link(src, dst)
	if err == nil {
		return nil
	}
	if errors.Is(err, fs.ErrExist) {
		return err
	}
	var le *os.LinkError
	if errors.As(err, &le) && !errors.Is(le.Err, syscall.EXDEV) && !errors.Is(le.Err, syscall.EPERM) &&
		!errors.Is(le.Err, syscall.EMLINK) && !errors.Is(le.Err, syscall.ENOTSUP) {
		return err
	}
	return copyFile(src, dst)
}

// copyFile copies src to a new file dst and syncs it.
func copyFile(src, dst string) error { return copyPrefix(src, dst, -1) }

// copyPrefix copies the first size bytes of src (all of it if size < 0)
// to a new file dst and syncs it.
func copyPrefix(src, dst string, size int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	var r io.Reader = in
	if size >= 0 {
		r = io.LimitReader(in, size)
	}
	n, err := io.CopyBuffer(out, r, make([]byte, 256<<10))
	if err == nil && size >= 0 && n != size {
		err = fmt.Errorf("snapshot: %s holds %d bytes, %d expected", src, n, size)
	}
	if err != nil {
		_ = out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}

func copyFileAtomic(src, dst string) error {
	tmp := dst + ".tmp"
	_ = os.Remove(tmp)
	if err := copyFile(src, tmp); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, dst)
}

// syncDir makes a directory's entries durable.
var syncDir = fsutil.SyncDir

// writeFileSync writes a small file durably (file and directory synced).
func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}
