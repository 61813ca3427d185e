package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"github.com/zeebo/xxh3"
	"gocloud.dev/blob"
	_ "gocloud.dev/blob/fileblob" // file:// buckets; cmd/ adds s3blob, gcsblob as needed
	"gocloud.dev/gcerrors"
)

// Bucket layout of exported checkpoints (savepoints). Files are keyed by
// content, so checkpoints of one cluster share them in the bucket as they
// do in a store; a manifest is written only after all its files.
const (
	bucketFilesPrefix       = "files/"
	bucketCheckpointsPrefix = "checkpoints/"
	checksumMetadataKey     = "xxh3-128"
)

func bucketFileKey(sum string) string { return bucketFilesPrefix + sum }
func bucketManifestKey(id string) string {
	return bucketCheckpointsPrefix + id + ".json"
}

// ExportProgress reports an Export in flight.
type ExportProgress struct {
	FilesDone, FilesTotal int
	FilesUploaded         int
	FilesSkipped          int // already in the bucket
	BytesUploaded         int64
	BytesSkipped          int64
	BytesTotal            int64
	Elapsed               time.Duration
	Rate                  float64 // uploaded bytes per second
}

// Export uploads snapshot id to the bucket at bucketURL (for example
// file:///backups/cairn or s3://bucket/prefix with the s3blob driver
// imported): the files the bucket does not hold yet, then the manifest.
// progress, if not nil, is called after every file and during uploads.
func (s *Store) Export(ctx context.Context, id, bucketURL string, progress func(ExportProgress)) (ExportStats, error) {
	b, err := OpenBucket(ctx, bucketURL)
	if err != nil {
		return ExportStats{ID: id, Err: err}, err
	}
	defer b.Close()
	return s.ExportTo(ctx, id, b, progress)
}

// OpenBucket opens the bucket at a gocloud.dev/blob URL, refusing what
// would not do what it says: a file:// URL with a host (file://tmp/x names
// the directory /x on the host "tmp", which fileblob ignores: three slashes
// are needed for a local path), or no scheme at all.
func OpenBucket(ctx context.Context, bucketURL string) (*blob.Bucket, error) {
	u, err := url.Parse(bucketURL)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: %q: %v", ErrBadURL, bucketURL, err)
	case u.Scheme == "":
		return nil, fmt.Errorf("%w: %q has no scheme (file:///path, s3://bucket, gs://bucket, azblob://container)", ErrBadURL, bucketURL)
	case u.Scheme == "file" && u.Host != "" && u.Host != "localhost":
		return nil, fmt.Errorf("%w: %q names the host %q; a local directory takes three slashes: file:///%s%s", ErrBadURL, bucketURL, u.Host, u.Host, u.Path)
	}
	b, err := blob.OpenBucket(ctx, bucketURL)
	if err != nil {
		return nil, fmt.Errorf("snapshot: open bucket %s: %w", bucketURL, err)
	}
	return b, nil
}

// ExportTo is Export to an open bucket.
func (s *Store) ExportTo(ctx context.Context, id string, b *blob.Bucket, progress func(ExportProgress)) (ExportStats, error) {
	start := s.cfg.Now()
	st := ExportStats{ID: id}
	err := s.export(ctx, id, b, progress, start, &st)
	st.Duration, st.Err = s.cfg.Now().Sub(start), err
	s.metrics.ExportDone(st)
	return st, err
}

func (s *Store) export(ctx context.Context, id string, b *blob.Bucket, progress func(ExportProgress), start time.Time, st *ExportStats) error {
	e, err := s.entry(id)
	if err != nil {
		return err
	}
	m, err := s.manifest(e)
	if err != nil {
		return err
	}
	files := m.uniqueFiles()
	s.hold(files)
	defer s.release(files)
	p := ExportProgress{FilesTotal: len(files)}
	for _, f := range files {
		p.BytesTotal += f.Size
	}
	report := func() {
		if progress != nil {
			p.Elapsed = s.cfg.Now().Sub(start)
			if secs := p.Elapsed.Seconds(); secs > 0 {
				p.Rate = float64(p.BytesUploaded) / secs
			}
			progress(p)
		}
	}
	for _, f := range files {
		if ok, _, err := s.files.stat(f); err != nil || !ok {
			return fmt.Errorf("%w: %s (%s) of snapshot %s", ErrIncomplete, f.Name, f.Checksum, id)
		}
		key := bucketFileKey(f.Checksum)
		if attrs, err := b.Attributes(ctx, key); err == nil && attrs.Size == f.Size &&
			(attrs.Metadata[checksumMetadataKey] == "" || attrs.Metadata[checksumMetadataKey] == f.Checksum) {
			p.FilesSkipped++
			p.BytesSkipped += f.Size
			st.FilesSkipped++
			st.BytesSkipped += f.Size
		} else if err != nil && gcerrors.Code(err) != gcerrors.NotFound {
			return fmt.Errorf("snapshot: bucket attributes of %s: %w", key, err)
		} else {
			if err := s.upload(ctx, b, f, &p, report); err != nil {
				return err
			}
			p.FilesUploaded++
			st.FilesUploaded++
			st.BytesUploaded += f.Size
		}
		p.FilesDone++
		report()
	}
	enc, err := m.Encode()
	if err != nil {
		return err
	}
	if err := b.WriteAll(ctx, bucketManifestKey(m.ID), enc, &blob.WriterOptions{ContentType: "application/json"}); err != nil {
		return fmt.Errorf("snapshot: upload manifest: %w", err)
	}
	s.log.Info("snapshot: exported", "id", id, "checkpoint", m.ID, "uploaded_files", st.FilesUploaded,
		"uploaded_bytes", st.BytesUploaded, "skipped_files", st.FilesSkipped)
	return nil
}

