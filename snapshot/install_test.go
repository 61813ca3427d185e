package snapshot

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// leader is a source node: a live Pebble DB and its store.
type leader struct {
	*node
	db *pebble.DB
}

func newLeader(t *testing.T) *leader {
	t.Helper()
	n := newNode(t, "a", nil)
	db := openDB(t, filepath.Join(t.TempDir(), "db"))
	t.Cleanup(func() { _ = db.Close() })
	return &leader{node: n, db: db}
}

func distinctBytes(m *Manifest, skip *Manifest) (files int, bytes int64) {
	for _, f := range m.uniqueFiles() {
		if skip != nil && contains(skip, f.Checksum) {
			continue
		}
		files++
		bytes += f.Size
	}
	return files, bytes
}

func TestIncrementalInstallOverGRPC(t *testing.T) {
	a := newLeader(t)
	for i := 0; i < 4; i++ {
		fill(t, a.db, string(rune('a'+i)), 0, 1000, 1000, int64(i))
	}
	id1, m1 := checkpoint(t, a.Store, a.db, 100, 2)
	b := newNode(t, "b", nil)

	// A brand-new node fetches everything (the full-transfer fallback is
	// the same path).
	got1 := ship(t, a.Store, id1, b.Store)
	if l, _ := b.List(); len(l) != 0 {
		t.Fatalf("received snapshot listed before its install: %v", l)
	}
	dir1 := filepath.Join(t.TempDir(), "db1")
	st, err := restore(t, b.Store, got1, dir1)
	if err != nil {
		t.Fatal(err)
	}
	wantFiles, wantBytes := distinctBytes(m1, nil)
	if st.FilesFetched != wantFiles || st.BytesFetched != wantBytes || st.FilesReused != 0 {
		t.Fatalf("first install fetched %d files / %d bytes, reused %d; want %d / %d / 0", st.FilesFetched, st.BytesFetched, st.FilesReused, wantFiles, wantBytes)
	}
	sameState(t, dump(t, a.db), dumpDir(t, dir1))
	if l, _ := b.List(); len(l) != 1 || l[0].ID != got1 || l[0].Index != 100 || l[0].Term != 2 {
		t.Fatalf("installed snapshot not listed: %v", l)
	}
	if srv := a.m.Totals(); srv.BytesServed != wantBytes {
		t.Fatalf("source served %d bytes, want %d", srv.BytesServed, wantBytes)
	}

	// More writes: a new SST, overwrites and a delete in the WAL.
	fill(t, a.db, "e", 0, 200, 1000, 7)
	put(t, a.db, "a00000001", "overwritten")
	if err := a.db.Delete([]byte("b00000002"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	id2, m2 := checkpoint(t, a.Store, a.db, 200, 2)
	got2 := ship(t, a.Store, id2, b.Store)
	dir2 := filepath.Join(t.TempDir(), "db2")
	st, err = restore(t, b.Store, got2, dir2)
	if err != nil {
		t.Fatal(err)
	}
	wantFiles, wantBytes = distinctBytes(m2, m1)
	reusedFiles, reusedBytes := 0, int64(0)
	for _, f := range m2.uniqueFiles() {
		if contains(m1, f.Checksum) {
			reusedFiles++
			reusedBytes += f.Size
		}
	}
	if st.FilesFetched != wantFiles || st.BytesFetched != wantBytes {
		t.Fatalf("second install fetched %d files / %d bytes, want only the missing %d / %d", st.FilesFetched, st.BytesFetched, wantFiles, wantBytes)
	}
	if st.FilesReused != reusedFiles || st.BytesReused != reusedBytes || reusedFiles < 4 {
		t.Fatalf("second install reused %d files / %d bytes, want %d / %d", st.FilesReused, st.BytesReused, reusedFiles, reusedBytes)
	}
	if st.BytesFetched*4 > m2.StateBytes {
		t.Fatalf("incremental install shipped %d of %d bytes", st.BytesFetched, m2.StateBytes)
	}
	sameState(t, dump(t, a.db), dumpDir(t, dir2))
	// The follower now serves what it installed, by checksum.
	c := newNode(t, "c", func(cfg *Config) {
		cfg.Sources = func(*Manifest) []Source { return []Source{{NodeID: "b", Addr: b.addr}} }
	})
	dead := listen(t)
	deadAddr := dead.Addr().String()
	_ = dead.Close()
	// The manifest's source is gone: c must fall back to b, which holds
	// every file since its install.
	m := *m2
	m.Source = Source{NodeID: "gone", Addr: deadAddr}
	enc, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	dir3 := filepath.Join(t.TempDir(), "db3")
	if _, err := c.Install(context.Background(), strings.NewReader(string(enc)), dir3); err != nil {
		t.Fatal(err)
	}
	sameState(t, dump(t, a.db), dumpDir(t, dir3))
}

func TestInstallFailsCleanlyWhenSourceUnreachable(t *testing.T) {
	a := newLeader(t)
	fill(t, a.db, "a", 0, 100, 100, 1)
	id, _ := checkpoint(t, a.Store, a.db, 10, 1)
	lis := listen(t)
	addr := lis.Addr().String()
	_ = lis.Close()
	b := newNode(t, "b", nil)
	_, rc, _ := a.Open(id)
	m, err := DecodeManifest(rc)
	_ = rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	m.Source.Addr, m.Holder = addr, nil // the creator unreachable, no other holder named
	enc, _ := m.Encode()
	dir := filepath.Join(t.TempDir(), "db")
	st, err := b.Install(context.Background(), strings.NewReader(string(enc)), dir)
	if err == nil {
		t.Fatal("install from an unreachable source succeeded")
	}
	if _, serr := os.Stat(dir); !os.IsNotExist(serr) {
		t.Fatalf("failed install left %s behind", dir)
	}
	if st.Err == nil || b.m.Totals().InstallFailures != 1 {
		t.Fatalf("failure not reported: %+v", st)
	}
	// Without any fetcher the error says so.
	c := newStore(t, t.TempDir(), "c", "", nil)
	if _, err := c.Install(context.Background(), strings.NewReader(string(enc)), dir); !errors.Is(err, ErrNoSource) {
		t.Fatalf("install without fetcher: %v", err)
	}
}

// cutFetcher delivers at most `budget` bytes of the first fetch of one
// file, then fails the transfer; it records every request.
type cutFetcher struct {
	Fetcher
	sum    string
	budget int64

	mu        sync.Mutex
	cut       bool
	requests  []int64 // offsets requested for sum
	delivered []int64 // bytes delivered per request for sum
}

func (c *cutFetcher) Fetch(ctx context.Context, from Source, f File, off int64) (io.ReadCloser, error) {
	rc, err := c.Fetcher.Fetch(ctx, from, f, off)
	if err != nil || f.Checksum != c.sum {
		return rc, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.requests = append(c.requests, off)
	c.delivered = append(c.delivered, 0)
	cr := &countingReader{rc: rc, n: &c.delivered[len(c.delivered)-1], mu: &c.mu, limit: -1}
	if !c.cut {
		c.cut = true
		cr.limit = c.budget
	}
	return cr, nil
}

type countingReader struct {
	rc    io.ReadCloser
	mu    *sync.Mutex
	n     *int64
	limit int64 // -1: none
}

var errCut = errors.New("connection cut by test")

func (r *countingReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.limit >= 0 {
		if *r.n >= r.limit {
			return 0, errCut
		}
		p = p[:min(int64(len(p)), r.limit-*r.n)]
	}
	n, err := r.rc.Read(p)
	*r.n += int64(n)
	return n, err
}

func (r *countingReader) Close() error { return r.rc.Close() }

func largestSST(m *Manifest) File {
	var best File
	for _, f := range m.Files {
		if immutable(f.Name) && f.Size > best.Size {
			best = f
		}
	}
	return best
}

func TestInterruptedFetchResumes(t *testing.T) {
	a := newLeader(t)
	fill(t, a.db, "a", 0, 3000, 1000, 1) // one ~3 MiB SST: several chunks
	id, m := checkpoint(t, a.Store, a.db, 10, 1)
	big := largestSST(m)
	const budget = 600_000 // mid-chunk
	if big.Size < 2*budget {
		t.Fatalf("largest SST has %d bytes; the test needs more", big.Size)
	}
	cut := &cutFetcher{sum: big.Checksum, budget: budget}
	b := newNode(t, "b", func(c *Config) {
		c.FetchAttempts = 1
		f := newFetcher(t)
		f.ChunkSize = 256 << 10
		cut.Fetcher = f
		c.Fetcher = cut
	})
	got := ship(t, a.Store, id, b.Store)
	dir := filepath.Join(t.TempDir(), "db")
	if _, err := restore(t, b.Store, got, dir); !errors.Is(err, errCut) {
		t.Fatalf("interrupted install: %v", err)
	}
	// Nothing half-fetched is in a DB directory (there is none), and the
	// partial file keeps exactly what arrived.
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("interrupted install left %s", dir)
	}
	fi, err := os.Stat(b.files.partialPath(big.Checksum))
	if err != nil || fi.Size() != budget {
		t.Fatalf("partial file: %v, %v; want %d bytes", fi, err, budget)
	}
	if _, err := os.Stat(b.files.path(big.Checksum)); !os.IsNotExist(err) {
		t.Fatal("a partial file was published as complete")
	}

	st, err := restore(t, b.Store, got, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(cut.requests) != 2 || cut.requests[1] != budget {
		t.Fatalf("requests for the cut file at offsets %v, want [0 %d]", cut.requests, budget)
	}
	if retry := cut.delivered[1]; retry != big.Size-budget || retry >= big.Size {
		t.Fatalf("retry fetched %d bytes of a %d-byte file, want %d", retry, big.Size, big.Size-budget)
	}
	if st.FilesResumed != 1 || st.BytesResumed != budget {
		t.Fatalf("stats %+v", st)
	}
	for _, p := range listDir(t, dir) {
		if strings.HasSuffix(p, partialSuffix) {
			t.Fatalf("partial file in the DB directory: %s", p)
		}
	}
	sameState(t, dump(t, a.db), dumpDir(t, dir))
}

func TestCorruptPartialIsDiscarded(t *testing.T) {
	a := newLeader(t)
	fill(t, a.db, "a", 0, 2000, 1000, 1)
	id, m := checkpoint(t, a.Store, a.db, 10, 1)
	big := largestSST(m)
	b := newNode(t, "b", func(c *Config) { c.FetchAttempts = 2 })
	// A partial file left by a crash with garbage in it (unsynced data).
	garbage := make([]byte, 100000)
	for i := range garbage {
		garbage[i] = 0x5a
	}
	if err := os.WriteFile(b.files.partialPath(big.Checksum), garbage, 0o644); err != nil {
		t.Fatal(err)
	}
	got := ship(t, a.Store, id, b.Store)
	dir := filepath.Join(t.TempDir(), "db")
	st, err := restore(t, b.Store, got, dir)
	if err != nil {
		t.Fatal(err)
	}
	// First attempt resumed, failed the whole-file checksum and quarantined
	// the partial; the second fetched from zero.
	if st.FilesResumed != 1 || st.BytesFetched != (big.Size-int64(len(garbage)))+distinct(m) {
		t.Fatalf("stats %+v (file %d bytes)", st, big.Size)
	}
	if q, _ := b.Quarantined(); len(q) != 1 || !strings.HasPrefix(q[0].Name, big.Checksum+partialSuffix) {
		t.Fatalf("quarantine holds %+v", q)
	}
	sameState(t, dump(t, a.db), dumpDir(t, dir))
}

func distinct(m *Manifest) int64 { _, n := distinctBytes(m, nil); return n }

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptStoredFileIsQuarantinedAndRefetched(t *testing.T) {
	a := newLeader(t)
	for i := 0; i < 3; i++ {
		fill(t, a.db, string(rune('a'+i)), 0, 500, 1000, int64(i))
	}
	id1, m1 := checkpoint(t, a.Store, a.db, 10, 1)
	b := newNode(t, "b", nil)
	got1 := ship(t, a.Store, id1, b.Store)
	if _, err := restore(t, b.Store, got1, filepath.Join(t.TempDir(), "db")); err != nil {
		t.Fatal(err)
	}
	ssts := []File{}
	for _, f := range m1.Files {
		if immutable(f.Name) {
			ssts = append(ssts, f)
		}
	}
	if r, err := b.Verify(context.Background(), got1); err != nil || r.Status != VerifyOK || r.Keys != 1500 {
		t.Fatalf("verify before corruption: %+v, %v", r, err)
	}

	// Bit rot in a stored file: Verify reports it and moves it aside.
	flipByte(t, b.files.path(ssts[0].Checksum), ssts[0].Size/2)
	r, err := b.Verify(context.Background(), got1)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != VerifyCorrupt || len(r.Corrupt) != 1 || r.Corrupt[0].Checksum != ssts[0].Checksum {
		t.Fatalf("verify after corruption: %+v", r)
	}
	infos, _ := b.Checkpoints()
	if infos[0].Verified.Status != VerifyCorrupt || infos[0].Missing != 1 {
		t.Fatalf("catalog after verify: %+v", infos[0])
	}
	// Bit rot Verify has not seen: the install finds it.
	flipByte(t, b.files.path(ssts[1].Checksum), 10)

	put(t, a.db, "new", "key")
	id2, _ := checkpoint(t, a.Store, a.db, 20, 1)
	got2 := ship(t, a.Store, id2, b.Store)
	dir := filepath.Join(t.TempDir(), "db2")
	st, err := restore(t, b.Store, got2, dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.FilesQuarantined != 1 {
		t.Fatalf("install quarantined %d files, want 1", st.FilesQuarantined)
	}
	if st.BytesFetched < ssts[0].Size+ssts[1].Size {
		t.Fatalf("install fetched %d bytes, less than the two corrupt SSTs", st.BytesFetched)
	}
	for _, f := range ssts[:2] {
		if sum, _, err := hashFile(b.files.path(f.Checksum)); err != nil || sum != f.Checksum {
			t.Fatalf("%s not repaired: %s, %v", f.Name, sum, err)
		}
	}
	if q, _ := b.Quarantined(); len(q) != 2 {
		t.Fatalf("quarantine holds %d files, want 2", len(q))
	}
	sameState(t, dump(t, a.db), dumpDir(t, dir))
	if r, err := b.Verify(context.Background(), got2); err != nil || r.Status != VerifyOK {
		t.Fatalf("verify after repair: %+v, %v", r, err)
	}
}

type restoreFunc func(r io.Reader, dir string) error

func (f restoreFunc) Restore(r io.Reader, dir string) error { return f(r, dir) }

func TestForeignPayloadGoesToFallback(t *testing.T) {
	payload := "a tar stream from fsm.FullCheckpointer, say"
	var got, gotDir string
	s := newStore(t, t.TempDir(), "n1", "", func(c *Config) {
		c.Fallback = restoreFunc(func(r io.Reader, dir string) error {
			b, err := io.ReadAll(r)
			got, gotDir = string(b), dir
			if err != nil {
				return err
			}
			return os.Mkdir(dir, 0o755)
		})
	})
	dir := filepath.Join(t.TempDir(), "db")
	if _, err := s.Install(context.Background(), strings.NewReader(payload), dir); err != nil {
		t.Fatal(err)
	}
	if got != payload || gotDir != dir {
		t.Fatalf("fallback got %q into %q", got, gotDir)
	}
	plain := newStore(t, t.TempDir(), "n1", "", nil)
	if _, err := plain.Install(context.Background(), strings.NewReader(payload), filepath.Join(t.TempDir(), "db")); !errors.Is(err, ErrNotManifest) {
		t.Fatalf("foreign payload without fallback: %v", err)
	}
}
