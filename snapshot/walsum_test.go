package snapshot

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
)

// A linked live WAL grows between checkpoints. prefixSum must return the
// same checksum as reading the prefix whole, and read only what was
// appended since the prefix the store holds on the same inode; when the
// store no longer holds that prefix there, or the prefix asked for is
// shorter, it must read from the start.
func TestPrefixSumResumesOnlyOnTheStoredInode(t *testing.T) {
	f := newWALFixture(t, "000007.log", 7)
	s := f.s
	const step = 100 << 10
	var last File
	for i := 0; i < 4; i++ {
		f.appendBytes(step)
		wantRead := int64(step)
		if i == 0 {
			wantRead = f.size
		}
		file, link := f.checkpoint(f.size, wantRead)
		f.store(file, link)
		last = file
	}
	// A shorter prefix than any cached one: read whole.
	f.checkpoint(step/2, step/2)

	// The store lost the last prefix (collected): the cached state may
	// not be trusted, the next prefix is read whole...
	if err := os.Remove(s.path(last.Checksum)); err != nil {
		t.Fatal(err)
	}
	f.appendBytes(step)
	file, link := f.checkpoint(f.size, f.size)
	f.store(file, link)
	last = file
	// ...and so is one whose stored prefix is a copy on another inode,
	// even with the right content.
	data, err := os.ReadFile(s.path(last.Checksum))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(s.path(last.Checksum)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.path(last.Checksum), data[:last.Size], 0o644); err != nil {
		t.Fatal(err)
	}
	f.appendBytes(step)
	f.checkpoint(f.size, f.size)
}

// Between checkpoints extend carries the newest hash forward through the
// store's link to the WAL: a checkpoint at the extended length reads
// nothing, one that ends before the extension's end (a write the
// extension saw in progress) resumes from the checkpoint before, and once
// the store no longer links the inode nothing is extended.
func TestPrefixSumResumesFromAnExtension(t *testing.T) {
	f := newWALFixture(t, "000009.log", 9)
	s := f.s
	var stored []string
	checkpoint := func(prefix, wantRead int64) File {
		t.Helper()
		file, link := f.checkpoint(prefix, wantRead)
		f.store(file, link)
		stored = append(stored, file.Checksum)
		return file
	}
	const step = 300 << 10
	f.appendBytes(step)
	first := checkpoint(f.size, f.size)

	// Too little new WAL: left to the next round.
	f.appendBytes(walExtendMin - 1)
	if ok, err := s.extend(nil); ok || err != nil {
		t.Fatalf("extend with %d new bytes: %v %v, want nothing done", walExtendMin-1, ok, err)
	}
	f.appendBytes(2 * step)
	if ok, err := s.extend(nil); !ok || err != nil {
		t.Fatalf("extend: %v %v", ok, err)
	}
	extended := f.size
	// At the extended length nothing is left to read.
	checkpoint(extended, 0)
	// A prefix that ends before the extension resumes from the first
	// checkpoint's entry, kept beside the extension.
	checkpoint(extended-100, extended-100-first.Size)

	// Extensions chain: two more rounds, then a checkpoint past them reads
	// only what came after the last.
	f.appendBytes(step)
	if ok, _ := s.extend(nil); !ok {
		t.Fatal("second extend did nothing")
	}
	f.appendBytes(step)
	if ok, _ := s.extend(nil); !ok {
		t.Fatal("third extend did nothing")
	}
	f.appendBytes(1000)
	checkpoint(f.size, 1000)

	// The store no longer links the inode (every checkpoint collected):
	// nothing is extended, and a checkpoint hashes its prefix whole.
	for _, sum := range stored {
		if err := os.Remove(s.path(sum)); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	f.appendBytes(step)
	if ok, err := s.extend(nil); ok || err != nil {
		t.Fatalf("extend without the anchor: %v %v, want nothing done", ok, err)
	}
	f.checkpoint(f.size, f.size)
}

// walFixture is a live WAL in a file store (background extension off:
// the tests count the bytes read).
type walFixture struct {
	t     *testing.T
	root  string
	s     *fileStore
	live  string
	w     *os.File
	rng   *rand.Rand
	size  int64
	links int
}

func newWALFixture(t *testing.T, name string, seed int64) *walFixture {
	t.Helper()
	root := t.TempDir()
	s, err := newFileStore(root)
	if err != nil {
		t.Fatal(err)
	}
	s.extendEvery = 0
	live := filepath.Join(root, name)
	w, err := os.Create(live)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return &walFixture{t: t, root: root, s: s, live: live, w: w, rng: rand.New(rand.NewSource(seed))}
}

func (f *walFixture) appendBytes(n int) {
	f.t.Helper()
	b := make([]byte, n)
	f.rng.Read(b)
	if _, err := f.w.Write(b); err != nil {
		f.t.Fatal(err)
	}
	f.size += int64(n)
}

// checkpoint links the live WAL into a new checkpoint directory and checks
// prefixSum of its first prefix bytes against a whole read and the bytes
// it read; it returns the file and the link's path.
func (f *walFixture) checkpoint(prefix, wantRead int64) (File, string) {
	t := f.t
	t.Helper()
	f.links++
	dir := filepath.Join(f.root, fmt.Sprintf("ck%d", f.links))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, filepath.Base(f.live))
	if err := os.Link(f.live, link); err != nil {
		t.Fatal(err)
	}
	sum, n, read, err := f.s.prefixSum(link, prefix)
	if err != nil {
		t.Fatal(err)
	}
	want, wn, err := hashPrefix(f.live, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if sum != want || n != wn || n != prefix {
		t.Fatalf("checkpoint %d: prefixSum = %s, %d; a whole read gives %s, %d (want %d bytes)", f.links, sum, n, want, wn, prefix)
	}
	if read != wantRead {
		t.Fatalf("checkpoint %d: read %d bytes, want %d", f.links, read, wantRead)
	}
	return File{Name: filepath.Base(f.live), Size: n, Checksum: sum}, link
}

// store adds a checkpoint's file to the store, as Persist does.
func (f *walFixture) store(file File, link string) {
	f.t.Helper()
	if _, err := f.s.add(link, file); err != nil {
		f.t.Fatal(err)
	}
}