// upload copies one stored file to the bucket, checking its checksum on
// the way: a corrupt local copy is never uploaded (the write is aborted).
func (s *Store) upload(ctx context.Context, b *blob.Bucket, f File, p *ExportProgress, report func()) error {
	src, err := os.Open(s.files.path(f.Checksum))
	if err != nil {
		return err
	}
	defer src.Close()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := b.NewWriter(wctx, bucketFileKey(f.Checksum), &blob.WriterOptions{
		ContentType: "application/octet-stream",
		Metadata:    map[string]string{checksumMetadataKey: f.Checksum},
	})
	if err != nil {
		return err
	}
	h := xxh3.New()
	base := p.BytesUploaded
	pw := &progressWriter{w: io.MultiWriter(w, h), step: 8 << 20, fn: func(n int64) {
		p.BytesUploaded = base + n
		report()
	}}
	n, err := io.CopyBuffer(pw, io.LimitReader(src, f.Size), make([]byte, 1<<20))
	if err == nil && (n != f.Size || checksumHex(h.Sum128()) != f.Checksum) {
		_, _ = s.files.moveAside(s.files.path(f.Checksum), f.Checksum)
		err = fmt.Errorf("%w: stored %s does not match its checksum; quarantined, not exported", ErrCorrupt, f.Name)
	}
	if err != nil {
		cancel() // aborts the write: nothing appears under the key
		_ = w.Close()
		return err
	}
	p.BytesUploaded = base + n
	if err := w.Close(); err != nil {
		return fmt.Errorf("snapshot: upload %s: %w", f.Name, err)
	}
	return nil
}

type progressWriter struct {
	w       io.Writer
	n, next int64
	step    int64
	fn      func(int64)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.n += int64(n)
	if p.n >= p.next {
		p.next = p.n + p.step
		p.fn(p.n)
	}
	return n, err
}

// Exported lists the checkpoints in a bucket, newest (highest term, then
// index) first.
func Exported(ctx context.Context, b *blob.Bucket) ([]*Manifest, error) {
	var out []*Manifest
	it := b.List(&blob.ListOptions{Prefix: bucketCheckpointsPrefix})
	for {
		obj, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if !strings.HasSuffix(obj.Key, ".json") {
			continue
		}
		data, err := b.ReadAll(ctx, obj.Key)
		if err != nil {
			return nil, err
		}
		m, err := decodeManifest(data)
		if err != nil {
			return nil, fmt.Errorf("snapshot: %s: %w", obj.Key, err)
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Term != out[j].Term {
			return out[i].Term > out[j].Term
		}
		return out[i].Index > out[j].Index
	})
	return out, nil
}

// RestoreFrom prepares an FSM directory from an exported checkpoint: it
// downloads and verifies every file into fsmDir/db.import and renames that
// to fsmDir/db, the directory fsm.Open(fsm.Config{Dir: fsmDir}) opens. An
// empty id takes the newest checkpoint in the bucket. fsmDir/db must not
// exist. The returned manifest carries the raft index and term of the
// state (see Adopt to start raft from it).
func RestoreFrom(ctx context.Context, bucketURL, id, fsmDir string) (*Manifest, error) {
	b, err := OpenBucket(ctx, bucketURL)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	return RestoreFromBucket(ctx, b, id, fsmDir)
}

