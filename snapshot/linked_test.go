package snapshot

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

// A checkpoint's WAL may be a hard link to the live WAL
// (fsm.TakeCheckpoint): the store then holds a file that goes on growing
// past the part that belongs to the checkpoint. Here the file beyond the
// prefix holds valid records that change the state, so any reader that
// went past the manifest's size would show: verify, an install from the
// own store, a follower's fetch and an export all give exactly the state
// at the prefix.
func TestLinkedWALPrefix(t *testing.T) {
	ctx := context.Background()
	a := newLeader(t)
	fill(t, a.db, "a", 0, 300, 1000, 1)
	put(t, a.db, "wal-only", "1")
	want := dump(t, a.db)

	// The checkpoint's part: each WAL as it is now.
	first := filepath.Join(t.TempDir(), "first")
	if err := a.db.Checkpoint(first, pebble.WithFlushedWAL()); err != nil {
		t.Fatal(err)
	}
	prefix := map[string]int64{}
	for _, p := range listDir(t, first) {
		if strings.HasSuffix(p, ".log") {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			prefix[filepath.Base(p)] = fi.Size()
		}
	}
	// The live WAL goes on: what a linked WAL holds past its prefix.
	put(t, a.db, "wal-only", "changed")
	put(t, a.db, "later", "2")

	snap, err := a.Checkpointer().Snapshot(a.db, 10, 1, func(dir string, reuse func(string) string) (uint64, uint64, map[string]int64, error) {
		return 10, 1, prefix, pebbleCheckpoint(a.db, dir, reuse)
	})
	if err != nil {
		t.Fatal(err)
	}
	sink, err := a.Create(raft.SnapshotVersionMax, 10, 1, testConf, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	id := sink.ID()
	d, err := a.Show(id)
	if err != nil {
		t.Fatal(err)
	}
	longer := 0
	for _, f := range d.Manifest.Files {
		n, ok := prefix[f.Name]
		if !ok {
			continue
		}
		sum, _, err := hashFile(filepath.Join(first, f.Name))
		if err != nil {
			t.Fatal(err)
		}
		if f.Size != n || f.Checksum != sum {
			t.Fatalf("manifest has %s as %d bytes %s, want its prefix: %d bytes %s", f.Name, f.Size, f.Checksum, n, sum)
		}
		fi, err := os.Stat(a.files.path(f.Checksum))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > f.Size {
			longer++
		}
	}
	if longer == 0 {
		t.Fatalf("no stored WAL is longer than its prefix %v: the test checks nothing", prefix)
	}

	r, err := a.Verify(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != VerifyOK || r.Keys != int64(len(want)) {
		t.Fatalf("verify: %s (%s), %d keys; want ok, %d keys", r.Status, r.Problem, r.Keys, len(want))
	}
	if q, _ := a.Quarantined(); len(q) != 0 {
		t.Fatalf("verify quarantined %v", q)
	}

	own := filepath.Join(t.TempDir(), "own")
	if _, err := restore(t, a.Store, id, own); err != nil {
		t.Fatal(err)
	}
	sameState(t, want, dumpDir(t, own))

	b := newNode(t, "b", nil)
	dir := filepath.Join(t.TempDir(), "b")
	if _, err := restore(t, b.Store, ship(t, a.Store, id, b.Store), dir); err != nil {
		t.Fatal(err)
	}
	sameState(t, want, dumpDir(t, dir))

	bucket := "file://" + t.TempDir()
	if _, err := a.Export(ctx, id, bucket, nil); err != nil {
		t.Fatal(err)
	}
	fsmDir := filepath.Join(t.TempDir(), "state")
	if _, err := RestoreFrom(ctx, bucket, d.Manifest.ID, fsmDir); err != nil {
		t.Fatal(err)
	}
	sameState(t, want, dumpDir(t, filepath.Join(fsmDir, "db")))
}
