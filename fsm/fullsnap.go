package fsm

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

// FullCheckpointer is the simplest Checkpointer: it takes a Pebble
// checkpoint (hard links, flushed WAL) and ships every file of it as a tar
// stream. It is the fallback full transfer; snapshot/ provides the
// incremental one.
type FullCheckpointer struct {
	FS         vfs.FS
	ScratchDir string
}

// Snapshot records what to checkpoint; Persist takes the checkpoint and
// streams it.
func (c *FullCheckpointer) Snapshot(_ *pebble.DB, index, term uint64, take TakeCheckpoint) (raft.FSMSnapshot, error) {
	return &fullSnapshot{fs: c.FS, dir: filepath.Join(c.ScratchDir, fmt.Sprintf("full-%020d-%d", index, term)), take: take}, nil
}

type fullSnapshot struct {
	fs   vfs.FS
	dir  string
	take TakeCheckpoint
}

func (s *fullSnapshot) Persist(sink raft.SnapshotSink) error {
	err := s.persist(sink)
	if err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fullSnapshot) persist(sink raft.SnapshotSink) error {
	if err := s.fs.RemoveAll(s.dir); err != nil {
		return err
	}
	if err := s.fs.MkdirAll(filepath.Dir(s.dir), 0o755); err != nil {
		return err
	}
	_, _, prefix, err := s.take(s.dir, nil)
	if err != nil {
		return err
	}
	return writeTar(s.fs, s.dir, prefix, sink)
}

func (s *fullSnapshot) Release() { _ = s.fs.RemoveAll(s.dir) }

// writeTar ships every file of the checkpoint in dir; of a linked WAL
// (prefix) only the part that belongs to the checkpoint.
func writeTar(fs vfs.FS, dir string, prefix map[string]int64, w io.Writer) error {
	names, err := fs.List(dir)
	if err != nil {
		return err
	}
	sort.Strings(names)
	tw := tar.NewWriter(w)
	for _, name := range names {
		p := filepath.Join(dir, name)
		st, err := fs.Stat(p)
		if err != nil {
			return err
		}
		if st.IsDir() {
			continue
		}
		size := st.Size()
		if n, ok := prefix[name]; ok {
			size = n
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: size, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		f, err := fs.Open(p)
		if err != nil {
			return err
		}
		n, err := io.Copy(tw, io.LimitReader(f, size))
		_ = f.Close()
		if err != nil {
			return err
		}
		if n != size {
			return fmt.Errorf("fsm: %s changed size while shipping", name)
		}
	}
	return tw.Close()
}

// Restore unpacks the tar stream into dir and syncs every file.
func (c *FullCheckpointer) Restore(r io.Reader, dir string) error {
	if err := c.FS.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if h.Typeflag != tar.TypeReg || h.Name != filepath.Base(h.Name) || strings.HasPrefix(h.Name, ".") {
			return fmt.Errorf("fsm: unexpected entry %q in snapshot", h.Name)
		}
		f, err := c.FS.Create(filepath.Join(dir, h.Name), vfs.WriteCategoryUnspecified)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, tr); err != nil {
			_ = f.Close()
			return err
		}
		if err := f.Sync(); err != nil {
			_ = f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	d, err := c.FS.OpenDir(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
