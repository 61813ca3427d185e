package snapshot

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/zeebo/xxh3"
)

// Store is cairn's raft.SnapshotStore. A raft snapshot here is a small
// manifest; the files it names live once each in a content-addressed file
// store beside it, shared by every checkpoint that contains them.
//
// Layout under Config.Dir:
//
//	manifests/<id>/meta.json   raft.SnapshotMeta + payload checksum
//	manifests/<id>/state       the payload raft wrote (a Manifest)
//	manifests/<id>/PENDING     received from a peer, not installed yet
//	manifests/<id>/PINNED      exempt from retention
//	manifests/<id>/verify.json last Verify result
//	files/<checksum>           checkpoint file content
//	files/<checksum>.partial   a fetch in progress (resume offset = length)
//	quarantine/                files found corrupt, moved aside
//	trash/                     collected files, unlinked in the background
//	scratch/                   Pebble checkpoints being ingested
type Store struct {
	cfg     Config
	log     *slog.Logger
	metrics Metrics
	mdir    string
	scratch string
	files   *fileStore
	prehash *prehasher

	// mu serialises manifest commits, retention, GC and pins, and guards
	// holds: GC runs entirely under mu, and a file is held before it is
	// linked into (or looked up in) the store, so GC never removes a file
	// that a checkpoint or install in progress relies on.
	mu    sync.Mutex
	holds map[string]int

	manifests manifestCache // decoded manifests of committed snapshots

	installMu sync.Mutex  // one install at a time: a partial file has one writer
	trashBusy atomic.Bool // a goroutine is emptying trash/
}

var _ raft.SnapshotStore = (*Store)(nil)

// Open opens (or creates) a store in cfg.Dir. It finishes what a crash
// interrupted: half-written manifests and scratch checkpoints are removed,
// partial fetches are kept for resuming.
func Open(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.fillDefaults()
	s := &Store{cfg: cfg, log: cfg.Logger.With("component", "snapshot"), metrics: cfg.Metrics,
		mdir: filepath.Join(cfg.Dir, "manifests"), scratch: filepath.Join(cfg.Dir, "scratch"),
		holds: map[string]int{}}
	for _, d := range []string{s.mdir, s.scratch} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := clearDir(s.scratch); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(s.mdir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".tmp") {
			if err := os.RemoveAll(filepath.Join(s.mdir, e.Name())); err != nil {
				return nil, err
			}
		}
	}
	if s.files, err = newFileStore(cfg.Dir); err != nil {
		return nil, err
	}
	s.prehash = newPrehasher(s.files)
	s.startEmptyingTrash() // what a crash left there
	s.retain()
	return s, nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.cfg.Dir }

type storedMeta struct {
	raft.SnapshotMeta
	Checksum string `json:"state_xxh3_128"`
	// CheckpointID is the payload's Manifest.ID ("" if not a manifest).
	CheckpointID string    `json:"checkpoint_id,omitempty"`
	Stored       time.Time `json:"stored"`
}

type entry struct {
	meta    storedMeta
	dir     string
	pending bool
	pinned  bool
}

func (e *entry) id() string { return e.meta.ID }

// newer orders snapshots like raft's file store: term, then index, then id.
func newer(a, b *raft.SnapshotMeta) bool {
	if a.Term != b.Term {
		return a.Term > b.Term
	}
	if a.Index != b.Index {
		return a.Index > b.Index
	}
	return a.ID > b.ID
}

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }

// entries lists committed snapshots, newest first.
func (s *Store) entries() ([]*entry, error) {
	ents, err := os.ReadDir(s.mdir)
	if err != nil {
		return nil, err
	}
	var out []*entry
	for _, d := range ents {
		if !d.IsDir() || strings.HasSuffix(d.Name(), ".tmp") {
			continue
		}
		e, err := s.entry(d.Name())
		if err != nil {
			s.log.Warn("snapshot: skipping unreadable snapshot", "id", d.Name(), "err", err)
			continue
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return newer(&out[i].meta.SnapshotMeta, &out[j].meta.SnapshotMeta) })
	return out, nil
}