// RestoreFromBucket is RestoreFrom with an open bucket.
func RestoreFromBucket(ctx context.Context, b *blob.Bucket, id, fsmDir string) (*Manifest, error) {
	var m *Manifest
	if id == "" {
		all, err := Exported(ctx, b)
		if err != nil {
			return nil, err
		}
		if len(all) == 0 {
			return nil, fmt.Errorf("%w: no checkpoint in bucket", ErrNotFound)
		}
		m = all[0]
	} else {
		if !validName(id) {
			return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
		}
		data, err := b.ReadAll(ctx, bucketManifestKey(id))
		if gcerrors.Code(err) == gcerrors.NotFound {
			return nil, fmt.Errorf("%w: checkpoint %s in bucket", ErrNotFound, id)
		}
		if err != nil {
			return nil, err
		}
		if m, err = decodeManifest(data); err != nil {
			return nil, err
		}
	}
	target, tmp := filepath.Join(fsmDir, "db"), filepath.Join(fsmDir, "db.import")
	if exists(target) {
		return nil, fmt.Errorf("%w: %s", ErrExists, target)
	}
	if err := os.RemoveAll(tmp); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, err
	}
	for _, f := range m.Files {
		if err := download(ctx, b, f, filepath.Join(tmp, f.Name)); err != nil {
			_ = os.RemoveAll(tmp)
			return nil, err
		}
	}
	if err := syncDir(tmp); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, target); err != nil {
		return nil, err
	}
	return m, syncDir(fsmDir)
}

func download(ctx context.Context, b *blob.Bucket, f File, dst string) error {
	r, err := b.NewReader(ctx, bucketFileKey(f.Checksum), nil)
	if err != nil {
		return fmt.Errorf("snapshot: download %s (%s): %w", f.Name, f.Checksum, err)
	}
	defer r.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	h := xxh3.New()
	n, err := io.CopyBuffer(io.MultiWriter(out, h), r, make([]byte, 1<<20))
	if err == nil && (n != f.Size || checksumHex(h.Sum128()) != f.Checksum) {
		err = fmt.Errorf("%w: bucket object for %s (%s) does not match its checksum", ErrCorrupt, f.Name, f.Checksum)
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// Adopt makes a checkpoint restored into dbDir (by RestoreFrom, before the
// FSM opens it) this store's latest snapshot, with the given raft
// configuration: its files enter the store and a snapshot at the
// checkpoint's index and term is committed. Raft then starts from that
// index (with NoSnapshotRestoreOnStart it does not call Restore), so a
// new cluster's log continues above the state's applied index instead of
// being skipped by the FSM. It returns the snapshot id.
func (s *Store) Adopt(m *Manifest, dbDir string, conf raft.Configuration, confIndex uint64) (string, error) {
	for _, f := range m.Files {
		src := filepath.Join(dbDir, f.Name)
		sum, n, err := hashFile(src)
		if err != nil {
			return "", err
		}
		if sum != f.Checksum || n != f.Size {
			return "", fmt.Errorf("%w: %s does not match the manifest (was the DB opened already?)", ErrCorrupt, src)
		}
	}
	own := *m
	own.Source = Source{NodeID: s.cfg.NodeID, Addr: s.cfg.Addr}
	// The new cluster's log continues above the last entry the state
	// holds, which may be above the snapshot index it was taken at.
	index, term := m.State()
	return s.commitOwn(&own, dbDir, index, term, conf, confIndex)
}

// commitOwn makes m, a manifest of this node's Pebble directory dir that
// nothing has opened yet, a committed snapshot at index and term: the
// files enter the store first (SSTs and blob files linked; MANIFEST,
// OPTIONS and WAL copied, since Pebble appends to them once it opens dir),
// then the manifest. It returns the snapshot id.
func (s *Store) commitOwn(m *Manifest, dir string, index, term uint64, conf raft.Configuration, confIndex uint64) (string, error) {
	s.hold(m.Files)
	defer s.release(m.Files) // after the commit: the manifest references them
	for _, f := range m.Files {
		src := filepath.Join(dir, f.Name)
		var err error
		if immutable(f.Name) {
			_, err = s.files.add(src, f)
		} else if !exists(s.files.path(f.Checksum)) {
			err = copyFileAtomic(src, s.files.path(f.Checksum))
		}
		if err != nil {
			return "", err
		}
	}
	if err := syncDir(s.files.dir); err != nil {
		return "", err
	}
	enc, err := m.Encode()
	if err != nil {
		return "", err
	}
	sink, err := s.Create(raft.SnapshotVersionMax, index, term, conf, confIndex, nil)
	if err != nil {
		return "", err
	}
	markOwn(sink, m)
	if _, err := sink.Write(enc); err != nil {
		_ = sink.Cancel()
		return "", err
	}
	return sink.ID(), sink.Close()
}
