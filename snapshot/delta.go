package snapshot

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/zeebo/xxh3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-db/cairn/snapshot/snapshotpb"
)

// A delta install rebuilds a checkpoint's state from a copy of this node's
// own state plus the differences, key by key, instead of fetching the
// checkpoint's files. Replicas write the same keys but their Pebble files
// never match byte for byte (flushes and compactions happen at different
// moments on each), so a follower that fell behind holds almost none of the
// leader's files even when 95% of its keys are unchanged. See DESIGN.md,
// "Delta install".

// DeltaFetcher is a Fetcher that can also run a delta install against a
// peer (GRPCFetcher does).
type DeltaFetcher interface {
	Sync(ctx context.Context, from Source, checkpointID string) (SyncStream, error)
}

// SyncStream is the client side of FileService.Sync.
type SyncStream interface {
	Send(*snapshotpb.SyncRequest) error
	CloseSend() error
	Recv() (*snapshotpb.SyncResponse, error)
}

// errDeltaTooBig stops a delta install that has shipped more than
// Config.DeltaMaxShipped of the state: fetching the files is then cheaper.
var errDeltaTooBig = errors.New("snapshot: delta install shipped too much; fetching files instead")

// errBaseTooSmall skips a delta install whose local state is too small to
// spare shipping more than Config.DeltaMaxShipped of the checkpoint: it
// would end in errDeltaTooBig after shipping that much for nothing. Only
// checked for checkpoints of at least baseCheckAbove bytes: below, sizes
// are dominated by WAL history rather than state, and the waste is small.
var errBaseTooSmall = errors.New("snapshot: local state too small for a delta install")

const baseCheckAbove = 1 << 20

// valueHash is the per-key digest both sides compare.
func valueHash(v []byte) [16]byte { return xxh3.Hash128(v).Bytes() }

// stateDigest hashes a whole state: for every key in order,
// uvarint(len(key)) key valueHash(value).
type stateDigest struct {
	h    *xxh3.Hasher
	keys int64
	buf  [binary.MaxVarintLen64]byte
}

func newStateDigest() *stateDigest { return &stateDigest{h: xxh3.New()} }

func (d *stateDigest) add(key []byte, vh [16]byte) {
	n := binary.PutUvarint(d.buf[:], uint64(len(key)))
	_, _ = d.h.Write(d.buf[:n])
	_, _ = d.h.Write(key)
	_, _ = d.h.Write(vh[:])
	d.keys++
}

func (d *stateDigest) sum() []byte { b := d.h.Sum128().Bytes(); return b[:] }

// StateDigest returns the number of keys of db and a digest of all of
// them and their values, in order: the digest a delta install checks a
// rebuilt state against. Two states are equal exactly when (up to hash
// collisions) their digests are.
func StateDigest(db *pebble.DB) (keys int64, sum []byte, err error) {
	it, err := db.NewIter(nil)
	if err != nil {
		return 0, nil, err
	}
	d := newStateDigest()
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return 0, nil, err
		}
		d.add(it.Key(), valueHash(v))
	}
	err = it.Error()
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	return d.keys, d.sum(), err
}

// useDelta reports whether an install should try a delta first: the
// caller can copy its live state, a fetcher can run one, and the files
// this node lacks exceed Config.DeltaAbove of the state.
func (s *Store) useDelta(m *Manifest, base func(string) error, missingBytes int64) bool {
	if base == nil || s.cfg.DeltaAbove <= 0 || m.StateBytes <= 0 {
		return false
	}
	if _, ok := s.cfg.Fetcher.(DeltaFetcher); !ok {
		return false
	}
	return float64(missingBytes) > s.cfg.DeltaAbove*float64(m.StateBytes)
}

// installDelta builds m's state at dir from a copy of the live state
// (base) and the differences sent by a source holding m, trying each
// source in turn. On success dir holds m's state (verified against the
// source's digest) and the store holds a manifest of dir's own files for
// m's raft snapshot (commitRebuilt). On failure dir is absent.
func (s *Store) installDelta(ctx context.Context, m *Manifest, sources []Source, dir string, base func(string) error, st *InstallStats) error {
	df := s.cfg.Fetcher.(DeltaFetcher)
	var errs []error
	for _, src := range sources {
		err := s.syncFrom(ctx, df, src, m, dir, base, st)
		if err == nil {
			t := s.cfg.Now()
			err = s.commitRebuilt(m, dir, src)
			st.StoreTime = s.cfg.Now().Sub(t)
			return err
		}
		_ = os.RemoveAll(dir)
		if errors.Is(err, errBaseTooSmall) {
			return err // expected for a new node: not worth a warning
		}
		s.log.Warn("snapshot: delta install failed", "checkpoint", m.ID, "from", src.Addr, "err", err)
		errs = append(errs, fmt.Errorf("from %s (%s): %w", src.NodeID, src.Addr, err))
		if ctx.Err() != nil || errors.Is(err, errDeltaTooBig) {
			break
		}
	}
	return errors.Join(errs...)
}

