package snapshot

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/zeebo/xxh3"
)

// Fetcher fetches checkpoint files from a peer. Fetch returns the content
// of f from offset to its end; the returned reader fails (rather than
// ending early) if the transfer breaks. GRPCFetcher is the production
// implementation.
type Fetcher interface {
	Fetch(ctx context.Context, from Source, f File, offset int64) (io.ReadCloser, error)
}

// Restore implements fsm.Checkpointer: it installs the manifest read from
// r into dir (see Install). A failure leaves dir absent and keeps what was
// fetched (complete files and partial ones) for the next attempt, which
// raft makes when it resends the snapshot.
func (c *Checkpointer) Restore(r io.Reader, dir string) error {
	_, err := c.s.Install(context.Background(), r, dir)
	return err
}

// RestoreWithBase is Restore for an FSM that can copy its live state: base
// makes a Pebble checkpoint of it at dir. When the install lacks most of
// the checkpoint's files, it rebuilds the state from that copy plus the
// differences (a delta install) before falling back to fetching files.
func (c *Checkpointer) RestoreWithBase(r io.Reader, dir string, base func(dir string) error) error {
	_, err := c.s.InstallWithBase(context.Background(), r, dir, base)
	return err
}

// Install reads a manifest from r and builds a Pebble directory at dir
// (which must not exist) that opens with pebble.Open. Files are matched by
// checksum and size, never by name: the ones the store holds (and that
// still match their checksum) are reused; the others are fetched from the
// manifest's source, then from Config.Sources, resuming partial files.
// Immutable files (SSTs, blob files) are hard-linked from the store, the
// others copied. A brand-new node takes the same path and fetches all.
func (s *Store) Install(ctx context.Context, r io.Reader, dir string) (InstallStats, error) {
	return s.InstallWithBase(ctx, r, dir, nil)
}

// InstallWithBase is Install where base, if not nil, copies the node's
// live state to a directory (a Pebble checkpoint). If the files the store
// lacks exceed Config.DeltaAbove of the checkpoint, the install first
// tries a delta install from that copy (InstallStats.Delta reports it);
// if that fails it fetches the files.
func (s *Store) InstallWithBase(ctx context.Context, r io.Reader, dir string, base func(dir string) error) (InstallStats, error) {
	start := s.cfg.Now()
	var st InstallStats
	if exists(dir) {
		return st, fmt.Errorf("%w: %s", ErrExists, dir)
	}
	err := s.install(ctx, r, dir, base, &st)
	st.Duration = s.cfg.Now().Sub(start)
	st.Err = err
	s.metrics.InstallDone(st)
	if err != nil {
		_ = os.RemoveAll(dir)
		s.log.Warn("snapshot: install failed", "checkpoint", st.CheckpointID, "fetched_bytes", st.BytesFetched, "err", err)
		return st, err
	}
	if st.Delta {
		// The same message as a file install (tools count installs by it).
		s.log.Info("snapshot: installed", "checkpoint", st.CheckpointID, "index", st.Index, "delta", true,
			"keys_fetched", st.KeysFetched, "keys_deleted", st.KeysDeleted, "keys_reused", st.KeysReused,
			"fetched_bytes", st.BytesFetched, "sent_bytes", st.BytesSent, "reused_bytes", st.BytesReused,
			"state_bytes", st.Bytes, "took", st.Duration, "copy", st.CopyTime, "sync", st.SyncTime, "check", st.CheckTime, "store", st.StoreTime)
		return st, nil
	}
	s.log.Info("snapshot: installed", "checkpoint", st.CheckpointID, "index", st.Index, "reused", st.FilesReused,
		"fetched", st.FilesFetched, "fetched_bytes", st.BytesFetched, "resumed_bytes", st.BytesResumed,
		"quarantined", st.FilesQuarantined, "took", st.Duration)
	return st, nil
}

