package snapshot

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

// Checkpointer is the fsm.Checkpointer of a Store: Snapshot takes a Pebble
// checkpoint and Persist turns it into a manifest; Restore installs a
// manifest, fetching only the files the store lacks. (It satisfies
// fsm.Checkpointer structurally; snapshot does not import fsm, so that fsm
// may default to it without a cycle.)
type Checkpointer struct {
	s *Store
}

// Checkpointer returns the store's fsm.Checkpointer. Use it together with
// the Store as raft's SnapshotStore: GC of the file store relies on the
// manifests the store holds.
func (s *Store) Checkpointer() *Checkpointer { return &Checkpointer{s: s} }

// Snapshot runs on the FSM goroutine with db quiescent at index, so it
// does only what must see exactly that state (Config.Extra, for example
// the producer offsets) and returns: the state machine applies nothing
// while it runs. Persist then takes the Pebble checkpoint through take
// (hard links, synced WAL) while applies continue; the checkpoint holds
// the state at some index at or above index (Manifest.StateIndex), then
// checksums and the manifest.
func (c *Checkpointer) Snapshot(db *pebble.DB, index, term uint64, take TakeFunc) (raft.FSMSnapshot, error) {
	s := c.s
	start := s.cfg.Now()
	dir := filepath.Join(s.scratch, fmt.Sprintf("ckpt-%020d-%d-%d", index, term, start.UnixNano()))
	snap := &fsmSnapshot{s: s, dir: dir, start: start, take: take, m: Manifest{
		Format: ManifestFormat, Index: index, Term: term,
		Source:       Source{NodeID: s.cfg.NodeID, Addr: s.cfg.Addr},
		Created:      start.UTC(),
		PebbleFormat: uint64(db.FormatMajorVersion()),
	}}
	if s.cfg.Extra != nil {
		extra, err := s.cfg.Extra(db, index, term)
		if err != nil {
			return nil, fmt.Errorf("snapshot: extra manifest data: %w", err)
		}
		snap.m.Extra = extra
	}
	snap.pause = s.cfg.Now().Sub(start)
	return snap, nil
}

// TakeFunc makes the Pebble checkpoint of a snapshot in dir (see
// fsm.TakeCheckpoint): the index and term of the state it holds, and the
// WAL files that are hard links to a live WAL, of which only the first
// walPrefix[name] bytes belong to the checkpoint. Each table for which
// reuse(its live path) returns a path — the store's link to the same
// file — is left out of dir.
type TakeFunc = func(dir string, reuse func(src string) (held string)) (index, term uint64, walPrefix map[string]int64, err error)

type fsmSnapshot struct {
	s     *Store
	dir   string
	start time.Time
	pause time.Duration
	take  TakeFunc
	m     Manifest
}

// Persist checksums the checkpoint's files (reading only those whose
// identity is not cached), adds them to the content store, and writes the
// manifest to the sink.
func (p *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	st, err := p.persist(sink)
	st.Err = err
	p.s.metrics.CheckpointCreated(st)
	if err != nil {
		_ = sink.Cancel()
		return err
	}
	return nil
}

