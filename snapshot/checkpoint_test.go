package snapshot

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

func sstBytes(m *Manifest) (n int, bytes int64) {
	for _, f := range m.Files {
		if immutable(f.Name) {
			n++
			bytes += f.Size
		}
	}
	return n, bytes
}

func storedChecksums(t *testing.T, s *Store) []string {
	t.Helper()
	complete, _, err := s.files.names()
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(complete)
	return complete
}

func manifestChecksums(ms ...*Manifest) []string {
	set := map[string]bool{}
	for _, m := range ms {
		for _, f := range m.Files {
			set[f.Checksum] = true
		}
	}
	var out []string
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestCheckpointSharesUnchangedFiles(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, filepath.Join(dir, "db"))
	defer db.Close()
	for i := 0; i < 3; i++ { // three SSTs of ~1 MiB
		fill(t, db, string(rune('a'+i)), 0, 1000, 1000, int64(i))
	}
	m := &Counters{}
	s := newStore(t, filepath.Join(dir, "snaps"), "n1", "127.0.0.1:1", func(c *Config) { c.Metrics = m })

	id1, m1 := checkpoint(t, s, db, 10, 1)
	if m1.ID != id1 || m1.Index != 10 || m1.Term != 1 || m1.Source.NodeID != "n1" || m1.Source.Addr != "127.0.0.1:1" {
		t.Fatalf("manifest header %+v", m1)
	}
	nSST, sst1 := sstBytes(m1)
	if nSST != 3 {
		t.Fatalf("manifest lists %d SSTs, want 3: %+v", nSST, m1.Files)
	}
	var haveOptions, haveManifest bool
	for _, f := range m1.Files {
		haveOptions = haveOptions || len(f.Name) > 7 && f.Name[:7] == "OPTIONS"
		haveManifest = haveManifest || len(f.Name) > 8 && f.Name[:8] == "MANIFEST"
		sum, size, err := hashFile(s.files.path(f.Checksum))
		if err != nil || sum != f.Checksum || size != f.Size {
			t.Fatalf("stored %s: %s/%d, %v; manifest says %s/%d", f.Name, sum, size, err, f.Checksum, f.Size)
		}
	}
	if !haveOptions || !haveManifest {
		t.Fatalf("manifest lacks OPTIONS or MANIFEST: %+v", m1.Files)
	}
	if m1.NewBytes != m1.StateBytes || m1.SharedBytes != 0 || m1.Previous != "" {
		t.Fatalf("first checkpoint: new %d shared %d of %d (previous %q)", m1.NewBytes, m1.SharedBytes, m1.StateBytes, m1.Previous)
	}
	if h := m.Totals().LastCheckpoint.HashedBytes; h != m1.StateBytes {
		t.Fatalf("first checkpoint hashed %d bytes, want all %d", h, m1.StateBytes)
	}
	// The checkpoint is the state: it opens and holds what the DB holds.
	if err := os.Mkdir(filepath.Join(dir, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := restore(t, s, id1, filepath.Join(dir, "x", "db"))
	if err != nil || st.FilesFetched != 0 {
		t.Fatalf("local install: %+v, %v", st, err)
	}
	sameState(t, dump(t, db), dumpDir(t, filepath.Join(dir, "x", "db")))

	// A small change: one key (in the WAL) and one small SST.
	fill(t, db, "d", 0, 10, 100, 9)
	put(t, db, "zz-small", "change") // in the WAL only
	id2, m2 := checkpoint(t, s, db, 20, 1)
	if m2.Previous != id1 {
		t.Fatalf("previous = %q, want %q", m2.Previous, id1)
	}
	if m2.SharedBytes < sst1 {
		t.Fatalf("second checkpoint shares %d bytes, want at least the %d bytes of unchanged SSTs", m2.SharedBytes, sst1)
	}
	// New: the small SST, the trimmed WAL and the MANIFEST, a few KiB.
	if m2.NewBytes > 64<<10 || m2.NewFiles != 3 {
		t.Fatalf("second checkpoint: %d of %d bytes new (%d files): want a small new part\n%+v\n%+v", m2.NewBytes, m2.StateBytes, m2.NewFiles, m1.Files, m2.Files)
	}
	if m2.NewBytes+m2.SharedBytes != m2.StateBytes || m2.NewFiles+m2.SharedFiles != len(m2.Files) {
		t.Fatalf("new+shared do not add up: %+v", m2)
	}
	// Unchanged SSTs were recognised by identity, not reread.
	var nonSST int64
	for _, f := range m2.Files {
		if !immutable(f.Name) {
			nonSST += f.Size
		}
	}
	var newSST int64
	for _, f := range m2.Files {
		if immutable(f.Name) && !contains(m1, f.Checksum) {
			newSST += f.Size
		}
	}
	if h := m.Totals().LastCheckpoint.HashedBytes; h != nonSST+newSST {
		t.Fatalf("second checkpoint hashed %d bytes, want %d (non-SST files and the new SST only)", h, nonSST+newSST)
	}
	// The change that lives only in the (trimmed) WAL is in the checkpoint.
	if m.Totals().LastCheckpoint.WALTrimmedBytes == 0 {
		t.Fatal("recycled WAL tail was not trimmed")
	}
	if err := os.Mkdir(filepath.Join(dir, "y"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := restore(t, s, id2, filepath.Join(dir, "y", "db")); err != nil {
		t.Fatal(err)
	}
	sameState(t, dump(t, db), dumpDir(t, filepath.Join(dir, "y", "db")))
	// Content is stored once: the store holds exactly the distinct checksums.
	if got, want := storedChecksums(t, s), manifestChecksums(m1, m2); !equalStrings(got, want) {
		t.Fatalf("store holds %d files, manifests reference %d", len(got), len(want))
	}
	infos, err := s.Checkpoints()
	if err != nil || len(infos) != 2 || infos[0].ID != id2 || infos[1].ID != id1 {
		t.Fatalf("catalog %+v, %v", infos, err)
	}
	if infos[0].SharedBytes != m2.SharedBytes || infos[0].Files != len(m2.Files) || infos[0].Missing != 0 || infos[0].Pending {
		t.Fatalf("catalog entry %+v", infos[0])
	}

	// After a restart the cache is rebuilt from the store's own inodes.
	s2 := newStore(t, filepath.Join(dir, "snaps"), "n1", "127.0.0.1:1", func(c *Config) { c.Metrics = m })
	_, m3 := checkpoint(t, s2, db, 30, 1)
	var nonSST3 int64
	for _, f := range m3.Files {
		if !immutable(f.Name) {
			nonSST3 += f.Size
		}
	}
	if h := m.Totals().LastCheckpoint.HashedBytes; h != nonSST3 {
		t.Fatalf("checkpoint after reopen hashed %d bytes, want only the %d bytes of non-SST files", h, nonSST3)
	}
}

func contains(m *Manifest, sum string) bool {
	for _, f := range m.Files {
		if f.Checksum == sum {
			return true
		}
	}
	return false
}

func TestRetentionCollectsUnreferencedFiles(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, filepath.Join(dir, "db"))
	defer db.Close()
	s := newStore(t, filepath.Join(dir, "snaps"), "n1", "", func(c *Config) { c.Retain = 1 })

	fill(t, db, "a", 0, 500, 500, 1)
	id1, m1 := checkpoint(t, s, db, 10, 1)
	if err := s.Pin(id1); err != nil {
		t.Fatal(err)
	}
	// Rewrite everything so that no SST survives.
	fill(t, db, "a", 0, 500, 500, 2)
	if err := db.Compact(t.Context(), []byte("a"), []byte("b"), true); err != nil {
		t.Fatal(err)
	}
	_, m2 := checkpoint(t, s, db, 20, 1)
	fill(t, db, "a", 0, 500, 500, 3)
	if err := db.Compact(t.Context(), []byte("a"), []byte("b"), true); err != nil {
		t.Fatal(err)
	}
	id3, m3 := checkpoint(t, s, db, 30, 1)

	// Retain=1 keeps the newest; the pinned one stays; the middle one and
	// the files only it referenced are gone.
	l, err := s.List()
	if err != nil || len(l) != 2 || l[0].ID != id3 || l[1].ID != id1 {
		t.Fatalf("list %v, %v", l, err)
	}
	if got, want := storedChecksums(t, s), manifestChecksums(m1, m3); !equalStrings(got, want) {
		t.Fatalf("store holds %d files, want the %d of the retained snapshots", len(got), len(want))
	}
	for _, f := range m2.Files {
		if immutable(f.Name) && !contains(m1, f.Checksum) && !contains(m3, f.Checksum) {
			if _, err := os.Stat(s.files.path(f.Checksum)); err == nil {
				t.Fatalf("file %s of the dropped snapshot survived GC", f.Name)
			}
		}
	}
	if err := s.Unpin(id1); err != nil {
		t.Fatal(err)
	}
	if l, _ := s.List(); len(l) != 1 || l[0].ID != id3 {
		t.Fatalf("after unpin: %v", l)
	}
	if got, want := storedChecksums(t, s), manifestChecksums(m3); !equalStrings(got, want) {
		t.Fatalf("after unpin the store holds %d files, want %d", len(got), len(want))
	}
	// Collected files left files/ in the commit; their blocks are freed
	// in the background.
	waitTrashEmpty(t, s)
}

// waitTrashEmpty waits until the background unlinker has emptied trash/.
func waitTrashEmpty(t *testing.T, s *Store) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for s.trashBusy.Load() || s.files.trashHolds() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("trash/ still holds files after 10s")
		}
	}
}

