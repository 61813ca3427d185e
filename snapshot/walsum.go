package snapshot

import (
	"io"
	"os"
	"sync"

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
// An entry is used only while the content store holds the prefix it
// describes as a hard link to the same inode (files/<sum>, linked by the
// checkpoint that hashed it): the inode cannot have been reused, and the
// store's content for sum is that inode's first n bytes, which a WAL
// never rewrites. Otherwise the prefix is hashed from the start.
type walSums struct {
	mu      sync.Mutex
	entries []walSum // most recent first, at most maxWALSums
}

// maxWALSums bounds the cache. A checkpoint holds every WAL whose
// memtable is not flushed yet: Pebble's first memtables are small (they
// double up to MemTableSize) and it flushes once the queued ones add up to
// MemTableSize, so a young DB's checkpoint can link eight or more.
const maxWALSums = 16

type walSum struct {
	dev, ino uint64
	n        int64       // bytes hashed
	sum      string      // checksum of the first n bytes
	h        xxh3.Hasher // the hash state after them
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
	read, err = io.CopyBuffer(&h, io.NewSectionReader(f, from, size-from), make([]byte, 256<<10))
	if err != nil {
		return "", 0, 0, err
	}
	n = from + read
	sum = checksumHex(h.Sum128())
	if ok && n == size {
		s.walSums.put(walSum{dev: key.dev, ino: key.ino, n: n, sum: sum, h: h})
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
	fi, err := os.Stat(s.path(cand.sum))
	if err != nil || fi.Size() < cand.n {
		return walSum{}, false
	}
	if k, ok := identity(fi); !ok || k.dev != key.dev || k.ino != key.ino {
		return walSum{}, false
	}
	return cand, true
}

func (w *walSums) put(e walSum) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := []walSum{e}
	for _, o := range w.entries {
		if (o.dev != e.dev || o.ino != e.ino) && len(out) < maxWALSums {
			out = append(out, o)
		}
	}
	w.entries = out
}
