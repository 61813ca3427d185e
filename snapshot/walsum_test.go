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
	root := t.TempDir()
	s, err := newFileStore(root)
	if err != nil {
		t.Fatal(err)
	}
	s.extendEvery = 0 // this test counts the bytes read
	live := filepath.Join(root, "000007.log")
	w, err := os.Create(live)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	rng := rand.New(rand.NewSource(7))
	const step = 100 << 10
	size := int64(0)
	// checkpoint links the live WAL into a new checkpoint directory and
	// checks prefixSum of its first size bytes against a whole read.
	checkpoint := func(i int, size int64, wantRead int64) File {
		t.Helper()
		dir := filepath.Join(root, fmt.Sprintf("ck%d", i))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(dir, "000007.log")
		if err := os.Link(live, link); err != nil {
			t.Fatal(err)
		}
		sum, n, read, err := s.prefixSum(link, size)
		if err != nil {
			t.Fatal(err)
		}
		want, wn, err := hashPrefix(live, size)
		if err != nil {
			t.Fatal(err)
		}
		if sum != want || n != wn || n != size {
			t.Fatalf("checkpoint %d: prefixSum = %s, %d; a whole read gives %s, %d (want %d bytes)", i, sum, n, want, wn, size)
		}
		if read != wantRead {
			t.Fatalf("checkpoint %d: read %d bytes, want %d", i, read, wantRead)
		}
		return File{Name: "000007.log", Size: n, Checksum: sum}
	}
	appendBytes := func(n int) {
		t.Helper()
		b := make([]byte, n)
		rng.Read(b)
		if _, err := w.Write(b); err != nil {
			t.Fatal(err)
		}
		size += int64(n)
	}
	var last File
	for i := 0; i < 4; i++ {
		appendBytes(step)
		wantRead := int64(step)
		if i == 0 {
			wantRead = size
		}
		last = checkpoint(i, size, wantRead)
		if _, err := s.add(filepath.Join(root, fmt.Sprintf("ck%d", i), "000007.log"), last); err != nil {
			t.Fatal(err)
		}
	}
	// A shorter prefix than any cached one: read whole.
	checkpoint(10, step/2, step/2)

	// The store lost the last prefix (collected): the cached state may
	// not be trusted, the next prefix is read whole...
	if err := os.Remove(s.path(last.Checksum)); err != nil {
		t.Fatal(err)
	}
	appendBytes(step)
	last = checkpoint(11, size, size)
	if _, err := s.add(filepath.Join(root, "ck11", "000007.log"), last); err != nil {
		t.Fatal(err)
	}
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
	appendBytes(step)
	checkpoint(12, size, size)
}

// Between checkpoints extend carries the newest hash forward through the
// store's link to the WAL: a checkpoint at the extended length reads
// nothing, one that ends before the extension's end (a write the
// extension saw in progress) resumes from the checkpoint before, and once
// the store no longer links the inode nothing is extended.
func TestPrefixSumResumesFromAnExtension(t *testing.T) {
	root := t.TempDir()
	s, err := newFileStore(root)
	if err != nil {
		t.Fatal(err)
	}
	s.extendEvery = 0 // extend is called by the test
	live := filepath.Join(root, "000009.log")
	w, err := os.Create(live)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	rng := rand.New(rand.NewSource(9))
	size := int64(0)
	appendBytes := func(n int) {
		t.Helper()
		b := make([]byte, n)
		rng.Read(b)
		if _, err := w.Write(b); err != nil {
			t.Fatal(err)
		}
		size += int64(n)
	}
	ck := 0
	var stored []string
	checkpoint := func(prefix, wantRead int64) File {
		t.Helper()
		ck++
		dir := filepath.Join(root, fmt.Sprintf("ck%d", ck))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(dir, "000009.log")
		if err := os.Link(live, link); err != nil {
			t.Fatal(err)
		}
		sum, n, read, err := s.prefixSum(link, prefix)
		if err != nil {
			t.Fatal(err)
		}
		want, wn, err := hashPrefix(live, prefix)
		if err != nil {
			t.Fatal(err)
		}
		if sum != want || n != wn || n != prefix {
			t.Fatalf("checkpoint %d: prefixSum = %s, %d; a whole read gives %s, %d", ck, sum, n, want, wn)
		}
		if read != wantRead {
			t.Fatalf("checkpoint %d: read %d bytes, want %d", ck, read, wantRead)
		}
		f := File{Name: "000009.log", Size: n, Checksum: sum}
		if _, err := s.add(link, f); err != nil {
			t.Fatal(err)
		}
		stored = append(stored, sum)
		return f
	}
	const step = 300 << 10
	appendBytes(step)
	first := checkpoint(size, size)

	// Too little new WAL: left to the next round.
	appendBytes(walExtendMin - 1)
	if ok, err := s.extend(); ok || err != nil {
		t.Fatalf("extend with %d new bytes: %v %v, want nothing done", walExtendMin-1, ok, err)
	}
	appendBytes(2 * step)
	if ok, err := s.extend(); !ok || err != nil {
		t.Fatalf("extend: %v %v", ok, err)
	}
	extended := size
	// At the extended length nothing is left to read.
	checkpoint(extended, 0)
	// A prefix that ends before the extension resumes from the first
	// checkpoint's entry, kept beside the extension.
	checkpoint(extended-100, extended-100-first.Size)

	// Extensions chain: two more rounds, then a checkpoint past them reads
	// only what came after the last.
	appendBytes(step)
	if ok, _ := s.extend(); !ok {
		t.Fatal("second extend did nothing")
	}
	appendBytes(step)
	if ok, _ := s.extend(); !ok {
		t.Fatal("third extend did nothing")
	}
	appendBytes(1000)
	checkpoint(size, 1000)

	// The store no longer links the inode (every checkpoint collected):
	// nothing is extended, and a checkpoint hashes its prefix whole.
	for _, sum := range stored {
		if err := os.Remove(s.path(sum)); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	appendBytes(step)
	if ok, err := s.extend(); ok || err != nil {
		t.Fatalf("extend without the anchor: %v %v, want nothing done", ok, err)
	}
	checkpoint(size, size)
}