func (s *Store) entry(id string) (*entry, error) {
	if !validName(id) || strings.HasSuffix(id, ".tmp") {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	dir := filepath.Join(s.mdir, id)
	b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	e := &entry{dir: dir}
	if err := json.Unmarshal(b, &e.meta); err != nil {
		return nil, fmt.Errorf("%w: %s/meta.json: %w", ErrCorrupt, id, err)
	}
	e.pending = exists(filepath.Join(dir, "PENDING"))
	e.pinned = exists(filepath.Join(dir, "PINNED"))
	return e, nil
}

// Create implements raft.SnapshotStore.
func (s *Store) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, _ raft.Transport) (raft.SnapshotSink, error) {
	if version < raft.SnapshotVersionMin || version > raft.SnapshotVersionMax {
		return nil, fmt.Errorf("snapshot: unsupported snapshot version %d", version)
	}
	base := fmt.Sprintf("%d-%d-%d", term, index, s.cfg.Now().UnixMilli())
	id := base
	for i := 1; exists(filepath.Join(s.mdir, id)) || exists(filepath.Join(s.mdir, id+".tmp")); i++ {
		id = fmt.Sprintf("%s.%d", base, i)
	}
	tmp := filepath.Join(s.mdir, id+".tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(tmp, "state"))
	if err != nil {
		_ = os.RemoveAll(tmp)
		return nil, err
	}
	return &sink{s: s, tmp: tmp, f: f, h: xxh3.New(), meta: storedMeta{SnapshotMeta: raft.SnapshotMeta{
		Version: version, ID: id, Index: index, Term: term,
		Configuration: configuration, ConfigurationIndex: configurationIndex,
	}}}, nil
}

// List implements raft.SnapshotStore: installed snapshots, newest first.
// A snapshot received from a peer stays out of the list until its install
// completed, so that a crash in between never makes raft believe the state
// machine holds a state it does not.
func (s *Store) List() ([]*raft.SnapshotMeta, error) {
	ents, err := s.entries()
	if err != nil {
		return nil, err
	}
	out := []*raft.SnapshotMeta{}
	for _, e := range ents {
		if !e.pending {
			m := e.meta.SnapshotMeta
			out = append(out, &m)
		}
	}
	return out, nil
}

// Open implements raft.SnapshotStore. The reader fails with ErrCorrupt at
// its end if the payload does not match the checksum taken when it was
// written.
//
// It is what raft sends to a follower: an installed manifest goes out with
// Holder set to this node (its FileService address), which holds all of
// its files.
func (s *Store) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	e, err := s.entry(id)
	if err != nil {
		return nil, nil, err
	}
	meta, rc, err := s.openStored(e)
	if err != nil || s.cfg.Addr == "" || e.meta.CheckpointID == "" || e.pending {
		// Not a manifest; or one received and not yet installed, whose
		// files this node does not hold (raft reopens it to install it):
		// as stored, naming whoever sent it.
		return meta, rc, err
	}
	b, err := io.ReadAll(rc)
	_ = rc.Close()
	if err != nil {
		return nil, nil, err
	}
	m, err := decodeManifest(b)
	if err != nil {
		return nil, nil, err
	}
	m.Holder = &Source{NodeID: s.cfg.NodeID, Addr: s.cfg.Addr}
	if b, err = m.Encode(); err != nil {
		return nil, nil, err
	}
	out := *meta
	out.Size = int64(len(b))
	return &out, io.NopCloser(bytes.NewReader(b)), nil
}

// openStored opens a snapshot's payload as stored, verified as it is read.
func (s *Store) openStored(e *entry) (*raft.SnapshotMeta, io.ReadCloser, error) {
	f, err := os.Open(filepath.Join(e.dir, "state"))
	if err != nil {
		return nil, nil, err
	}
	m := e.meta.SnapshotMeta
	return &m, &checkedReader{f: f, h: xxh3.New(), want: e.meta.Checksum, size: m.Size, id: e.id()}, nil
}

type checkedReader struct {
	f       *os.File
	h       *xxh3.Hasher
	want    string
	n, size int64
	id      string
}

func (r *checkedReader) Read(p []byte) (int, error) {
	n, err := r.f.Read(p)
	_, _ = r.h.Write(p[:n])
	r.n += int64(n)
	if errors.Is(err, io.EOF) && (r.n != r.size || checksumHex(r.h.Sum128()) != r.want) {
		return n, fmt.Errorf("%w: snapshot %s payload does not match its checksum", ErrCorrupt, r.id)
	}
	return n, err
}

func (r *checkedReader) Close() error { return r.f.Close() }

