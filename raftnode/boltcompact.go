package raftnode

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/cairn-db/cairn/internal/fsutil"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// bbolt never gives pages back to the filesystem: after a bulk load went
// through the raft log and raft compacted it away, raft.db keeps the
// load's size for good (reused by later entries, but never smaller). etcd
// needs `defrag`, Consul documents an offline `bbolt compact`. A node
// rewrites its log into a new file when it opens one that is mostly free
// pages: the copy costs the live entries (the trailing logs), not the file.
const (
	// boltCompactMinFree: below this many free bytes a rewrite is not
	// worth a restart's time.
	boltCompactMinFree = 64 << 20
	// boltCompactMaxLive bounds what a rewrite copies, so what it adds to
	// a restart (about 0.2 s here for 64 MiB). A follower whose log still
	// held 480 MB of a bulk load took 1.6 s to copy it; such a log is
	// rewritten at a later start, once raft compacted those entries away.
	boltCompactMaxLive = 64 << 20
	// boltCompactSuffix names the file being written; a leftover one (a
	// crash during the rewrite, before the rename) is removed at open.
	boltCompactSuffix = ".compact"
	// boltCompactTxBytes bounds each of the copy's transactions.
	boltCompactTxBytes = 64 << 20
)

// bboltCompact is bbolt.Compact; tests make it fail.
var bboltCompact = bbolt.Compact

// boltCompaction reports a rewrite.
type boltCompaction struct {
	Before, After int64 // file sizes
	Free          int64 // free pages' bytes in the old file
	Took          time.Duration
}

// openBolt opens the bolt log at path. With compact set, a file with at
// least boltCompactMinFree of free pages and at most boltCompactMaxLive of
// the rest is first rewritten with only its live pages and renamed over
// path. A rewrite that fails leaves the old file in place and is logged;
// the node opens that.
func openBolt(path string, noSync, compact bool, log *slog.Logger) (*raftboltdb.BoltStore, error) {
	if err := os.Remove(path + boltCompactSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	open := func() (*raftboltdb.BoltStore, error) {
		return raftboltdb.New(raftboltdb.Options{Path: path, NoSync: noSync, BoltOptions: boltOptions()})
	}
	s, err := open()
	if err != nil || !compact {
		return s, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		s.Close()
		return nil, err
	}
	st := s.Stats()
	free := int64(st.FreePageN+st.PendingPageN) * int64(os.Getpagesize())
	if !worthCompacting(fi.Size(), free) {
		return s, nil
	}
	if err := s.Close(); err != nil {
		return nil, err
	}
	c, err := compactBolt(path)
	if err != nil {
		log.Warn("raft log: rewriting the bolt file without its free pages failed; opening it as it is",
			"path", path, "err", err)
	} else {
		c.Free = free
		log.Info("raft log: rewrote the bolt file without its free pages",
			"path", path, "before_bytes", c.Before, "free_bytes", c.Free, "after_bytes", c.After, "took", c.Took.Round(time.Millisecond))
	}
	return open()
}

// worthCompacting: at least boltCompactMinFree of the file is free pages
// and at most boltCompactMaxLive is not (the live pages plus the file's
// unallocated tail, at most 16 MiB).
func worthCompacting(size, free int64) bool {
	return free >= boltCompactMinFree && size-free <= boltCompactMaxLive
}

// compactBolt copies path's buckets into path+boltCompactSuffix, syncs it
// and renames it over path. On error the temporary file is removed and
// path is untouched.
func compactBolt(path string) (c boltCompaction, err error) {
	t0 := time.Now()
	fi, err := os.Stat(path)
	if err != nil {
		return c, err
	}
	c.Before = fi.Size()
	tmp := path + boltCompactSuffix
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	src, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return c, err
	}
	defer func() {
		if runtime.GOOS == "windows" {
			_ = src.Close() // closed before the rename, or now on an error; a second Close is a no-op
			return
		}
		if err != nil {
			src.Close()
			return
		}
		// The rename unlinked the old file: closing its last descriptor
		// frees its blocks, about 0.25 s for 1 GiB here. Not on the
		// node's way to ready.
		go src.Close()
	}()
	dstOpts := *boltOptions()
	dstOpts.NoSync = true // one sync at the end, before the rename
	dst, err := bbolt.Open(tmp, fi.Mode().Perm(), &dstOpts)
	if err != nil {
		return c, err
	}
	if err = bboltCompact(dst, src, boltCompactTxBytes); err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return c, fmt.Errorf("compact %s: %w", path, err)
	}
	if runtime.GOOS == "windows" {
		// Windows refuses to replace a file that is open.
		if err = src.Close(); err != nil {
			return c, err
		}
	}
	if err = os.Rename(tmp, path); err != nil {
		return c, err
	}
	if err = fsutil.SyncDir(filepath.Dir(path)); err != nil {
		return c, err
	}
	if fi, err = os.Stat(path); err != nil {
		return c, err
	}
	c.After, c.Took = fi.Size(), time.Since(t0)
	return c, nil
}