func (p *fsmSnapshot) persist(sink raft.SnapshotSink) (CheckpointStats, error) {
	s := p.s
	m := &p.m
	m.ID = sink.ID()
	st := CheckpointStats{ID: m.ID, Index: m.Index, Term: m.Term, PauseTime: p.pause}
	phase := s.cfg.Now()
	lap := func(d *time.Duration) { now := s.cfg.Now(); *d, phase = now.Sub(phase), now }
	// The tables the store holds already (nearly all of them at a steady
	// state) stay out of the scratch checkpoint: held here until the
	// manifest that references them is committed.
	var reused []File
	reuse := func(src string) string { // called within take, one table at a time
		f, ok := s.holdStored(src)
		if !ok {
			return ""
		}
		reused = append(reused, f)
		return s.files.path(f.Checksum)
	}
	defer func() { s.release(reused) }()
	idx, term, prefix, err := p.take(p.dir, reuse)
	lap(&st.TakeTime)
	if err != nil {
		return st, fmt.Errorf("snapshot: checkpoint at %d: %w", m.Index, err)
	}
	if idx < m.Index {
		return st, fmt.Errorf("%w: checkpoint holds index %d, below the snapshot index %d", ErrCorrupt, idx, m.Index)
	}
	if idx > m.Index {
		m.StateIndex, m.StateTerm = idx, term
	}
	ents, err := os.ReadDir(p.dir)
	if err != nil {
		return st, err
	}
	paths := map[string]string{}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			return st, fmt.Errorf("snapshot: checkpoint holds %q, which is not a regular file", e.Name())
		}
		path := filepath.Join(p.dir, e.Name())
		var sum string
		var size int64
		var hashed bool // read whole to checksum it
		if n, ok := prefix[e.Name()]; ok {
			// A linked live WAL: its first n bytes, never modified here;
			// hashed from where the previous checkpoint's prefix ended.
			var read int64
			if sum, size, read, err = s.files.prefixSum(path, n); err == nil && size != n {
				err = fmt.Errorf("%w: linked WAL %s holds %d bytes, %d expected", ErrCorrupt, e.Name(), size, n)
			}
			if err != nil {
				return st, err
			}
			st.HashedBytes += read
			st.WALLinkedBytes += n
		} else {
			// trimWAL returns the checksum of a WAL copy it read whole
			// and did not cut, sparing a second read.
			var trimmed int64
			trimmed, sum, size, err = trimWAL(path)
			if err != nil {
				return st, fmt.Errorf("snapshot: trim %s: %w", e.Name(), err)
			}
			st.WALTrimmedBytes += trimmed
			hashed = sum != ""
		}
		if sum == "" {
			sum, size, hashed, err = s.files.checksum(path, immutable(e.Name()))
			if err != nil {
				return st, err
			}
		}
		if hashed {
			st.HashedBytes += size
		}
		m.Files = append(m.Files, File{Name: e.Name(), Size: size, Checksum: sum})
		paths[e.Name()] = path
		m.StateBytes += size
	}
	for _, f := range reused {
		if _, dup := paths[f.Name]; dup {
			return st, fmt.Errorf("snapshot: table %s both reused and linked into the checkpoint", f.Name)
		}
		m.Files = append(m.Files, f)
		m.StateBytes += f.Size
	}
	st.ReusedFiles = len(reused)
	sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].Name < m.Files[j].Name })
	lap(&st.FilesTime)
	s.hold(m.Files)
	defer s.release(m.Files) // after sink.Close: the committed manifest references them
	for _, f := range m.Files {
		if _, linked := paths[f.Name]; !linked {
			continue // reused: held by the store already
		}
		added, err := s.files.add(paths[f.Name], f)
		if err != nil {
			return st, fmt.Errorf("snapshot: store %s: %w", f.Name, err)
		}
		if added {
			st.StoredFiles++
			st.StoredBytes += f.Size
		}
	}
	if err := syncDir(s.files.dir); err != nil {
		return st, err
	}
	lap(&st.StoreTime)
	prev := s.latestInstalled()
	if prev != nil {
		m.Previous = prev.ID
	}
	prevSums := map[string]bool{}
	if prev != nil {
		for _, f := range prev.Files {
			prevSums[f.Checksum] = true
		}
	}
	for _, f := range m.Files {
		if prevSums[f.Checksum] {
			m.SharedFiles++
			m.SharedBytes += f.Size
		} else {
			m.NewFiles++
			m.NewBytes += f.Size
		}
	}
	m.Duration = s.cfg.Now().Sub(p.start)
	markOwn(sink, m)
	b, err := m.Encode()
	if err != nil {
		return st, err
	}
	if _, err := sink.Write(b); err != nil {
		return st, err
	}
	if err := sink.Close(); err != nil {
		return st, err
	}
	lap(&st.CommitTime)
	st.Duration = s.cfg.Now().Sub(p.start)
	st.Files, st.Bytes = len(m.Files), m.StateBytes
	st.NewFiles, st.NewBytes, st.SharedFiles, st.SharedBytes = m.NewFiles, m.NewBytes, m.SharedFiles, m.SharedBytes
	stateIndex, _ := m.State()
	s.log.Info("snapshot: checkpoint created", "id", m.ID, "index", m.Index, "state_index", stateIndex, "files", st.Files,
		"bytes", st.Bytes, "new_bytes", st.NewBytes, "reused_files", st.ReusedFiles, "hashed_bytes", st.HashedBytes, "took", st.Duration,
		"pause", st.PauseTime, "take", st.TakeTime, "files_time", st.FilesTime, "store", st.StoreTime, "commit", st.CommitTime)
	return st, nil
}

// Release removes the scratch checkpoint (its files live on in the store).
func (p *fsmSnapshot) Release() { _ = os.RemoveAll(p.dir) }

// latestInstalled returns the newest installed checkpoint's manifest, or nil.
func (s *Store) latestInstalled() *Manifest {
	ents, err := s.entries()
	if err != nil {
		return nil
	}
	for _, e := range ents {
		if e.pending || e.meta.CheckpointID == "" {
			continue
		}
		if m, err := s.manifest(e); err == nil {
			return m
		}
	}
	return nil
}

// markOwn marks a sink of this package's Store as holding this node's own
// checkpoint, m, which is what the caller writes to it, encoded (see
// sink.markOwn); other sinks are left alone.
func markOwn(k raft.SnapshotSink, m *Manifest) {
	if o, ok := k.(interface{ markOwn(*Manifest) }); ok {
		o.markOwn(m)
	}
}