// Whatever a crash left in trash/ is unlinked after Open.
func TestTrashLeftOverIsEmptiedOnOpen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "snaps")
	s := newStore(t, dir, "n1", "", nil)
	waitTrashEmpty(t, s)
	for i := 0; i < 3; i++ {
		if err := os.WriteFile(filepath.Join(s.files.trash, fmt.Sprintf("left-%d", i)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s2 := newStore(t, dir, "n1", "", nil)
	waitTrashEmpty(t, s2)
}

// Snapshots received from a peer stay out of raft's List until installed;
// only the latest received one is kept while pending.
func TestPendingSnapshotsHiddenUntilInstalled(t *testing.T) {
	a := newLeader(t)
	fill(t, a.db, "a", 0, 200, 1000, 1)
	b := newNode(t, "b", func(c *Config) { c.Retain = 1 })
	bdb := openDB(t, filepath.Join(t.TempDir(), "bdb"))
	defer bdb.Close()
	fill(t, bdb, "own", 0, 10, 100, 2)
	own, _ := checkpoint(t, b.Store, bdb, 5, 1)

	id1, _ := checkpoint(t, a.Store, a.db, 10, 1)
	p1 := ship(t, a.Store, id1, b.Store)
	put(t, a.db, "x", "y")
	id2, _ := checkpoint(t, a.Store, a.db, 20, 1)
	p2 := ship(t, a.Store, id2, b.Store)

	if l, _ := b.List(); len(l) != 1 || l[0].ID != own {
		t.Fatalf("raft sees %v, want only the installed %s", l, own)
	}
	infos, _ := b.Checkpoints()
	if len(infos) != 2 || infos[0].ID != p2 || !infos[0].Pending || infos[0].Missing == 0 || infos[1].ID != own {
		t.Fatalf("catalog %+v", infos)
	}
	if _, err := b.Show(p1); err == nil {
		t.Fatal("superseded pending snapshot kept")
	}
	if _, err := restore(t, b.Store, p2, filepath.Join(t.TempDir(), "db")); err != nil {
		t.Fatal(err)
	}
	if l, _ := b.List(); len(l) != 2 || l[0].ID != p2 {
		t.Fatalf("after install raft sees %v", l)
	}
	// The next commit applies Retain=1 to installed snapshots.
	checkpoint(t, b.Store, bdb, 30, 1)
	if l, _ := b.List(); len(l) != 1 || l[0].Index != 30 {
		t.Fatalf("after retention raft sees %v", l)
	}
}

// A table the store holds already — the very inode, linked by an earlier
// checkpoint — is reused: not linked into the scratch checkpoint nor added
// again, yet listed in the manifest. A table whose checksum is only
// cached (as the prehasher caches new tables) or whose stored link is
// gone is linked and added as before. The store holds what each manifest
// lists, byte for byte.
func TestCheckpointReusesHeldTables(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, filepath.Join(dir, "db"))
	defer db.Close()
	fill(t, db, "a", 0, 100, 100, 1)
	fill(t, db, "b", 0, 100, 100, 2)
	m := &Counters{}
	s := newStore(t, filepath.Join(dir, "s"), "n1", "", func(c *Config) { c.Metrics = m })
	ssts := func(m *Manifest) map[string]File {
		out := map[string]File{}
		for _, f := range m.Files {
			if immutable(f.Name) {
				out[f.Name] = f
			}
		}
		return out
	}
	verify := func(id string) {
		t.Helper()
		r, err := s.Verify(context.Background(), id)
		if err != nil || r.Status != VerifyOK {
			t.Fatalf("verify %s: %+v (%v)", id, r, err)
		}
	}
	_, m1 := checkpoint(t, s, db, 1, 1)
	if got := m.Totals().LastCheckpoint.ReusedFiles; got != 0 || len(ssts(m1)) != 2 {
		t.Fatalf("first checkpoint reused %d tables of %v, want none of 2", got, ssts(m1))
	}

	put(t, db, "c", "1")
	id2, m2 := checkpoint(t, s, db, 2, 1)
	if last := m.Totals().LastCheckpoint; last.ReusedFiles != 2 || !maps.Equal(ssts(m1), ssts(m2)) {
		t.Fatalf("second checkpoint reused %d tables, listed %v; want 2, %v", last.ReusedFiles, ssts(m2), ssts(m1))
	}
	verify(id2)

	// A new table whose checksum the cache knows by identity, as after
	// the prehasher: the store does not hold it, so it is linked and added.
	fill(t, db, "d", 0, 100, 100, 3)
	live := filepath.Join(dir, "db")
	var fresh string
	ents, _ := os.ReadDir(live)
	for _, e := range ents {
		if immutable(e.Name()) && ssts(m2)[e.Name()].Name == "" {
			fresh = e.Name()
		}
	}
	if fresh == "" {
		t.Fatal("no new table after the fill")
	}
	if _, _, _, err := s.files.checksum(filepath.Join(live, fresh), true); err != nil {
		t.Fatal(err)
	}
	id3, m3 := checkpoint(t, s, db, 3, 1)
	if last := m.Totals().LastCheckpoint; last.ReusedFiles != 2 || ssts(m3)[fresh].Name == "" {
		t.Fatalf("third checkpoint reused %d tables, listed %v; want 2 and %s", last.ReusedFiles, ssts(m3), fresh)
	}
	held, err1 := os.Stat(s.files.path(ssts(m3)[fresh].Checksum))
	livefi, err2 := os.Stat(filepath.Join(live, fresh))
	if err1 != nil || err2 != nil || !os.SameFile(held, livefi) {
		t.Fatalf("the new table is not in the store as a link to the live one (%v, %v)", err1, err2)
	}
	verify(id3)

	// The store's link to a reused table goes away: the next checkpoint
	// links and adds it again.
	var gone File
	for _, f := range ssts(m1) {
		gone = f
	}
	if err := os.Remove(s.files.path(gone.Checksum)); err != nil {
		t.Fatal(err)
	}
	id4, m4 := checkpoint(t, s, db, 4, 1)
	if last := m.Totals().LastCheckpoint; last.ReusedFiles != 2 || ssts(m4)[gone.Name] != gone {
		t.Fatalf("after losing %s the checkpoint reused %d tables, listed %v", gone.Name, last.ReusedFiles, ssts(m4))
	}
	verify(id4)
}
