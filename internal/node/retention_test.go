package node_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/cairn-db/cairn/internal/node"
	"github.com/cairn-db/cairn/internal/testcluster"
	"github.com/cairn-db/cairn/snapshot"
)

// storeUsage counts the content store's files and bytes and the scratch
// checkpoints left behind.
func storeUsage(t *testing.T, dir string) (files int, bytes int64, scratch int) {
	t.Helper()
	sizes, scratch := storeFiles(t, dir)
	for _, n := range sizes {
		files++
		bytes += n
	}
	return files, bytes, scratch
}

// storeFiles returns the size of each complete file in a store's files/
// and how many entries its scratch directory holds.
func storeFiles(t *testing.T, dir string) (sizes map[string]int64, scratch int) {
	t.Helper()
	sizes = map[string]int64{}
	ents, err := os.ReadDir(filepath.Join(dir, "files"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".partial") {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		sizes[e.Name()] = fi.Size()
	}
	sc, err := os.ReadDir(filepath.Join(dir, "scratch"))
	if err != nil {
		t.Fatal(err)
	}
	return sizes, len(sc)
}

// Under a steady overwrite load with a checkpoint after every batch, the
// store keeps the newest RetainCheckpoints plus the pinned one, and holds
// exactly the files they reference: disk use stays bounded by the state,
// not by the number of checkpoints taken. (A checkpoint's WAL is a link to
// the live WAL, so its stored file may have grown past the checkpoint's
// part: the live DB's writes, not the store's.)
func TestRetentionBoundsDiskUse(t *testing.T) {
	const retain, rounds, keys = 3, 30, 600
	c := testcluster.Start(t, 1, func(cfg *node.Config) {
		steadyRaft(cfg)
		cfg.RetainCheckpoints = retain
		cfg.Raft.SnapshotThreshold = 1 << 40 // only the test's checkpoints
	})
	m := c.Leader()
	cl := c.Client()
	store := m.Node.Snapshots
	var pinned string
	var maxBytes int64
	for r := 0; r < rounds; r++ {
		// Overwrite a third of a fixed key space: the state stays about
		// keys KiB while the churn goes on.
		from := (r * keys / 3) % keys
		writeKeys(t, cl, "k", from, from+keys/3, 100, int64(r))
		if r%7 == 6 { // the LSM reshapes now and then, as it would
			if err := m.Node.FSM.DB(func(db *pebble.DB) error {
				return db.Compact(context.Background(), []byte{0}, []byte{0xff, 0xff}, false)
			}); err != nil {
				t.Fatal(err)
			}
		}
		id, err := m.Node.Raft.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if r == 2 {
			pinned = id
			if err := store.Pin(id); err != nil {
				t.Fatal(err)
			}
		}
		infos, err := store.Checkpoints()
		if err != nil {
			t.Fatal(err)
		}
		pins := 0
		if r >= 2 {
			pins = 1
		}
		wantN := min(r+1-pins, retain) + pins // Retain counts unpinned ones

		if len(infos) != wantN {
			t.Fatalf("round %d: %d checkpoints kept, want %d", r, len(infos), wantN)
		}
		refs := map[string]snapshot.File{}
		var kept int64
		for _, in := range infos {
			d, err := store.Show(in.ID)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range d.Manifest.Files {
				refs[f.Checksum] = f
			}
			kept += d.StateBytes
		}
		var refBytes int64
		for _, f := range refs {
			refBytes += f.Size
		}
		sizes, scratch := storeFiles(t, store.Dir())
		files, bytes := len(sizes), int64(0)
		for sum, n := range sizes {
			f, ok := refs[sum]
			switch {
			case !ok:
				t.Fatalf("round %d: store holds %s (%d bytes), which no kept checkpoint references", r, sum, n)
			case n < f.Size || n > f.Size && !strings.HasSuffix(f.Name, ".log"):
				t.Fatalf("round %d: stored %s (%s) has %d bytes, its checkpoints %d", r, sum, f.Name, n, f.Size)
			}
			bytes += f.Size
		}
		if files != len(refs) || bytes != refBytes || scratch != 0 {
			t.Fatalf("round %d: store holds %d files / %d bytes (+%d scratch); kept checkpoints reference %d / %d",
				r, files, bytes, scratch, len(refs), refBytes)
		}
		if bytes > kept {
			t.Fatalf("round %d: store holds %d bytes, more than its checkpoints' total %d", r, bytes, kept)
		}
		maxBytes = max(maxBytes, bytes)
		if r == rounds-1 {
			t.Logf("after %d checkpoints: %d kept, %d files, %d bytes (max %d)", rounds, len(infos), files, bytes, maxBytes)
		}
	}
	// The pinned checkpoint survived every pass; unpinning releases it.
	if _, err := store.Show(pinned); err != nil {
		t.Fatalf("pinned checkpoint: %v", err)
	}
	_, before, _ := storeUsage(t, store.Dir())
	if err := store.Unpin(pinned); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Show(pinned); err == nil {
		t.Fatal("unpinned old checkpoint kept")
	}
	infos, _ := store.Checkpoints()
	_, after, _ := storeUsage(t, store.Dir())
	if len(infos) != retain || after >= before {
		t.Fatalf("after unpin: %d checkpoints, %d -> %d bytes", len(infos), before, after)
	}
}
