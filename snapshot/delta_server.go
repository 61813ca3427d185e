package snapshot

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-db/cairn/snapshot/snapshotpb"
)

// syncProgressEvery is how many scanned keys at most pass between two
// responses, so that the caller's idle timer sees progress.
const syncProgressEvery = 1 << 16

// Sync is the server side of a delta install: it opens the checkpoint
// read-only, merges the caller's digest with its keys and sends back the
// differences (see DeltaFetcher).
func (srv *Server) Sync(stream grpc.BidiStreamingServer[snapshotpb.SyncRequest, snapshotpb.SyncResponse]) error {
	st := ServeStats{}
	err := srv.sync(stream, &st)
	st.Err = err
	srv.s.metrics.FileServed(st)
	return err
}

func (srv *Server) sync(stream grpc.BidiStreamingServer[snapshotpb.SyncRequest, snapshotpb.SyncResponse], st *ServeStats) error {
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	id := req.GetCheckpointId()
	db, closeDB, err := srv.s.openCheckpoint(id)
	if errors.Is(err, ErrNotFound) {
		return status.Errorf(codes.NotFound, "checkpoint %s: %v", id, err)
	}
	if err != nil {
		return status.Errorf(codes.Internal, "open checkpoint %s: %v", id, err)
	}
	defer closeDB()
	it, err := db.NewIter(nil)
	if err != nil {
		return status.Errorf(codes.Internal, "iterate checkpoint %s: %v", id, err)
	}
	defer it.Close()
	mg := &syncMerge{it: it, ok: it.First(), d: newStateDigest(), send: func(r *snapshotpb.SyncResponse) error {
		st.Bytes += int64(proto.Size(r))
		return stream.Send(r)
	}, limit: srv.chunkSize}
	for {
		if err := mg.client(req); err != nil {
			return err
		}
		req, err = stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	return mg.finish()
}

// syncMerge walks the checkpoint's keys alongside the caller's digest.
type syncMerge struct {
	it    *pebble.Iterator
	ok    bool
	prev  []byte // the caller's last key, to check the order
	d     *stateDigest
	send  func(*snapshotpb.SyncResponse) error
	limit int

	out     snapshotpb.SyncResponse
	size    int
	unsent  int // keys scanned since the last response
	matched int64
	mbytes  int64
	scanned int64
	hasPrev bool
}

// next advances past the checkpoint's current key.
func (m *syncMerge) next() error {
	m.scanned++
	m.unsent++
	m.ok = m.it.Next()
	if m.size >= m.limit || m.unsent >= syncProgressEvery {
		return m.flush(false)
	}
	return nil
}

// put sends the checkpoint's current entry, whose value is v.
func (m *syncMerge) put(v []byte) {
	k := m.it.Key()
	m.out.PutKeys = append(m.out.PutKeys, bytes.Clone(k))
	m.out.PutValues = append(m.out.PutValues, bytes.Clone(v))
	m.size += len(k) + len(v) + 8
}

// own hashes and sends (when it differs from want) the current entry.
func (m *syncMerge) own(want []byte) error {
	v, err := m.it.ValueAndErr()
	if err != nil {
		return status.Errorf(codes.Internal, "read checkpoint: %v", err)
	}
	vh := valueHash(v)
	m.d.add(m.it.Key(), vh)
	if want != nil && bytes.Equal(vh[:], want) {
		m.matched++
		m.mbytes += int64(len(m.it.Key()) + len(v))
	} else {
		m.put(v)
	}
	return m.next()
}

func (m *syncMerge) client(req *snapshotpb.SyncRequest) error {
	keys, hashes := req.GetKeys(), req.GetValueHashes()
	if len(hashes) != 16*len(keys) {
		return status.Errorf(codes.InvalidArgument, "%d keys with %d bytes of value hashes (want 16 per key)", len(keys), len(hashes))
	}
	for i, k := range keys {
		if m.hasPrev && bytes.Compare(k, m.prev) <= 0 {
			return status.Errorf(codes.InvalidArgument, "keys out of order: %x after %x", k, m.prev)
		}
		m.prev, m.hasPrev = k, true
		for m.ok && bytes.Compare(m.it.Key(), k) < 0 {
			if err := m.own(nil); err != nil {
				return err
			}
		}
		if m.ok && bytes.Equal(m.it.Key(), k) {
			if err := m.own(hashes[16*i : 16*i+16]); err != nil {
				return err
			}
			continue
		}
		m.out.DeleteKeys = append(m.out.DeleteKeys, k)
		if m.size += len(k) + 4; m.size >= m.limit {
			if err := m.flush(false); err != nil {
				return err
			}
		}
	}
	if err := m.it.Error(); err != nil {
		return status.Errorf(codes.Internal, "read checkpoint: %v", err)
	}
	return nil
}

// finish sends the checkpoint's remaining keys and the trailer.
func (m *syncMerge) finish() error {
	for m.ok {
		if err := m.own(nil); err != nil {
			return err
		}
	}
	if err := m.it.Error(); err != nil {
		return status.Errorf(codes.Internal, "read checkpoint: %v", err)
	}
	return m.flush(true)
}

func (m *syncMerge) flush(done bool) error {
	r := &m.out
	r.Scanned = m.scanned
	if done {
		r.Done, r.Keys, r.MatchedKeys, r.MatchedBytes, r.Digest = true, m.d.keys, m.matched, m.mbytes, m.d.sum()
	}
	if err := m.send(r); err != nil {
		return err
	}
	m.out = snapshotpb.SyncResponse{}
	m.size, m.unsent = 0, 0
	return nil
}

// openCheckpoint opens an installed checkpoint whose files are all held,
// read-only, in scratch space. close closes it and removes the space.
func (s *Store) openCheckpoint(id string) (*pebble.DB, func(), error) {
	m, err := s.installedManifest(id)
	if err != nil {
		return nil, nil, err
	}
	files := m.uniqueFiles()
	s.hold(files)
	defer s.release(files) // once assembled, the scratch links keep the content
	for _, f := range files {
		if ok, _, err := s.files.stat(f); err != nil || !ok {
			return nil, nil, fmt.Errorf("%w: file %s of checkpoint %s not held", ErrNotFound, f.Name, id)
		}
	}
	dir := filepath.Join(s.scratch, fmt.Sprintf("sync-%s-%d", id, time.Now().UnixNano()))
	if err := s.assemble(m, dir); err != nil {
		_ = os.RemoveAll(dir)
		return nil, nil, err
	}
	opts := s.cfg.PebbleOptions()
	opts.ReadOnly = true
	db, err := pebble.Open(dir, opts)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, nil, err
	}
	return db, func() { _ = db.Close(); _ = os.RemoveAll(dir) }, nil
}

// installedManifest returns the manifest of an installed (not pending)
// snapshot of checkpoint id.
func (s *Store) installedManifest(id string) (*Manifest, error) {
	ents, err := s.entries()
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if !e.pending && e.meta.CheckpointID == id {
			return s.manifest(e)
		}
	}
	return nil, fmt.Errorf("%w: checkpoint %s", ErrNotFound, id)
}
