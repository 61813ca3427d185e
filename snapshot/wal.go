package snapshot

import (
	"errors"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2/record"
	"github.com/zeebo/xxh3"
)

// trimWAL cuts a checkpoint's copy of a WAL file after its last valid
// record. Pebble recycles WAL files, so a copied WAL carries the stale tail
// of an older log (up to a memtable's worth of bytes) that replay ignores:
// without trimming, every checkpoint would ship it. Replay of the trimmed
// file yields the same records, ending with a clean EOF. The file is left
// as it is when its name does not carry a log number or when the reader
// reports anything but the end of the log (real corruption is kept for
// Pebble to judge).
//
// The scan reads the file once; when it read all of it and cut nothing,
// trimWAL also returns the file's checksum and size, so that the caller
// does not read the file a second time. sum is "" otherwise. (fsm's live
// WALs are linked, not copied: a copy is of a WAL written before the
// process started, or of a DB not run through fsm.)
func trimWAL(path string) (trimmed int64, sum string, size int64, err error) {
	base := path[strings.LastIndexByte(path, '/')+1:]
	if !strings.HasSuffix(base, ".log") {
		return 0, "", 0, nil
	}
	num, err := strconv.ParseUint(strings.TrimSuffix(base, ".log"), 10, 64)
	if err != nil {
		return 0, "", 0, nil // a failover segment or an unknown name: keep as is
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, "", 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, "", 0, err
	}
	h := &countingHash{h: xxh3.New()}
	r := newRecordReader(record.NewReader, io.TeeReader(f, h), num)
	end := int64(0)
	for {
		rec, err := r.Next()
		if err == nil {
			_, err = io.Copy(io.Discard, rec)
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, record.ErrUnexpectedEOF) {
				return 0, "", 0, nil
			}
			break
		}
		end = r.Offset()
	}
	if end >= fi.Size() {
		if h.n == fi.Size() {
			return 0, checksumHex(h.h.Sum128()), h.n, nil
		}
		return 0, "", 0, nil
	}
	if err := f.Truncate(end); err != nil {
		return 0, "", 0, err
	}
	return fi.Size() - end, "", 0, f.Sync()
}

// countingHash is an xxh3 hasher that counts what it was given.
type countingHash struct {
	h *xxh3.Hasher
	n int64
}

func (c *countingHash) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.h.Write(p)
}

// newRecordReader calls record.NewReader, whose log-number parameter has a
// type in a Pebble-internal package: inference names it for us.
func newRecordReader[N ~uint64](newReader func(io.Reader, N) *record.Reader, r io.Reader, num uint64) *record.Reader {
	return newReader(r, N(num))
}