// deltaBatchBytes is how much of the differences is buffered before a
// commit to the rebuilt DB; digestBatchBytes caps a request.
const (
	deltaBatchBytes  = 4 << 20
	digestBatchBytes = 256 << 10
)

func (s *Store) syncFrom(ctx context.Context, df DeltaFetcher, src Source, m *Manifest, dir string, base func(string) error, st *InstallStats) (err error) {
	phase := s.cfg.Now()
	lap := func(d *time.Duration) { now := s.cfg.Now(); *d, phase = now.Sub(phase), now }
	if err := base(dir); err != nil {
		return fmt.Errorf("copy local state: %w", err)
	}
	if s.cfg.DeltaMaxShipped > 0 && m.StateBytes >= baseCheckAbove {
		size, err := dirBytes(dir)
		if err != nil {
			return err
		}
		if float64(size) < (1-s.cfg.DeltaMaxShipped)*float64(m.StateBytes) {
			return fmt.Errorf("%w (%d bytes, checkpoint %d)", errBaseTooSmall, size, m.StateBytes)
		}
	}
	db, err := pebble.Open(dir, s.cfg.PebbleOptions())
	if err != nil {
		return fmt.Errorf("open local copy: %w", err)
	}
	defer func() {
		if cerr := db.Close(); err == nil {
			err = cerr
		}
	}()
	// The digest is read from a point-in-time view: the differences are
	// written to the same DB while it is being sent.
	it, err := db.NewIter(nil)
	if err != nil {
		return err
	}
	lap(&st.CopyTime)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := df.Sync(ctx, src, m.ID)
	if err != nil {
		_ = it.Close()
		return err
	}
	sent := make(chan sendResult, 1)
	go func() { sent <- sendDigests(stream, it, m.ID) }()
	defer func() {
		cancel()
		r := <-sent // the sender has closed the iterator before the DB closes
		st.BytesSent += r.bytes
		if err == nil && r.err != nil {
			err = fmt.Errorf("send digest: %w", r.err)
		}
	}()

	limit := int64(s.cfg.DeltaMaxShipped * float64(m.StateBytes))
	b := db.NewBatch()
	defer func() { _ = b.Close() }() // the batch in use when the loop ends
	var trailer *snapshotpb.SyncResponse
	for trailer == nil {
		resp, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		st.BytesFetched += int64(proto.Size(resp))
		if limit > 0 && st.BytesFetched > limit {
			return fmt.Errorf("%w (%d bytes of a %d-byte state)", errDeltaTooBig, st.BytesFetched, m.StateBytes)
		}
		if len(resp.GetPutKeys()) != len(resp.GetPutValues()) {
			return fmt.Errorf("%w: %d keys with %d values", ErrCorrupt, len(resp.GetPutKeys()), len(resp.GetPutValues()))
		}
		for i, k := range resp.GetPutKeys() {
			if err := b.Set(k, resp.GetPutValues()[i], nil); err != nil {
				return err
			}
		}
		for _, k := range resp.GetDeleteKeys() {
			if err := b.Delete(k, nil); err != nil {
				return err
			}
		}
		st.KeysFetched += int64(len(resp.GetPutKeys()))
		st.KeysDeleted += int64(len(resp.GetDeleteKeys()))
		if resp.GetDone() {
			trailer = resp
		}
		if b.Len() >= deltaBatchBytes || trailer != nil {
			if err := b.Commit(pebble.NoSync); err != nil {
				return err
			}
			_ = b.Close()
			b = db.NewBatch()
		}
	}
	lap(&st.SyncTime)
	// The state now has to be exactly the checkpoint's: read it all back.
	keys, sum, err := StateDigest(db)
	if err != nil {
		return fmt.Errorf("digest rebuilt state: %w", err)
	}
	if keys != trailer.GetKeys() || !bytes.Equal(sum, trailer.GetDigest()) {
		return fmt.Errorf("%w: rebuilt state has %d keys and digest %x; checkpoint %s has %d keys and digest %x",
			ErrCorrupt, keys, sum, m.ID, trailer.GetKeys(), trailer.GetDigest())
	}
	st.KeysReused, st.BytesReused = trailer.GetMatchedKeys(), trailer.GetMatchedBytes()
	// Leave the state in tables, not in the WAL the FSM would replay.
	err = db.Flush()
	lap(&st.CheckTime)
	return err
}