// readPayload returns a snapshot's payload, verified.
func (s *Store) readPayload(e *entry) ([]byte, error) {
	_, rc, err := s.openStored(e)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// manifest returns a snapshot's manifest; ErrNotManifest for a foreign
// payload. A committed payload never changes, so its decoded manifest is
// kept (manifestCache): a create reads the previous one, retention every
// kept one, the catalog the new one. The payload's checksum is verified
// when it is read from disk, here the first time and by Open always.
func (s *Store) manifest(e *entry) (*Manifest, error) {
	if e.meta.CheckpointID == "" {
		return nil, fmt.Errorf("%w: snapshot %s", ErrNotManifest, e.id())
	}
	if m := s.manifests.get(e.id(), e.meta.Checksum); m != nil {
		return m, nil
	}
	b, err := s.readPayload(e)
	if err != nil {
		return nil, err
	}
	m, err := decodeManifest(b)
	if err != nil {
		return nil, err
	}
	s.manifests.put(e.id(), e.meta.Checksum, m)
	return m, nil
}

type sink struct {
	s        *Store
	own      *Manifest // what this store's own checkpoint paths write (markOwn)
	tmp      string
	f        *os.File
	h        *xxh3.Hasher
	meta     storedMeta
	done     bool
	failed   error
	closeErr error
}

func (k *sink) ID() string { return k.meta.ID }

// markOwn says the manifest written to k, m encoded, describes this
// node's own state (a checkpoint it took, adopted or rebuilt), not one
// received from a peer. Commit takes it as it is instead of decoding the
// payload again.
func (k *sink) markOwn(m *Manifest) { k.own = m }

func (k *sink) Write(p []byte) (int, error) {
	if k.done {
		return 0, errors.New("snapshot: write to a closed sink")
	}
	n, err := k.f.Write(p)
	_, _ = k.h.Write(p[:n])
	k.meta.Size += int64(n)
	if err != nil {
		k.failed = err
	}
	return n, err
}

func (k *sink) Cancel() error {
	if k.done {
		return nil
	}
	k.done = true
	_ = k.f.Close()
	return os.RemoveAll(k.tmp)
}

// Close commits the snapshot: payload and metadata are made durable in a
// temporary directory, which is then renamed into place (the commit point).
// Only after that are older snapshots dropped and unreferenced files
// collected.
//
// Close is idempotent: raft closes the sink after Persist returns, and
// Persist closes it too (as the FSMSnapshot contract asks); a second Close
// returns the first one's result.
func (k *sink) Close() error {
	if k.done {
		return k.closeErr
	}
	k.done = true
	k.closeErr = k.commit()
	if k.closeErr != nil {
		_ = os.RemoveAll(k.tmp)
		return k.closeErr
	}
	k.s.retain()
	return nil
}

func (k *sink) commit() error {
	s := k.s
	if k.failed != nil {
		_ = k.f.Close()
		return k.failed
	}
	if err := k.f.Sync(); err != nil {
		_ = k.f.Close()
		return err
	}
	if err := k.f.Close(); err != nil {
		return err
	}
	k.meta.Checksum = checksumHex(k.h.Sum128())
	k.meta.Stored = s.cfg.Now().UTC()
	pending := false
	switch {
	case k.own != nil:
		k.meta.CheckpointID = k.own.ID
	case k.meta.Size <= maxManifestBytes:
		b, err := os.ReadFile(filepath.Join(k.tmp, "state"))
		if err != nil {
			return err
		}
		if m, err := decodeManifest(b); err == nil {
			k.meta.CheckpointID = m.ID
			// A manifest this store did not write itself (Persist, Adopt,
			// a delta rebuild) reached it through raft's InstallSnapshot:
			// the FSM does not hold it until Restore has fetched its files
			// and swapped the DB. Not the manifest's Source: a node wiped
			// and re-added under the same id receives checkpoints "from
			// itself" whose files it no longer has (listed as installed,
			// a failed install made every restart try to restore it and
			// exit: jepsen membership+snapshot).
			pending = true
		} else if !errors.Is(err, ErrNotManifest) {
			return err
		}
	}
	if pending {
		if err := writeFileSync(filepath.Join(k.tmp, "PENDING"), nil); err != nil {
			return err
		}
	}
	mb, err := json.Marshal(&k.meta)
	if err != nil {
		return err
	}
	if err := writeFileSync(filepath.Join(k.tmp, "meta.json"), mb); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.Rename(k.tmp, filepath.Join(s.mdir, k.meta.ID)); err != nil {
		return err
	}
	if k.own != nil {
		s.manifests.put(k.meta.ID, k.meta.Checksum, k.own)
	}
	return syncDir(s.mdir)
}

// hold marks checksums in use so that GC keeps them; release undoes it.
func (s *Store) hold(files []File) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range files {
		s.holds[f.Checksum]++
	}
}

// holdStored holds the table at src if the store holds its very inode
// (fileStore.storedAs), atomically with respect to collect.
func (s *Store) holdStored(src string) (File, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.files.storedAs(src)
	if ok {
		s.holds[f.Checksum]++
	}
	return f, ok
}

func (s *Store) release(files []File) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range files {
		if s.holds[f.Checksum]--; s.holds[f.Checksum] <= 0 {
			delete(s.holds, f.Checksum)
		}
	}
}

