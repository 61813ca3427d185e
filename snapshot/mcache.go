package snapshot

import (
	"maps"
	"slices"
	"sync"
)

// manifestCache keeps the decoded manifests of committed snapshots by
// snapshot id and payload checksum (an id reused for other content is a
// miss). Callers get copies: a Manifest's slices and maps are theirs to
// change. Entries whose snapshot is gone are dropped by prune, which
// retention calls with the snapshots it keeps.
type manifestCache struct {
	mu sync.Mutex
	m  map[string]cachedManifest
}

type cachedManifest struct {
	checksum string
	m        *Manifest
}

func (c *manifestCache) get(id, checksum string) *Manifest {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[id]
	if !ok || e.checksum != checksum || checksum == "" {
		return nil
	}
	return e.m.clone()
}

func (c *manifestCache) put(id, checksum string, m *Manifest) {
	if checksum == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]cachedManifest{}
	}
	k := m.clone()
	if compactExtra(k.Extra) != nil { // as decodeManifest reads them back
		return // not valid JSON: not what a committed manifest holds
	}
	c.m[id] = cachedManifest{checksum: checksum, m: k}
}

// prune drops every entry whose id keep does not report.
func (c *manifestCache) prune(keep func(id string) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	maps.DeleteFunc(c.m, func(id string, _ cachedManifest) bool { return !keep(id) })
}

// clone copies m deeply enough that changing the copy's fields, files or
// extra data leaves m as it was (the raw extra values are shared: they
// are only ever replaced, not written into).
func (m *Manifest) clone() *Manifest {
	c := *m
	c.Files = slices.Clone(m.Files)
	c.Extra = maps.Clone(m.Extra)
	if m.RebuiltFrom != nil {
		src := *m.RebuiltFrom
		c.RebuiltFrom = &src
	}
	if m.Holder != nil {
		h := *m.Holder
		c.Holder = &h
	}
	return &c
}