// dirBytes is the size of the regular files in dir.
func dirBytes(dir string) (int64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n, nil
}

type sendResult struct {
	bytes int64
	err   error
}

// sendDigests streams (key, valueHash) of every key it yields, then
// closes the send side. It closes it.
func sendDigests(stream SyncStream, it *pebble.Iterator, id string) (r sendResult) {
	defer func() {
		if err := it.Close(); r.err == nil {
			r.err = err
		}
	}()
	req := &snapshotpb.SyncRequest{CheckpointId: id}
	size := 0
	send := func() error {
		r.bytes += int64(proto.Size(req))
		err := stream.Send(req)
		req, size = &snapshotpb.SyncRequest{}, 0
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			r.err = err
			return r
		}
		vh := valueHash(v)
		req.Keys = append(req.Keys, bytes.Clone(it.Key()))
		req.ValueHashes = append(req.ValueHashes, vh[:]...)
		if size += len(it.Key()) + 20; size >= digestBatchBytes {
			if r.err = send(); r.err != nil {
				return r
			}
		}
	}
	if r.err = it.Error(); r.err != nil {
		return r
	}
	if r.err = send(); r.err != nil {
		return r
	}
	r.err = stream.CloseSend()
	return r
}

// commitRebuilt records, as the raft snapshot of m received from a peer,
// a manifest of the files at dir: the same state (index, term, extra) as
// m, this node's own files. The pending snapshot of m is then removed.
// dir has not been opened by the FSM yet, so its MANIFEST and WAL are
// copied into the store (Pebble appends to them once opened).
func (s *Store) commitRebuilt(m *Manifest, dir string, src Source) error {
	pending, err := s.pendingEntry(m.ID)
	if err != nil {
		return err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	own := *m
	own.Files, own.StateBytes = nil, 0
	own.Source = Source{NodeID: s.cfg.NodeID, Addr: s.cfg.Addr}
	own.RebuiltFrom = &src
	own.Previous, own.NewFiles, own.NewBytes, own.SharedFiles, own.SharedBytes = "", 0, 0, 0, 0
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue // a Pebble directory holds only files; nothing else is state
		}
		sum, size, _, err := s.files.checksum(filepath.Join(dir, e.Name()), immutable(e.Name()))
		if err != nil {
			return err
		}
		own.Files = append(own.Files, File{Name: e.Name(), Size: size, Checksum: sum})
		own.StateBytes += size
	}
	sort.Slice(own.Files, func(i, j int) bool { return own.Files[i].Name < own.Files[j].Name })
	pm := pending.meta.SnapshotMeta
	if _, err := s.commitOwn(&own, dir, pm.Index, pm.Term, pm.Configuration, pm.ConfigurationIndex); err != nil {
		return err
	}
	// The rebuilt snapshot is durable; the received one is superseded.
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.RemoveAll(pending.dir); err != nil {
		return err
	}
	return syncDir(s.mdir)
}

// pendingEntry returns the most recently stored pending snapshot of the
// checkpoint id.
func (s *Store) pendingEntry(id string) (*entry, error) {
	ents, err := s.entries()
	if err != nil {
		return nil, err
	}
	var found *entry
	for _, e := range ents {
		if e.pending && e.meta.CheckpointID == id && (found == nil || e.meta.Stored.After(found.meta.Stored)) {
			found = e
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w: no pending snapshot of checkpoint %s", ErrNotFound, id)
	}
	return found, nil
}

// Sync implements DeltaFetcher. The idle timer aborts a stream from which
// nothing arrived for IdleTimeout (the server sends progress while it
// scans long identical stretches).
func (g *GRPCFetcher) Sync(ctx context.Context, from Source, checkpointID string) (SyncStream, error) {
	client, ctx, ic, err := g.call(ctx, from.Addr)
	if err != nil {
		return nil, err
	}
	stream, err := client.Sync(ctx, grpc.MaxCallRecvMsgSize(maxSyncMessage))
	if err != nil {
		ic.stop()
		return nil, err
	}
	context.AfterFunc(ctx, func() { ic.timer.Stop() })
	return &idleSyncStream{SyncStream: stream, idle: ic}, nil
}

// maxSyncMessage bounds one Sync response: a single entry larger than
// this (far above any value the FSM accepts) fails the delta install,
// and the install fetches files instead.
const maxSyncMessage = 256 << 20

type idleSyncStream struct {
	SyncStream
	idle *idleCall
}

func (s *idleSyncStream) Recv() (*snapshotpb.SyncResponse, error) {
	r, err := s.SyncStream.Recv()
	if err == nil {
		s.idle.touch()
	}
	return r, err
}
