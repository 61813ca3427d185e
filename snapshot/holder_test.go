package snapshot

import (
	"path/filepath"
	"testing"
)

// What raft sends (Open) names this node as the holder of the files; what
// the store keeps and reads itself (the catalog) does not change.
func TestOpenNamesTheSenderAsHolder(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, filepath.Join(dir, "db"))
	defer db.Close()
	put(t, db, "k", "v")
	s := newStore(t, filepath.Join(dir, "s"), "n1", "10.0.0.1:7101", nil)
	id, _ := checkpoint(t, s, db, 5, 1)
	meta, b := read(t, s, id)
	if int64(len(b)) != meta.Size {
		t.Fatalf("meta says %d bytes, %d sent", meta.Size, len(b))
	}
	m, err := decodeManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	if m.Holder == nil || *m.Holder != (Source{NodeID: "n1", Addr: "10.0.0.1:7101"}) {
		t.Fatalf("holder %+v, want n1 at 10.0.0.1:7101", m.Holder)
	}
	d, err := s.Show(id)
	if err != nil {
		t.Fatal(err)
	}
	if d.Manifest.Holder != nil {
		t.Fatalf("the stored manifest has a holder: %+v", d.Manifest.Holder)
	}
	// An installing node asks the holder first.
	r := newStore(t, filepath.Join(dir, "r"), "n2", "10.0.0.2:7101", nil)
	if src := r.sources(m); len(src) == 0 || src[0] != *m.Holder {
		t.Fatalf("sources %+v, want the holder first", src)
	}
}

// A manifest received through raft is pending until installed, even when
// it names this node's own id as its creator: a node wiped and re-added
// under the same id holds none of "its" files, and a checkpoint listed as
// installed is what a restart restores first (a failed install made every
// restart exit).
func TestReceivedManifestNamingThisIDStaysPending(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, filepath.Join(dir, "db"))
	defer db.Close()
	put(t, db, "k", "v")
	before := newStore(t, filepath.Join(dir, "before"), "n1", "10.0.0.1:7101", nil) // n1's previous life
	id, _ := checkpoint(t, before, db, 5, 1)
	after := newStore(t, filepath.Join(dir, "after"), "n1", "10.0.0.1:7101", nil) // wiped, same id
	ship(t, before, id, after)
	listed, err := after.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != 0 {
		t.Fatalf("a received, uninstalled checkpoint is listed: %+v", listed[0])
	}
	// The node's own checkpoints are listed at once.
	own, err := before.List()
	if err != nil || len(own) != 1 {
		t.Fatalf("own checkpoint: %v, %v", own, err)
	}
}