// retain applies retention and collects unreferenced files, logging
// failures: the snapshot that triggered it is already durable.
func (s *Store) retain() {
	st, err := s.collect()
	if err != nil {
		s.log.Warn("snapshot: retention", "err", err)
	}
	s.metrics.GCDone(st)
}

// collect keeps the newest Retain installed snapshots, every pinned one,
// and the most recently received pending one (an install in flight or
// being retried); it then deletes the manifests of the others, and last the files that no kept manifest references. Crash
// safety: a manifest is durable before anything it supersedes is removed,
// and files go only after the manifests that referenced them.
func (s *Store) collect() (GCStats, error) {
	var st GCStats
	s.mu.Lock()
	defer s.mu.Unlock()
	ents, err := s.entries()
	if err != nil {
		return st, err
	}
	// The most recently received pending snapshot is the install raft is
	// running or will retry; older pending ones were superseded.
	var lastPending *entry
	for _, e := range ents {
		if e.pending && (lastPending == nil || e.meta.Stored.After(lastPending.meta.Stored) ||
			e.meta.Stored.Equal(lastPending.meta.Stored) && e.id() > lastPending.id()) {
			lastPending = e
		}
	}
	var keep, drop []*entry
	installed := 0
	for _, e := range ents {
		switch {
		case e.pinned || e == lastPending:
			keep = append(keep, e)
		case !e.pending && installed < s.cfg.Retain:
			keep = append(keep, e)
			installed++
		default:
			drop = append(drop, e)
		}
	}
	kept := make(map[string]bool, len(keep))
	for _, e := range keep {
		kept[e.id()] = true
	}
	s.manifests.prune(func(id string) bool { return kept[id] })
	for _, e := range drop {
		if err := os.RemoveAll(e.dir); err != nil {
			return st, err
		}
		st.SnapshotsDeleted++
	}
	if len(drop) > 0 {
		if err := syncDir(s.mdir); err != nil {
			return st, err
		}
	}
	refs := make(map[string]bool, len(s.holds))
	for sum := range s.holds {
		refs[sum] = true
	}
	for _, e := range keep {
		m, err := s.manifest(e)
		if errors.Is(err, ErrNotManifest) {
			continue
		}
		if err != nil {
			// Never guess what an unreadable manifest references.
			st.Skipped = fmt.Sprintf("snapshot %s unreadable: %v", e.id(), err)
			return st, fmt.Errorf("snapshot: file collection skipped: %s unreadable: %w", e.id(), err)
		}
		for _, f := range m.Files {
			refs[f.Checksum] = true
		}
	}
	complete, partial, err := s.files.names()
	if err != nil {
		return st, err
	}
	removed := false
	for _, sum := range complete {
		if refs[sum] {
			continue
		}
		size, err := s.files.discard(sum)
		if err != nil {
			return st, err
		}
		st.FilesDeleted++
		st.BytesDeleted += size
		removed = true
	}
	for _, sum := range partial {
		if !refs[sum] {
			if err := os.Remove(s.files.partialPath(sum)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return st, err
			}
			removed = true
		}
	}
	if removed {
		if err := syncDir(s.files.dir); err != nil {
			return st, err
		}
		s.startEmptyingTrash()
	}
	return st, nil
}

// startEmptyingTrash unlinks the trash in the background, one goroutine at
// a time, so that freeing the blocks of collected files is not part of the
// checkpoint (or install) whose commit collected them. It frees as much
// as before, later: the concurrent writes it costs are the same, but a
// create returns without waiting for it.
func (s *Store) startEmptyingTrash() {
	if !s.trashBusy.CompareAndSwap(false, true) {
		return
	}
	go func() {
		for {
			n, err := s.files.emptyTrash()
			if err != nil {
				s.log.Warn("snapshot: emptying trash", "err", err)
			}
			if n == 0 || err != nil {
				s.trashBusy.Store(false)
				// A collect that ran after the last ReadDir found the flag
				// set and left its files to this goroutine: look again.
				if err != nil || !s.files.trashHolds() || !s.trashBusy.CompareAndSwap(false, true) {
					return
				}
			}
		}
	}()
}

// markInstalled makes pending snapshots of m visible to List: the FSM now
// holds (or is about to swap in) their state.
func (s *Store) markInstalled(m *Manifest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ents, err := s.entries()
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.pending && e.meta.CheckpointID == m.ID {
			if err := os.Remove(filepath.Join(e.dir, "PENDING")); err != nil {
				return err
			}
			if err := syncDir(e.dir); err != nil {
				return err
			}
		}
	}
	return nil
}

func clearDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}
