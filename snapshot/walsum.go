package snapshot

import (
	"io"
	"os"
	"sync"
	"time"

	"github.com/zeebo/xxh3"
)

// walSums remembers how far each linked live WAL has been hashed. A
// checkpoint's WAL is a hard link to the WAL the live DB keeps appending
// to (fsm.TakeCheckpoint), and each checkpoint holds a longer prefix of
// the same file until Pebble moves to a new one — up to a memtable's worth
// (64 MiB). Resuming from the previous prefix's hash state makes the
// checksum's cost inside `checkpoint create` what was written since the
// last checkpoint, not the WAL's length.
//
// An entry is used only while the content store holds a prefix of the
// same inode as a hard link (files/<anchor>, linked by the checkpoint that
// hashed it): the inode cannot have been reused, and its first n bytes are
// what was hashed, since a WAL is only appended to (Pebble writes it
// sequentially, preallocates without changing its size, and fsm's walFS
// never recycles one). Otherwise the prefix is hashed from the start.
//
// Between checkpoints a goroutine carries the newest entry forward every
// walExtendEvery to what the WAL holds by then (extend), so that a
// checkpoint hashes only the last fraction of a second of WAL inside
// `checkpoint create` instead of everything written since the previous
// one. It stops after walExtendIdle rounds without new WAL bytes; the next
// checkpoint starts it again.
type walSums struct {
	mu        sync.Mutex
	entries   []walSum // most recent first, at most maxWALSums, at most two per inode
	extending bool     // the goroutine runs
}

// How the newest linked WAL's hash is carried forward between checkpoints.
const (
	walExtendEvery = 200 * time.Millisecond
	walExtendIdle  = 10       // rounds without walExtendMin new bytes before the goroutine stops
	walExtendMin   = 64 << 10 // fewer new bytes are left to the next round
)

// maxWALSums bounds the cache. A checkpoint holds every WAL whose
// memtable is not flushed yet: Pebble's first memtables are small (they
// double up to MemTableSize) and it flushes once the queued ones add up to
// MemTableSize, so a young DB's checkpoint can link eight or more.
const maxWALSums = 16

type walSum struct {
	dev, ino uint64
	n        int64       // bytes hashed
	anchor   string      // files/<anchor> is a link to this inode (see walSums)
	h        xxh3.Hasher // the hash state after the first n bytes
}

// on reports whether fi is this entry's inode.
func (e walSum) on(fi os.FileInfo) bool {
	k, ok := identity(fi)
	return ok && k.dev == e.dev && k.ino == e.ino
}

// hashRange adds bytes [from, to) of f to h, reading through buf (nil: a
// new one), and returns how many it read.
func hashRange(h *xxh3.Hasher, f *os.File, from, to int64, buf []byte) (int64, error) {
	if buf == nil {
		buf = make([]byte, 256<<10)
	}
	return io.CopyBuffer(h, io.NewSectionReader(f, from, to-from), buf)
}

// prefixSum returns the checksum and length of the first size bytes of the
// linked WAL at path (fewer if it is shorter), and how many bytes it read.
func (s *fileStore) prefixSum(path string, size int64) (sum string, n, read int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", 0, 0, err
	}
	key, ok := identity(fi)
	var h xxh3.Hasher
	h.Reset()
	from := int64(0)
	if ok {
		if prev, hit := s.walSums.resume(s, key, size); hit {
			h, from = prev.h, prev.n
		}
	}
	read, err = hashRange(&h, f, from, size, nil)
	if err != nil {
		return "", 0, 0, err
	}
	n = from + read
	sum = checksumHex(h.Sum128())
	if ok && n == size {
		// The checkpoint being persisted links files/<sum> to this inode.
		s.walSums.put(walSum{dev: key.dev, ino: key.ino, n: n, anchor: sum, h: h})
		s.startExtending()
	}
	return sum, n, read, nil
}

// resume returns the newest entry for the inode of key that covers at
// most size bytes and whose prefix the store still holds on that inode.
func (w *walSums) resume(s *fileStore, key fileKey, size int64) (walSum, bool) {
	w.mu.Lock()
	var cand walSum
	found := false
	for _, e := range w.entries {
		if e.dev == key.dev && e.ino == key.ino && e.n <= size {
			cand, found = e, true
			break
		}
	}
	w.mu.Unlock()
	if !found {
		return walSum{}, false
	}
	fi, err := os.Stat(s.path(cand.anchor))
	if err != nil || fi.Size() < cand.n || !cand.on(fi) {
		return walSum{}, false
	}
	return cand, true
}

// put adds e as the most recent entry. Of the entries for its inode the
// previous one is kept too: a checkpoint whose prefix ends before an
// extension's end (a write in progress when the extension read the size)
// resumes from the one before.
func (w *walSums) put(e walSum) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := []walSum{e}
	same := 1
	for _, o := range w.entries {
		if len(out) == maxWALSums {
			break
		}
		if o.dev == e.dev && o.ino == e.ino {
			if same == 2 || o.n == e.n {
				continue
			}
			same++
		}
		out = append(out, o)
	}
	w.entries = out
}

// extend carries the most recent entry forward to the current length of
// its WAL, read through the store's link to the same inode and buf; it
// reports whether it did (false: nothing to extend, fewer than
// walExtendMin new bytes, or the store no longer links the inode).
func (s *fileStore) extend(buf []byte) (bool, error) {
	w := &s.walSums
	w.mu.Lock()
	if len(w.entries) == 0 {
		w.mu.Unlock()
		return false, nil
	}
	e := w.entries[0]
	w.mu.Unlock()
	f, err := os.Open(s.path(e.anchor))
	if err != nil {
		return false, nil // collected since
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false, err
	}
	if !e.on(fi) || fi.Size()-e.n < walExtendMin {
		return false, nil
	}
	h := e.h
	read, err := hashRange(&h, f, e.n, fi.Size(), buf)
	if err != nil {
		return false, err
	}
	w.put(walSum{dev: e.dev, ino: e.ino, n: e.n + read, anchor: e.anchor, h: h})
	return true, nil
}

// startExtending runs extend every walExtendEvery until walExtendIdle
// rounds in a row found nothing to do. Errors only leave the work to the
// next checkpoint, which hashes what is left itself.
func (s *fileStore) startExtending() {
	w := &s.walSums
	w.mu.Lock()
	if w.extending || s.extendEvery <= 0 {
		w.mu.Unlock()
		return
	}
	w.extending = true
	w.mu.Unlock()
	go func() {
		buf := make([]byte, 256<<10) // one read buffer for every round
		for idle := 0; idle < walExtendIdle; {
			time.Sleep(s.extendEvery)
			if ok, err := s.extend(buf); ok && err == nil {
				idle = 0
			} else {
				idle++
			}
		}
		w.mu.Lock()
		w.extending = false
		w.mu.Unlock()
	}()
}
