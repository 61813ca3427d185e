package snapshot

import (
	"encoding/json"
	"testing"
)

// The cache hands out copies: what a caller changes in a manifest it put
// or got is not what the next get returns. A different payload checksum
// under the same id, or a pruned id, is a miss.
func TestManifestCacheHandsOutCopies(t *testing.T) {
	var c manifestCache
	m := &Manifest{ID: "c1", Files: []File{{Name: "000001.sst", Size: 1, Checksum: "00"}},
		Extra: map[string]json.RawMessage{"k": json.RawMessage(`{ "a": 1 }`)}, Holder: &Source{NodeID: "n1"}}
	c.put("s1", "sum1", m)
	m.Files[0].Name, m.Holder.NodeID = "changed", "changed"
	got := c.get("s1", "sum1")
	if got == nil || got.Files[0].Name != "000001.sst" || got.Holder.NodeID != "n1" {
		t.Fatalf("got %+v after the caller changed what it put", got)
	}
	if string(got.Extra["k"]) != `{"a":1}` {
		t.Fatalf("extra %s, want it compact, as decodeManifest reads it", got.Extra["k"])
	}
	got.Files[0].Name, got.Holder.NodeID, got.Extra["k2"] = "x", "x", json.RawMessage(`2`)
	again := c.get("s1", "sum1")
	if again.Files[0].Name != "000001.sst" || again.Holder.NodeID != "n1" || len(again.Extra) != 1 {
		t.Fatalf("got %+v after a reader changed its copy", again)
	}
	if c.get("s1", "sum2") != nil || c.get("s2", "sum1") != nil || c.get("s1", "") != nil {
		t.Fatal("a hit for another checksum or id")
	}
	c.prune(func(id string) bool { return id != "s1" })
	if c.get("s1", "sum1") != nil {
		t.Fatal("a hit after prune")
	}
}
