package raftnode

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// One background deletion transaction removes between minTruncChunk and
// maxTruncChunk entries, sized to take about truncTarget: an append waits
// for bbolt's writer lock that long at most, and the extra commits stay
// few. Entries vary from a few hundred bytes to megabytes (a bulk load's
// batches), and deleting one costs about its size in freed pages, so the
// size adapts to how long the last transaction took: 1,024 entries of
// 2 MiB held the lock for about 180 ms, 1,024 small ones about 2 ms.
const (
	minTruncChunk = 32
	maxTruncChunk = 1024
	truncTarget   = 10 * time.Millisecond
)

// nextTruncChunk sizes the next deletion from the last one's: in
// proportion when it took longer than truncTarget, twice as large when it
// took under a quarter of it, within [minTruncChunk, maxTruncChunk].
func nextTruncChunk(chunk int, took time.Duration) int {
	switch {
	case took > truncTarget:
		chunk = int(int64(chunk) * int64(truncTarget) / int64(took))
	case took < truncTarget/4:
		chunk *= 2
	}
	return max(minTruncChunk, min(maxTruncChunk, chunk))
}

// lazyHead defers raft's log compaction. After every snapshot raft deletes
// the log's head (FirstIndex up to the snapshot index minus TrailingLogs)
// inside takeSnapshot, so a user's Snapshot() call, `checkpoint create`,
// waits for it; with the bolt store that is one bbolt write transaction
// over every entry written since the last compaction, and the leader's
// appends wait for the whole of it (bbolt has one writer).
//
// lazyHead answers such a DeleteRange at once: the range is hidden at once
// (FirstIndex moves past it and GetLog reports it missing, as if deleted,
// so raft sends a snapshot to a follower that needs it) and a background
// goroutine deletes it in transactions of about truncTarget each (see
// nextTruncChunk), between which appends get the writer lock.
//
// Everything else keeps its meaning. A DeleteRange that is not a head
// truncation (raft's tail truncation on a conflict) and a StoreLogs that
// reaches into the hidden range first finish the pending deletion, so the
// worker never deletes what was written after. Close finishes it too. A
// crash loses only the deletion: the hidden entries reappear after a
// restart as committed entries below the snapshot, which raft ignores and
// compacts again after its next snapshot.
type lazyHead struct {
	logStore

	mu     sync.Mutex
	lo, hi uint64 // entries lo..hi are hidden and not yet deleted; none if lo > hi
	err    error  // the last background deletion's error, returned by the next call

	del      sync.Mutex // serialises physical deletions
	chunk    int        // entries the next deletion removes (under del)
	now      func() time.Time
	wake     chan struct{}
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

func newLazyHead(s logStore) *lazyHead {
	l := &lazyHead{logStore: s, lo: 1, chunk: minTruncChunk, now: time.Now,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go l.run()
	return l
}

// pending returns the hidden range (ok false: none).
func (l *lazyHead) pending() (lo, hi uint64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lo, l.hi, l.lo <= l.hi
}

func (l *lazyHead) FirstIndex() (uint64, error) {
	first, err := l.logStore.FirstIndex()
	if err != nil {
		return 0, err
	}
	if _, hi, ok := l.pending(); ok && first != 0 && first <= hi {
		return hi + 1, nil
	}
	return first, nil
}

func (l *lazyHead) GetLog(index uint64, out *raft.Log) error {
	if lo, hi, ok := l.pending(); ok && index >= lo && index <= hi {
		return raft.ErrLogNotFound
	}
	return l.logStore.GetLog(index, out)
}

func (l *lazyHead) StoreLog(log *raft.Log) error { return l.StoreLogs([]*raft.Log{log}) }

func (l *lazyHead) StoreLogs(logs []*raft.Log) error {
	if len(logs) > 0 {
		if _, hi, ok := l.pending(); ok && logs[0].Index <= hi {
			if err := l.flush(); err != nil {
				return err
			}
		}
	}
	return l.logStore.StoreLogs(logs)
}

// DeleteRange defers a head truncation that leaves at least one entry;
// anything else runs now, after the pending deletion.
func (l *lazyHead) DeleteRange(min, max uint64) error {
	first, err := l.FirstIndex()
	if err != nil {
		return err
	}
	last, err := l.logStore.LastIndex()
	if err != nil {
		return err
	}
	if min <= first && max >= first && max < last {
		l.mu.Lock()
		if err := l.err; err != nil {
			l.err = nil
			l.mu.Unlock()
			return err
		}
		if l.lo > l.hi {
			l.lo = min
		}
		l.hi = max
		l.mu.Unlock()
		select {
		case l.wake <- struct{}{}:
		default:
		}
		return nil
	}
	if err := l.flush(); err != nil {
		return err
	}
	return l.logStore.DeleteRange(min, max)
}

// step deletes the next chunk of the hidden range; it reports whether any
// is left.
func (l *lazyHead) step() (more bool, err error) {
	l.del.Lock()
	defer l.del.Unlock()
	lo, hi, ok := l.pending()
	if !ok {
		return false, nil
	}
	end := min(hi, lo+uint64(l.chunk)-1)
	t0 := l.now()
	if err := l.logStore.DeleteRange(lo, end); err != nil {
		return false, err
	}
	l.chunk = nextTruncChunk(l.chunk, l.now().Sub(t0))
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lo = end + 1
	return l.lo <= l.hi, nil
}

// flush deletes the whole hidden range now.
func (l *lazyHead) flush() error {
	for {
		more, err := l.step()
		if err != nil || !more {
			return err
		}
	}
}

func (l *lazyHead) run() {
	defer close(l.done)
	for {
		select {
		case <-l.stop:
			return
		case <-l.wake:
		}
		for {
			more, err := l.step()
			if err != nil {
				l.mu.Lock()
				l.err = err
				l.mu.Unlock()
			}
			if err != nil || !more {
				break
			}
			select {
			case <-l.stop:
				return
			default:
			}
		}
	}
}

// Close stops the worker, finishes the pending deletion and closes the
// store.
func (l *lazyHead) Close() error {
	l.stopOnce.Do(func() { close(l.stop) })
	<-l.done
	err := l.flush()
	if cerr := l.logStore.Close(); err == nil {
		err = cerr
	}
	return err
}
