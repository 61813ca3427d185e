package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-db/cairn/snapshot/snapshotpb"
)

// twin returns a leader and a follower whose DBs hold the same keys and
// values in different files (written in another order, flushed at other
// points), as two replicas do.
func twin(t *testing.T, followerMutate func(*Config)) (a *leader, b *node, bdb *pebble.DB) {
	t.Helper()
	a = newLeader(t)
	b = newNode(t, "b", followerMutate)
	bdb = openDB(t, filepath.Join(t.TempDir(), "bdb"))
	t.Cleanup(func() { _ = bdb.Close() })
	for i := 0; i < 4; i++ {
		fill(t, a.db, string(rune('a'+i)), 0, 1000, 1000, int64(i))
	}
	for i := 3; i >= 0; i-- { // other order, one flush per half
		fill(t, bdb, string(rune('a'+i)), 500, 1000, 1000, int64(i)+100) // garbage first...
		fill(t, bdb, string(rune('a'+i)), 0, 1000, 1000, int64(i))       // ...then the same values
	}
	sameState(t, dump(t, a.db), dump(t, bdb))
	return a, b, bdb
}

func baseOf(db *pebble.DB) func(string) error {
	return func(dir string) error { return db.Checkpoint(dir, pebble.WithFlushedWAL()) }
}

func installWithBase(t *testing.T, s *Store, id, dir string, base func(string) error) (InstallStats, error) {
	t.Helper()
	_, rc, err := s.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	return s.InstallWithBase(context.Background(), rc, dir, base)
}

// change overwrites 5% of the leader's keys and deletes and adds a few.
func change(t *testing.T, db *pebble.DB) (puts, deletes int) {
	t.Helper()
	for i := 0; i < 4000; i += 20 {
		k := fmt.Sprintf("%c%08d", 'a'+i/1000, i%1000)
		put(t, db, k, "new value of "+k)
		puts++
	}
	for _, k := range []string{"a00000001", "d00000999"} {
		if err := db.Delete([]byte(k), pebble.Sync); err != nil {
			t.Fatal(err)
		}
		deletes++
	}
	put(t, db, "zz-new", "added")
	return puts + 1, deletes
}

