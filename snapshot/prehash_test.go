package snapshot

import (
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// Tables a flush or compaction wrote are hashed in the background, so a
// checkpoint reads only the files that are not tables (WAL, MANIFEST,
// OPTIONS); and a table Pebble deleted leaves no cached sum behind
// unless the store holds its inode.
func TestPrehashedTablesAreNotReadByCheckpoints(t *testing.T) {
	dir := t.TempDir()
	m := &Counters{}
	s := newStore(t, filepath.Join(dir, "snaps"), "n1", "127.0.0.1:1", func(c *Config) { c.Metrics = m })
	dbDir := filepath.Join(dir, "db")
	db, err := pebble.Open(dbDir, &pebble.Options{FormatMajorVersion: pebble.FormatNewest, Logger: quietLogger{},
		EventListener: func() *pebble.EventListener { l := s.PebbleEventListener(dbDir); return &l }()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := 0; i < 3; i++ {
		fill(t, db, string(rune('a'+i)), 0, 1000, 1000, int64(i)) // flushes
	}
	s.prehash.wait()
	_, m1 := checkpoint(t, s, db, 10, 1)
	var nonSST, sst int64
	for _, f := range m1.Files {
		if immutable(f.Name) {
			sst += f.Size
		} else {
			nonSST += f.Size
		}
	}
	if sst < 3_000_000 {
		t.Fatalf("checkpoint holds %d bytes of tables, want the ~3 MiB written", sst)
	}
	if h := m.Totals().LastCheckpoint.HashedBytes; h != nonSST {
		t.Fatalf("checkpoint hashed %d bytes, want only the %d bytes that are not tables", h, nonSST)
	}

	// Compact everything: the three tables are deleted and replaced.
	if err := db.Compact(t.Context(), []byte("a"), []byte("z"), true); err != nil {
		t.Fatal(err)
	}
	s.prehash.wait()
	s.prehash.mu.Lock()
	held := len(s.prehash.byPath)
	s.prehash.mu.Unlock()
	if held == 0 {
		t.Fatal("compaction outputs were not hashed")
	}
	_, m2 := checkpoint(t, s, db, 20, 1)
	nonSST = 0
	for _, f := range m2.Files {
		if !immutable(f.Name) {
			nonSST += f.Size
		}
	}
	if h := m.Totals().LastCheckpoint.HashedBytes; h != nonSST {
		t.Fatalf("checkpoint after compaction hashed %d bytes, want only %d", h, nonSST)
	}
	// Every cached identity is either a table the prehasher still tracks
	// or a file the store links to.
	s.files.mu.Lock()
	n := len(s.files.cache)
	s.files.mu.Unlock()
	complete, _, err := s.files.names()
	if err != nil {
		t.Fatal(err)
	}
	if n > len(complete)+held {
		t.Fatalf("%d cached sums for %d stored files and %d live tables: deleted tables left entries", n, len(complete), held)
	}
}
