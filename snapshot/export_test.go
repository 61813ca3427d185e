package snapshot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
)

func TestExportRestoreFrom(t *testing.T) {
	ctx := context.Background()
	a := newLeader(t)
	for i := 0; i < 3; i++ {
		fill(t, a.db, string(rune('a'+i)), 0, 500, 1000, int64(i))
	}
	put(t, a.db, "wal-only", "1")
	id1, m1 := checkpoint(t, a.Store, a.db, 10, 1)
	state1 := dump(t, a.db)
	bucket := "file://" + t.TempDir()

	var last ExportProgress
	calls := 0
	st, err := a.Export(ctx, id1, bucket, func(p ExportProgress) { last = p; calls++ })
	if err != nil {
		t.Fatal(err)
	}
	files1, bytes1 := distinctBytes(m1, nil)
	if st.FilesUploaded != files1 || st.BytesUploaded != bytes1 || st.FilesSkipped != 0 {
		t.Fatalf("first export %+v, want %d files / %d bytes uploaded", st, files1, bytes1)
	}
	if calls < files1 || last.FilesDone != files1 || last.FilesTotal != files1 || last.BytesUploaded != bytes1 || last.BytesTotal != bytes1 {
		t.Fatalf("progress: %d calls, last %+v", calls, last)
	}

	// A new node restores the savepoint: identical contents.
	fsmDir := filepath.Join(t.TempDir(), "state")
	m, err := RestoreFrom(ctx, bucket, m1.ID, fsmDir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Index != 10 || m.Term != 1 {
		t.Fatalf("restored manifest %d/%d", m.Index, m.Term)
	}
	sameState(t, state1, dumpDir(t, filepath.Join(fsmDir, "db")))
	if _, err := RestoreFrom(ctx, bucket, m1.ID, fsmDir); !errors.Is(err, ErrExists) {
		t.Fatalf("restore over an existing DB: %v", err)
	}

	// A later checkpoint uploads only what is new.
	fill(t, a.db, "d", 0, 100, 1000, 9)
	id2, m2 := checkpoint(t, a.Store, a.db, 20, 1)
	st, err = a.Export(ctx, id2, bucket, nil)
	if err != nil {
		t.Fatal(err)
	}
	newFiles, newBytes := distinctBytes(m2, m1)
	if st.FilesUploaded != newFiles || st.BytesUploaded != newBytes || st.FilesSkipped != len(m2.uniqueFiles())-newFiles {
		t.Fatalf("second export %+v, want %d files / %d bytes uploaded", st, newFiles, newBytes)
	}
	if st.BytesUploaded*3 > m2.StateBytes {
		t.Fatalf("second export uploaded %d of %d bytes", st.BytesUploaded, m2.StateBytes)
	}
	// Empty id: the newest.
	fsmDir2 := filepath.Join(t.TempDir(), "state")
	m, err = RestoreFrom(ctx, bucket, "", fsmDir2)
	if err != nil || m.ID != m2.ID {
		t.Fatalf("restore latest: %v, %v", m, err)
	}

	// Adopt (before the DB is opened) makes the restored checkpoint a new
	// node's raft snapshot.
	z := newStore(t, t.TempDir(), "z", "127.0.0.1:9", nil)
	conf := raft.Configuration{Servers: []raft.Server{{ID: "z", Address: "127.0.0.1:8", Suffrage: raft.Voter}}}
	zid, err := z.Adopt(m, filepath.Join(fsmDir2, "db"), conf, 1)
	if err != nil {
		t.Fatal(err)
	}
	l, err := z.List()
	if err != nil || len(l) != 1 || l[0].ID != zid || l[0].Index != 20 || l[0].Configuration.Servers[0].ID != "z" {
		t.Fatalf("adopted snapshot: %v, %v", l, err)
	}
	if d, err := z.Show(zid); err != nil || d.Missing != 0 || d.Source.NodeID != "z" {
		t.Fatalf("adopted snapshot detail: %+v, %v", d, err)
	}
	sameState(t, dump(t, a.db), dumpDir(t, filepath.Join(fsmDir2, "db")))
	// Once Pebble has opened the directory its WAL and MANIFEST changed:
	// Adopt refuses rather than record files that are not the checkpoint.
	z2 := newStore(t, t.TempDir(), "z", "127.0.0.1:9", nil)
	if _, err := z2.Adopt(m, filepath.Join(fsmDir2, "db"), conf, 1); err == nil {
		t.Fatal("adopted a directory that was opened")
	}
}

func TestRestoreFromRejectsCorruptObject(t *testing.T) {
	ctx := context.Background()
	a := newLeader(t)
	fill(t, a.db, "a", 0, 300, 1000, 1)
	id, m := checkpoint(t, a.Store, a.db, 10, 1)
	dir := t.TempDir()
	if _, err := a.Export(ctx, id, "file://"+dir, nil); err != nil {
		t.Fatal(err)
	}
	sst := largestSST(m)
	flipByte(t, filepath.Join(dir, "files", sst.Checksum), 100)
	fsmDir := filepath.Join(t.TempDir(), "state")
	if _, err := RestoreFrom(ctx, "file://"+dir, m.ID, fsmDir); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("restore of a corrupt object: %v", err)
	}
	if _, err := os.Stat(filepath.Join(fsmDir, "db")); !os.IsNotExist(err) {
		t.Fatal("a corrupt restore left a DB directory")
	}
	// A corrupt local file is never exported either.
	b := t.TempDir()
	flipByte(t, a.files.path(sst.Checksum), 100)
	if _, err := a.Export(ctx, id, "file://"+b, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("export of a corrupt file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(b, "files", sst.Checksum)); !os.IsNotExist(err) {
		t.Fatal("corrupt file reached the bucket")
	}
}

// A checkpoint taken while entries were being applied holds state above
// its snapshot index (Manifest.StateIndex). A new cluster restored from
// it must continue its log above the state's index, or the state machine
// would skip the new cluster's first entries as already applied.
func TestAdoptContinuesAboveStateIndex(t *testing.T) {
	ctx := context.Background()
	a := newLeader(t)
	fill(t, a.db, "a", 0, 200, 100, 1)
	snap, err := a.Checkpointer().Snapshot(a.db, 20, 2, func(dir string, reuse func(string) string) (uint64, uint64, map[string]int64, error) {
		return 25, 3, nil, pebbleCheckpoint(a.db, dir, reuse)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	sink, err := a.Create(raft.SnapshotVersionMax, 20, 2, testConf, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	d, err := a.Show(sink.ID())
	if err != nil {
		t.Fatal(err)
	}
	if d.Manifest.Index != 20 || d.Manifest.StateIndex != 25 || d.Manifest.StateTerm != 3 {
		t.Fatalf("manifest index %d state %d/%d, want 20 and 25/3", d.Manifest.Index, d.Manifest.StateIndex, d.Manifest.StateTerm)
	}
	bucket := "file://" + t.TempDir()
	if _, err := a.Export(ctx, sink.ID(), bucket, nil); err != nil {
		t.Fatal(err)
	}
	fsmDir := filepath.Join(t.TempDir(), "state")
	m, err := RestoreFrom(ctx, bucket, d.Manifest.ID, fsmDir)
	if err != nil {
		t.Fatal(err)
	}
	z := newStore(t, t.TempDir(), "z", "127.0.0.1:9", nil)
	conf := raft.Configuration{Servers: []raft.Server{{ID: "z", Address: "127.0.0.1:8", Suffrage: raft.Voter}}}
	if _, err := z.Adopt(m, filepath.Join(fsmDir, "db"), conf, 25); err != nil {
		t.Fatal(err)
	}
	l, err := z.List()
	if err != nil || len(l) != 1 || l[0].Index != 25 || l[0].Term != 3 {
		t.Fatalf("adopted snapshot %+v (%v), want index 25 term 3", l, err)
	}

	// A take that reports a state below the snapshot index is refused.
	bad, err := a.Checkpointer().Snapshot(a.db, 30, 3, func(dir string, reuse func(string) string) (uint64, uint64, map[string]int64, error) {
		return 29, 3, nil, pebbleCheckpoint(a.db, dir, reuse)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Release()
	sink, err = a.Create(raft.SnapshotVersionMax, 30, 3, testConf, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.Persist(sink); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("persist of a checkpoint behind its index: %v", err)
	}
}

func TestOpenBucketRefusesURLsThatDoNotSayWhatTheyMean(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"file://" + dir, true},
		{"file://localhost" + dir, true},
		{"file://tmp/backups", false}, // the host "tmp": fileblob would write /backups
		{"/tmp/backups", false},       // no scheme
		{"tmp/backups", false},
	} {
		b, err := OpenBucket(context.Background(), tc.url)
		if b != nil {
			_ = b.Close()
		}
		if tc.ok != (err == nil) || (!tc.ok && !errors.Is(err, ErrBadURL)) {
			t.Errorf("%s: %v, want ok=%v", tc.url, err, tc.ok)
		}
	}
}
