package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

// VerifyStatus is the outcome of the last Verify of a snapshot.
type VerifyStatus string

const (
	VerifyUnverified VerifyStatus = "unverified"
	VerifyOK         VerifyStatus = "ok"
	VerifyCorrupt    VerifyStatus = "corrupt"    // files did not match: quarantined
	VerifyIncomplete VerifyStatus = "incomplete" // files missing locally
	VerifyUnopenable VerifyStatus = "unopenable" // files fine, Pebble refused the directory
)

// Info summarises one retained snapshot (the CLI's list).
type Info struct {
	ID           string // raft snapshot id in this store
	CheckpointID string // Manifest.ID ("" for a payload that is not a manifest)
	Index, Term  uint64
	Created      time.Time
	Duration     time.Duration
	StateBytes   int64
	Files        int
	NewFiles     int
	NewBytes     int64
	SharedFiles  int
	SharedBytes  int64
	Source       Source
	Pinned       bool
	Pending      bool // received from a peer, install not completed
	Missing      int  // distinct files not held locally
	Verified     VerifyReport
}

// Detail is one snapshot in full (the CLI's show).
type Detail struct {
	Info
	Meta     raft.SnapshotMeta
	Manifest *Manifest // nil for a payload that is not a manifest
}

// VerifyReport is the result of Verify, kept with the snapshot.
type VerifyReport struct {
	Status       VerifyStatus
	At           time.Time
	FilesChecked int
	BytesChecked int64
	Missing      []File
	Corrupt      []File // quarantined
	Keys         int64  // keys read from the opened checkpoint
	Problem      string `json:",omitempty"`
}

// Checkpoints lists the retained snapshots, newest first, pending ones included.
func (s *Store) Checkpoints() ([]Info, error) {
	ents, err := s.entries()
	if err != nil {
		return nil, err
	}
	out := make([]Info, 0, len(ents))
	for _, e := range ents {
		d, err := s.detail(e)
		if err != nil {
			return nil, err
		}
		out = append(out, d.Info)
	}
	return out, nil
}

// Show returns one snapshot with its manifest.
func (s *Store) Show(id string) (*Detail, error) {
	e, err := s.entry(id)
	if err != nil {
		return nil, err
	}
	return s.detail(e)
}

func (s *Store) detail(e *entry) (*Detail, error) {
	d := &Detail{Meta: e.meta.SnapshotMeta, Info: Info{
		ID: e.id(), CheckpointID: e.meta.CheckpointID, Index: e.meta.Index, Term: e.meta.Term,
		StateBytes: e.meta.Size, Pinned: e.pinned, Pending: e.pending,
		Verified: VerifyReport{Status: VerifyUnverified},
	}}
	if b, err := os.ReadFile(filepath.Join(e.dir, "verify.json")); err == nil {
		_ = json.Unmarshal(b, &d.Verified)
	}
	m, err := s.manifest(e)
	if errors.Is(err, ErrNotManifest) {
		return d, nil
	}
	if err != nil {
		return nil, err
	}
	d.Manifest = m
	d.Created, d.Duration, d.StateBytes, d.Files = m.Created, m.Duration, m.StateBytes, len(m.Files)
	d.NewFiles, d.NewBytes, d.SharedFiles, d.SharedBytes = m.NewFiles, m.NewBytes, m.SharedFiles, m.SharedBytes
	d.Source = m.Source
	for _, f := range m.uniqueFiles() {
		if ok, _, err := s.files.stat(f); err != nil || !ok {
			d.Missing++
		}
	}
	return d, nil
}

// Pin exempts a snapshot from retention until Unpin.
func (s *Store) Pin(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.entry(id)
	if err != nil {
		return err
	}
	return writeFileSync(filepath.Join(e.dir, "PINNED"), nil)
}

// Unpin returns a snapshot to retention, which runs at once.
func (s *Store) Unpin(id string) error {
	s.mu.Lock()
	e, err := s.entry(id)
	if err == nil {
		err = os.Remove(filepath.Join(e.dir, "PINNED"))
		if errors.Is(err, fs.ErrNotExist) {
			err = nil
		} else if err == nil {
			err = syncDir(e.dir)
		}
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	s.retain()
	return nil
}

// Quarantined lists the files moved aside as corrupt.
func (s *Store) Quarantined() ([]QuarantinedFile, error) { return s.files.quarantined() }

// Verify rechecks every file of a snapshot against its checksum (a corrupt
// one is quarantined, so that no install links it and the next install
// fetches it again), then assembles the checkpoint in scratch space and
// opens it read-only with Pebble, reading every key. The report is kept
// and shown by Checkpoints.
func (s *Store) Verify(ctx context.Context, id string) (*VerifyReport, error) {
	e, err := s.entry(id)
	if err != nil {
		return nil, err
	}
	m, err := s.manifest(e)
	if err != nil {
		return nil, err
	}
	files := m.uniqueFiles()
	s.hold(files)
	defer s.release(files)
	r := &VerifyReport{Status: VerifyOK, At: s.cfg.Now().UTC()}
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		present, wrongSize, err := s.files.stat(f)
		if err != nil {
			return nil, err
		}
		if !present && !wrongSize {
			r.Missing = append(r.Missing, f)
			continue
		}
		r.FilesChecked++
		path := s.files.path(f.Checksum)
		sum := ""
		if present {
			if sum, _, err = hashPrefix(path, f.Size); err != nil {
				return nil, err
			}
			r.BytesChecked += f.Size
		}
		if sum != f.Checksum {
			if _, err := s.files.moveAside(path, f.Checksum); err != nil {
				return nil, err
			}
			s.log.Error("snapshot: verify found a corrupt file; quarantined", "snapshot", id, "file", f.Name, "checksum", f.Checksum)
			r.Corrupt = append(r.Corrupt, f)
		}
	}
	switch {
	case len(r.Corrupt) > 0:
		r.Status = VerifyCorrupt
	case len(r.Missing) > 0:
		r.Status = VerifyIncomplete
	default:
		if r.Keys, err = s.openCheck(m); err != nil {
			r.Status, r.Problem = VerifyUnopenable, err.Error()
		}
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	if err := writeFileSync(filepath.Join(e.dir, "verify.json"), b); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return r, nil
}

// openCheck assembles m in scratch space and reads it with Pebble.
func (s *Store) openCheck(m *Manifest) (int64, error) {
	dir := filepath.Join(s.scratch, fmt.Sprintf("verify-%s-%d", m.ID, time.Now().UnixNano()))
	defer os.RemoveAll(dir)
	if err := s.assemble(m, dir); err != nil {
		return 0, err
	}
	opts := s.cfg.PebbleOptions()
	opts.ReadOnly = true
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	it, err := db.NewIter(nil)
	if err != nil {
		return 0, err
	}
	var keys int64
	for it.First(); it.Valid(); it.Next() {
		_ = it.Value()
		keys++
	}
	err = it.Error()
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	return keys, err
}