func (s *Store) install(ctx context.Context, r io.Reader, dir string, base func(string) error, st *InstallStats) error {
	br := bufio.NewReader(r)
	if first, err := br.Peek(1); s.cfg.Fallback != nil && (err != nil || first[0] != '{') {
		// Not JSON, so not a manifest: a payload of the fallback's format.
		st.CheckpointID = "fallback"
		return s.cfg.Fallback.Restore(br, dir)
	}
	m, err := DecodeManifest(br)
	if err != nil {
		return err
	}
	st.CheckpointID, st.Index, st.Term = m.ID, m.Index, m.Term
	st.Files, st.Bytes = len(m.Files), m.StateBytes
	s.installMu.Lock()
	defer s.installMu.Unlock()
	files := m.uniqueFiles()
	s.hold(files)
	defer s.release(files)
	if base != nil {
		lacking, lackingBytes, err := s.lacking(files)
		if err != nil {
			return err
		}
		if lacking > 0 && s.useDelta(m, base, lackingBytes) {
			err := s.installDelta(ctx, m, s.sources(m), dir, base, st)
			if err == nil {
				st.Delta = true
				return nil
			}
			lvl := slog.LevelWarn
			if errors.Is(err, errBaseTooSmall) {
				lvl = slog.LevelInfo
			}
			s.log.Log(ctx, lvl, "snapshot: no delta install; fetching the checkpoint's files", "checkpoint", m.ID,
				"missing_files", lacking, "missing_bytes", lackingBytes, "reason", err)
			st.KeysFetched, st.KeysDeleted, st.KeysReused, st.BytesReused = 0, 0, 0, 0
		}
	}
	var missing []File
	for _, f := range files {
		ok, err := s.reuse(f, st)
		if err != nil {
			return err
		}
		if ok {
			st.FilesReused++
			st.BytesReused += f.Size
		} else {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		sources := s.sources(m)
		if len(sources) == 0 || s.cfg.Fetcher == nil {
			return fmt.Errorf("%w: checkpoint %s needs %d files (no fetcher or peer)", ErrNoSource, m.ID, len(missing))
		}
		for _, f := range missing {
			if err := s.fetch(ctx, sources, f, st); err != nil {
				return err
			}
		}
	}
	if err := s.assemble(m, dir); err != nil {
		return err
	}
	return s.markInstalled(m)
}

// lacking counts the files (and their bytes) the store does not hold.
func (s *Store) lacking(files []File) (n int, bytes int64, err error) {
	for _, f := range files {
		present, _, err := s.files.stat(f)
		if err != nil {
			return 0, 0, err
		}
		if !present {
			n++
			bytes += f.Size
		}
	}
	return n, bytes, nil
}

// reuse reports whether the store holds f intact. A copy that does not
// match is quarantined, so that it is fetched again and never linked.
func (s *Store) reuse(f File, st *InstallStats) (bool, error) {
	present, wrongSize, err := s.files.stat(f)
	if err != nil {
		return false, err
	}
	path := s.files.path(f.Checksum)
	if !present && !wrongSize {
		return false, nil
	}
	if present && s.cfg.SkipReuseVerify {
		return true, nil
	}
	if present {
		sum, _, err := hashPrefix(path, f.Size)
		if err != nil {
			return false, err
		}
		if sum == f.Checksum {
			return true, nil
		}
	}
	q, err := s.files.moveAside(path, f.Checksum)
	if err != nil {
		return false, err
	}
	st.FilesQuarantined++
	s.log.Error("snapshot: stored file does not match its checksum; quarantined, will fetch again",
		"file", f.Name, "checksum", f.Checksum, "moved_to", q)
	return false, nil
}

// sources lists the nodes to fetch from: the checkpoint's creator first,
// then Config.Sources, never this node.
func (s *Store) sources(m *Manifest) []Source {
	var out []Source
	seen := map[string]bool{}
	add := func(src Source) {
		if src.Addr == "" || seen[src.Addr] || src.NodeID == s.cfg.NodeID || (s.cfg.Addr != "" && src.Addr == s.cfg.Addr) {
			return
		}
		seen[src.Addr] = true
		out = append(out, src)
	}
	if m.Holder != nil {
		add(*m.Holder) // the sender: it holds every file
	}
	add(m.Source)
	if s.cfg.Sources != nil {
		for _, src := range s.cfg.Sources(m) {
			add(src)
		}
	}
	return out
}

// fetch makes up to FetchAttempts rounds over the sources for f.
func (s *Store) fetch(ctx context.Context, sources []Source, f File, st *InstallStats) error {
	var errs []error
	for attempt := 0; attempt < s.cfg.FetchAttempts; attempt++ {
		for _, src := range sources {
			err := s.fetchFrom(ctx, src, f, st)
			if err == nil {
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.log.Warn("snapshot: fetch failed", "file", f.Name, "checksum", f.Checksum, "from", src.Addr, "err", err)
			errs = append(errs, fmt.Errorf("from %s (%s): %w", src.NodeID, src.Addr, err))
		}
	}
	if len(errs) > 4 {
		errs = errs[len(errs)-4:]
	}
	return fmt.Errorf("snapshot: fetch %s (%s): %w", f.Name, f.Checksum, errors.Join(errs...))
}

// fetchFrom continues files/<checksum>.partial from its length and, once
// complete and verified, renames it to files/<checksum>. On a transfer
// error the partial file is synced and kept: its length is the offset the
// next attempt resumes from.
func (s *Store) fetchFrom(ctx context.Context, src Source, f File, st *InstallStats) (err error) {
	pp := s.files.partialPath(f.Checksum)
	fh, err := os.OpenFile(pp, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if fh != nil {
			if serr := fh.Sync(); err == nil {
				err = serr
			}
			_ = fh.Close()
		}
	}()
	fi, err := fh.Stat()
	if err != nil {
		return err
	}
	off := fi.Size()
	if off > f.Size {
		if err := fh.Truncate(0); err != nil {
			return err
		}
		off = 0
	}
	h := xxh3.New()
	if off > 0 {
		// Re-read the kept prefix: the final checksum covers all of it.
		if _, err := io.CopyN(h, fh, off); err != nil {
			return err
		}
	}
	if off < f.Size {
		rc, err := s.cfg.Fetcher.Fetch(ctx, src, f, off)
		if err != nil {
			return err
		}
		if off > 0 {
			st.FilesResumed++
			st.BytesResumed += off
		}
		want := f.Size - off
		n, err := io.CopyBuffer(io.MultiWriter(fh, h), io.LimitReader(rc, want), make([]byte, 256<<10))
		_ = rc.Close()
		st.BytesFetched += n
		if err != nil {
			return err
		}
		if n < want {
			return fmt.Errorf("snapshot: %w after %d of %d bytes", io.ErrUnexpectedEOF, off+n, f.Size)
		}
	}
	if got := checksumHex(h.Sum128()); got != f.Checksum {
		_ = fh.Close()
		fh = nil
		if _, qerr := s.files.moveAside(pp, f.Checksum); qerr != nil {
			_ = os.Remove(pp)
		}
		return fmt.Errorf("%w: fetched %s hashes to %s, want %s", ErrCorrupt, f.Name, got, f.Checksum)
	}
	if err := fh.Sync(); err != nil {
		return err
	}
	err = fh.Close()
	fh = nil
	if err != nil {
		return err
	}
	if err := os.Rename(pp, s.files.path(f.Checksum)); err != nil {
		return err
	}
	st.FilesFetched++
	return syncDir(s.files.dir)
}

// assemble builds the Pebble directory of m at dir from the store.
func (s *Store) assemble(m *Manifest, dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	for _, f := range m.Files {
		src, dst := s.files.path(f.Checksum), filepath.Join(dir, f.Name)
		var err error
		if immutable(f.Name) {
			err = linkOrCopy(src, dst)
		} else {
			err = copyPrefix(src, dst, f.Size) // a linked WAL is longer (see fileStore)
		}
		if err != nil {
			return fmt.Errorf("snapshot: assemble %s: %w", f.Name, err)
		}
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	return syncDir(filepath.Dir(dir))
}