func TestDeltaInstall(t *testing.T) {
	a, b, bdb := twin(t, nil)
	puts, deletes := change(t, a.db)
	id, m := checkpoint(t, a.Store, a.db, 100, 2)
	if _, missing := distinctBytes(m, nil); missing == 0 {
		t.Fatal("no state")
	}
	got := ship(t, a.Store, id, b.Store)
	dir := filepath.Join(t.TempDir(), "restored")
	st, err := installWithBase(t, b.Store, got, dir, baseOf(bdb))
	if err != nil {
		t.Fatal(err)
	}
	if !st.Delta || st.FilesFetched != 0 {
		t.Fatalf("want a delta install, got %+v", st)
	}
	if st.KeysFetched != int64(puts) || st.KeysDeleted != int64(deletes) || st.KeysReused != 4000-int64(deletes)-int64(puts-1) {
		t.Fatalf("delta fetched %d keys, deleted %d, reused %d; want %d, %d, %d", st.KeysFetched, st.KeysDeleted, st.KeysReused,
			puts, deletes, 4000-deletes-(puts-1))
	}
	if shipped := st.BytesFetched + st.BytesSent; shipped*10 > m.StateBytes {
		t.Fatalf("delta shipped %d+%d bytes of %d", st.BytesFetched, st.BytesSent, m.StateBytes)
	}
	sameState(t, dump(t, a.db), dumpDir(t, dir))

	// b holds a snapshot of its own files for that raft index in place of
	// the received one, verifies it, and serves it: a new node installs
	// from b alone.
	l, err := b.List()
	if err != nil || len(l) != 1 || l[0].Index != 100 || l[0].Term != 2 || l[0].ID == got {
		t.Fatalf("b lists %+v, %v (received %s)", l, err, got)
	}
	if _, err := b.entry(got); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the received snapshot is still there: %v", err)
	}
	d, err := b.Show(l[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if d.Manifest.ID != m.ID || d.Manifest.Source.NodeID != "b" || d.Manifest.RebuiltFrom == nil || d.Manifest.RebuiltFrom.NodeID != "a" {
		t.Fatalf("rebuilt manifest: id %s source %+v rebuilt from %+v", d.Manifest.ID, d.Manifest.Source, d.Manifest.RebuiltFrom)
	}
	if r, err := b.Verify(context.Background(), l[0].ID); err != nil || r.Status != VerifyOK {
		t.Fatalf("verify: %+v, %v", r, err)
	}
	c := newNode(t, "c", nil)
	gotC := ship(t, b.Store, l[0].ID, c.Store)
	dirC := filepath.Join(t.TempDir(), "c")
	stC, err := restore(t, c.Store, gotC, dirC)
	if err != nil {
		t.Fatal(err)
	}
	if stC.Delta || stC.FilesFetched == 0 {
		t.Fatalf("a new node should fetch b's files: %+v", stC)
	}
	sameState(t, dump(t, a.db), dumpDir(t, dirC))
	// ... and a delta against b's rebuilt checkpoint works too.
	dirD := filepath.Join(t.TempDir(), "d")
	d2 := newNode(t, "d", nil)
	gotD := ship(t, b.Store, l[0].ID, d2.Store)
	stD, err := installWithBase(t, d2.Store, gotD, dirD, baseOf(bdb))
	if err != nil || !stD.Delta {
		t.Fatalf("delta against a rebuilt checkpoint: %+v, %v", stD, err)
	}
	sameState(t, dump(t, a.db), dumpDir(t, dirD))
}

// A follower whose files already hold most of the checkpoint fetches
// files, as before: no delta.
func TestDeltaNotUsedWhenFilesAreHeld(t *testing.T) {
	a := newLeader(t)
	fill(t, a.db, "a", 0, 2000, 1000, 1)
	id1, _ := checkpoint(t, a.Store, a.db, 100, 2)
	b := newNode(t, "b", nil)
	bdb := openDB(t, filepath.Join(t.TempDir(), "bdb"))
	defer bdb.Close()
	st, err := installWithBase(t, b.Store, ship(t, a.Store, id1, b.Store), filepath.Join(t.TempDir(), "1"), baseOf(bdb))
	if err != nil || st.Delta {
		t.Fatalf("first install: %+v, %v", st, err)
	}
	put(t, a.db, "a00000001", "changed")
	id2, _ := checkpoint(t, a.Store, a.db, 200, 2)
	st, err = installWithBase(t, b.Store, ship(t, a.Store, id2, b.Store), filepath.Join(t.TempDir(), "2"), baseOf(bdb))
	if err != nil || st.Delta || st.FilesReused == 0 {
		t.Fatalf("second install should reuse files: %+v, %v", st, err)
	}
}

// faultyFetcher wraps a DeltaFetcher: corrupt flips a byte of the first
// value the server sends (a planted bug the digest check must catch);
// lose fails the stream before the server's answer arrives; noFiles fails
// every file fetch.
type faultyFetcher struct {
	*GRPCFetcher
	corrupt bool
	lose    bool
	noFiles bool
	syncs   int
}

func (f *faultyFetcher) Fetch(ctx context.Context, from Source, file File, off int64) (io.ReadCloser, error) {
	if f.noFiles {
		return nil, errors.New("planted: no file fetches")
	}
	return f.GRPCFetcher.Fetch(ctx, from, file, off)
}

func (f *faultyFetcher) Sync(ctx context.Context, from Source, id string) (SyncStream, error) {
	f.syncs++
	s, err := f.GRPCFetcher.Sync(ctx, from, id)
	if err != nil {
		return nil, err
	}
	return &faultyStream{SyncStream: s, f: f}, nil
}

type faultyStream struct {
	SyncStream
	f    *faultyFetcher
	n    int
	done bool
}

func (s *faultyStream) Recv() (*snapshotpb.SyncResponse, error) {
	if s.f.lose {
		return nil, errors.New("planted: connection lost")
	}
	r, err := s.SyncStream.Recv()
	s.n++
	if err == nil && s.f.corrupt && !s.done && len(r.PutValues) > 0 && len(r.PutValues[0]) > 0 {
		r.PutValues[0][0] ^= 0xff
		s.done = true
	}
	return r, err
}

// The rebuilt state is checked against the source's digest: a corrupted
// value is caught, the rebuilt directory discarded, and the install
// fetches the files instead.
func TestDeltaDigestCatchesCorruption(t *testing.T) {
	ff := &faultyFetcher{corrupt: true}
	a, b, bdb := twin(t, func(c *Config) { ff.GRPCFetcher = c.Fetcher.(*GRPCFetcher); c.Fetcher = ff })
	change(t, a.db)
	id, m := checkpoint(t, a.Store, a.db, 100, 2)
	dir := filepath.Join(t.TempDir(), "restored")
	st, err := installWithBase(t, b.Store, ship(t, a.Store, id, b.Store), dir, baseOf(bdb))
	if err != nil {
		t.Fatal(err)
	}
	if ff.syncs != 1 || st.Delta {
		t.Fatalf("a corrupted delta must not be used: %d syncs, %+v", ff.syncs, st)
	}
	if files, _ := distinctBytes(m, nil); st.FilesFetched != files {
		t.Fatalf("fallback fetched %d files, want all %d", st.FilesFetched, files)
	}
	sameState(t, dump(t, a.db), dumpDir(t, dir))
}

// A delta interrupted mid-stream leaves nothing behind: no directory, the
// received snapshot still pending. The next attempt completes.
func TestDeltaInterruptedLeavesNothing(t *testing.T) {
	ff := &faultyFetcher{lose: true, noFiles: true}
	a, b, bdb := twin(t, func(c *Config) { ff.GRPCFetcher = c.Fetcher.(*GRPCFetcher); c.Fetcher = ff })
	change(t, a.db)
	id, _ := checkpoint(t, a.Store, a.db, 100, 2)
	got := ship(t, a.Store, id, b.Store)
	dir := filepath.Join(t.TempDir(), "restored")
	if _, err := installWithBase(t, b.Store, got, dir, baseOf(bdb)); err == nil {
		t.Fatal("install succeeded with every transfer failing")
	}
	if exists(dir) {
		t.Fatal("a failed install left its directory")
	}
	if e, err := b.entry(got); err != nil || !e.pending {
		t.Fatalf("received snapshot: %+v, %v; want it still pending", e, err)
	}
	if l, _ := b.List(); len(l) != 0 {
		t.Fatalf("b lists %v after a failed install", l)
	}
	ff.lose, ff.noFiles = false, false
	st, err := installWithBase(t, b.Store, got, dir, baseOf(bdb))
	if err != nil || !st.Delta {
		t.Fatalf("retry: %+v, %v", st, err)
	}
	sameState(t, dump(t, a.db), dumpDir(t, dir))
}

// A base that shares little with the checkpoint stops the delta once it
// has shipped DeltaMaxShipped of the state; the install fetches files.
func TestDeltaTooBigFallsBackToFiles(t *testing.T) {
	a := newLeader(t)
	fill(t, a.db, "a", 0, 2000, 1000, 1)
	id, m := checkpoint(t, a.Store, a.db, 100, 2)
	b := newNode(t, "b", nil)
	bdb := openDB(t, filepath.Join(t.TempDir(), "bdb"))
	defer bdb.Close()
	fill(t, bdb, "a", 0, 2000, 1000, 2) // same keys, other values
	dir := filepath.Join(t.TempDir(), "restored")
	st, err := installWithBase(t, b.Store, ship(t, a.Store, id, b.Store), dir, baseOf(bdb))
	if err != nil {
		t.Fatal(err)
	}
	files, bytes := distinctBytes(m, nil)
	if st.Delta || st.FilesFetched != files {
		t.Fatalf("want a file install after an oversized delta: %+v", st)
	}
	limit := int64(b.cfg.DeltaMaxShipped * float64(m.StateBytes))
	if st.BytesFetched > bytes+limit+DefaultChunkSize+(4<<20) {
		t.Fatalf("fetched %d bytes: the delta did not stop near %d", st.BytesFetched-bytes, limit)
	}
	sameState(t, dump(t, a.db), dumpDir(t, dir))
}

// A new node's nearly empty state is not worth a delta: the install goes
// straight to the files, without asking the source for differences.
func TestDeltaSkippedForSmallBase(t *testing.T) {
	ff := &faultyFetcher{}
	a := newLeader(t)
	fill(t, a.db, "a", 0, 2000, 1000, 1)
	id, m := checkpoint(t, a.Store, a.db, 100, 2)
	b := newNode(t, "b", func(c *Config) { ff.GRPCFetcher = c.Fetcher.(*GRPCFetcher); c.Fetcher = ff })
	bdb := openDB(t, filepath.Join(t.TempDir(), "bdb"))
	defer bdb.Close()
	put(t, bdb, "a00000001", "something")
	dir := filepath.Join(t.TempDir(), "restored")
	st, err := installWithBase(t, b.Store, ship(t, a.Store, id, b.Store), dir, baseOf(bdb))
	if err != nil {
		t.Fatal(err)
	}
	if files, _ := distinctBytes(m, nil); ff.syncs != 0 || st.Delta || st.FilesFetched != files {
		t.Fatalf("want a plain file install: %d syncs, %+v", ff.syncs, st)
	}
	sameState(t, dump(t, a.db), dumpDir(t, dir))
}

func TestSyncServerRejects(t *testing.T) {
	a := newLeader(t)
	fill(t, a.db, "a", 0, 10, 100, 1)
	_, m := checkpoint(t, a.Store, a.db, 100, 2)
	f := newFetcher(t)
	src := Source{NodeID: "a", Addr: a.addr}
	run := func(reqs ...*snapshotpb.SyncRequest) error {
		s, err := f.Sync(context.Background(), src, reqs[0].CheckpointId)
		if err != nil {
			return err
		}
		for _, r := range reqs {
			if err := s.Send(r); err != nil {
				break
			}
		}
		_ = s.CloseSend()
		for {
			if _, err := s.Recv(); err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
		}
	}
	h := make([]byte, 16)
	for _, tc := range []struct {
		name string
		reqs []*snapshotpb.SyncRequest
		want codes.Code
	}{
		{"unknown checkpoint", []*snapshotpb.SyncRequest{{CheckpointId: "no-such"}}, codes.NotFound},
		{"keys out of order", []*snapshotpb.SyncRequest{{CheckpointId: m.ID, Keys: [][]byte{[]byte("b"), []byte("a")}, ValueHashes: append(h, h...)}}, codes.InvalidArgument},
		{"repeated key across messages", []*snapshotpb.SyncRequest{{CheckpointId: m.ID, Keys: [][]byte{[]byte("b")}, ValueHashes: h}, {Keys: [][]byte{[]byte("b")}, ValueHashes: h}}, codes.InvalidArgument},
		{"hash length", []*snapshotpb.SyncRequest{{CheckpointId: m.ID, Keys: [][]byte{[]byte("a")}, ValueHashes: h[:8]}}, codes.InvalidArgument},
		{"well-formed", []*snapshotpb.SyncRequest{{CheckpointId: m.ID, Keys: [][]byte{[]byte("a")}, ValueHashes: h}}, codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := status.Code(run(tc.reqs...)); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	// The scratch copies are gone.
	if ents, _ := os.ReadDir(a.scratch); len(ents) != 0 {
		t.Fatalf("scratch holds %d entries after the syncs", len(ents))
	}
}
