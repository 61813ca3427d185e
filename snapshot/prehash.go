package snapshot

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// prehashQueue bounds the tables waiting to be hashed; beyond it a table is
// left for the next checkpoint to hash (correct either way, only slower).
const prehashQueue = 1024

// prehasher checksums the tables Pebble writes as soon as a flush or
// compaction has written them, off every critical path, and puts the sums
// in the file store's identity cache: a checkpoint hard-links the same
// inode, so Persist finds the sum without reading the file. Without it the
// first checkpoint after a bulk load read every new byte of state inside
// `checkpoint create` (the compaction output of a busy minute is hundreds
// of MB).
type prehasher struct {
	files *fileStore

	mu      sync.Mutex
	queue   []string
	running bool
	byPath  map[string]fileKey // tables hashed here, until Pebble deletes them
	idle    *sync.Cond
}

func newPrehasher(files *fileStore) *prehasher {
	p := &prehasher{files: files, byPath: map[string]fileKey{}}
	p.idle = sync.NewCond(&p.mu)
	return p
}

// PebbleEventListener returns the listener to set in the Options of the
// state machine's Pebble DB in dbDir (it may be merged with others with
// pebble.TeeEventListener). Its callbacks only queue work.
func (s *Store) PebbleEventListener(dbDir string) pebble.EventListener {
	p := s.prehash
	table := func(ti pebble.TableInfo) string {
		return filepath.Join(dbDir, fmt.Sprintf("%06d.sst", uint64(ti.FileNum)))
	}
	return pebble.EventListener{
		FlushEnd: func(info pebble.FlushInfo) {
			if info.Err != nil || info.Ingest {
				return
			}
			for _, t := range info.Output {
				p.add(table(t))
			}
		},
		CompactionEnd: func(info pebble.CompactionInfo) {
			if info.Err != nil {
				return
			}
			for _, t := range info.Output.Tables {
				p.add(table(t))
			}
		},
		TableDeleted: func(info pebble.TableDeleteInfo) { p.deleted(info.Path) },
	}
}

func (p *prehasher) add(path string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queue) >= prehashQueue {
		return
	}
	p.queue = append(p.queue, path)
	if !p.running {
		p.running = true
		go p.run()
	}
}

// run hashes queued tables one at a time and exits when the queue is
// empty (a goroutine only while there is work).
func (p *prehasher) run() {
	for {
		p.mu.Lock()
		if len(p.queue) == 0 {
			p.running = false
			p.idle.Broadcast()
			p.mu.Unlock()
			return
		}
		path := p.queue[0]
		p.queue = p.queue[1:]
		p.mu.Unlock()
		p.hash(path)
	}
}

func (p *prehasher) hash(path string) {
	fi, err := os.Stat(path)
	if err != nil {
		return // already compacted away
	}
	key, ok := identity(fi)
	if !ok {
		return
	}
	if _, _, _, err := p.files.checksum(path, true); err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if fi2, err := os.Stat(path); err == nil && os.SameFile(fi, fi2) {
		p.byPath[path] = key // deleted() drops the sum when Pebble deletes the table
		return
	}
	// Deleted while it was being hashed, before deleted() could know of
	// it: drop the sum now (its inode may be reused).
	p.forget(key)
}

// deleted drops the cached sum of a table Pebble deleted.
func (p *prehasher) deleted(path string) {
	p.mu.Lock()
	key, ok := p.byPath[path]
	delete(p.byPath, path)
	p.mu.Unlock()
	if ok {
		p.forget(key)
	}
}

// forget drops the cached sum of key unless the store holds a link to the
// same inode (then the inode cannot be reused and the entry stays true).
func (p *prehasher) forget(key fileKey) {
	p.files.mu.Lock()
	defer p.files.mu.Unlock()
	sum, ok := p.files.cache[key]
	if !ok {
		return
	}
	if fi, err := os.Stat(filepath.Join(p.files.dir, sum)); err == nil {
		if k, ok := identity(fi); ok && k == key {
			return
		}
	}
	delete(p.files.cache, key)
}

// wait blocks until the queue is empty (tests).
func (p *prehasher) wait() {
	p.mu.Lock()
	for p.running {
		p.idle.Wait()
	}
	p.mu.Unlock()
}
