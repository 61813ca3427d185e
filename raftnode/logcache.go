package raftnode

import (
	"fmt"
	"sync"

	"github.com/hashicorp/raft"
)

// logCache keeps the most recently stored log entries in memory, like
// raft.LogCache, within a byte budget as well as an entry count.
//
// Why not raft.LogCache: it holds its capacity in entries whatever their
// size. Replication and followers' applies read back entries that were
// just written, so cairn keeps 2×MaxAppendEntries of them (512); with
// the commands of a bulk load (~2 MiB batches of puts) that was 1.0–1.7 GB
// of Go heap on each follower right after a 1 GiB load. Here the oldest
// entries leave the cache once their bytes exceed the budget; an entry
// larger than the whole budget is not cached. A miss reads the store, as
// it does for raft.LogCache.
type logCache struct {
	store    raft.LogStore
	maxBytes int64

	mu    sync.RWMutex
	ring  []*raft.Log // entry i at i % len(ring)
	bytes int64       // logSize of the entries in ring
	lo    uint64      // no entry below lo is cached (when bytes > 0)
}

// logOverhead approximates what a cached entry costs beside its data:
// the raft.Log struct and the slice headers it points through.
const logOverhead = 96

func logSize(l *raft.Log) int64 {
	return int64(len(l.Data)+len(l.Extensions)) + logOverhead
}

func newLogCache(store raft.LogStore, entries int, maxBytes int64) (*logCache, error) {
	if entries <= 0 || maxBytes <= 0 {
		return nil, fmt.Errorf("raftnode: log cache needs a positive size, got %d entries, %d bytes", entries, maxBytes)
	}
	return &logCache{store: store, maxBytes: maxBytes, ring: make([]*raft.Log, entries)}, nil
}

// IsMonotonic passes the store's raft.MonotonicLogStore answer through.
func (c *logCache) IsMonotonic() bool {
	m, ok := c.store.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

func (c *logCache) GetLog(index uint64, log *raft.Log) error {
	c.mu.RLock()
	cached := c.ring[index%uint64(len(c.ring))]
	c.mu.RUnlock()
	if cached != nil && cached.Index == index {
		*log = *cached
		return nil
	}
	return c.store.GetLog(index, log)
}

func (c *logCache) StoreLog(log *raft.Log) error { return c.StoreLogs([]*raft.Log{log}) }

func (c *logCache) StoreLogs(logs []*raft.Log) error {
	if err := c.store.StoreLogs(logs); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := uint64(len(c.ring))
	for _, l := range logs {
		if c.bytes == 0 || l.Index < c.lo {
			c.lo = l.Index
		}
		if l.Index >= n && c.lo < l.Index-n+1 {
			c.lo = l.Index - n + 1 // older entries' slots are taken by newer ones
		}
		slot := l.Index % n
		if old := c.ring[slot]; old != nil {
			c.bytes -= logSize(old)
		}
		c.ring[slot] = l
		c.bytes += logSize(l)
	}
	if len(logs) > 0 {
		c.evict(logs[len(logs)-1].Index)
	}
	return nil
}

// evict drops the oldest cached entries, up to and including hi if it
// must, until the cache is within its byte budget.
func (c *logCache) evict(hi uint64) {
	for ; c.bytes > c.maxBytes && c.lo <= hi; c.lo++ {
		slot := c.lo % uint64(len(c.ring))
		if l := c.ring[slot]; l != nil && l.Index == c.lo {
			c.bytes -= logSize(l)
			c.ring[slot] = nil
		}
	}
}

func (c *logCache) FirstIndex() (uint64, error) { return c.store.FirstIndex() }
func (c *logCache) LastIndex() (uint64, error)  { return c.store.LastIndex() }

// DeleteRange empties the cache (as raft.LogCache does), then deletes.
func (c *logCache) DeleteRange(min, max uint64) error {
	c.mu.Lock()
	clear(c.ring)
	c.bytes, c.lo = 0, 0
	c.mu.Unlock()
	return c.store.DeleteRange(min, max)
}
