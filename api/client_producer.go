package api

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	pb "github.com/cairn-db/cairn/api/cairnpb"
)

// ProducerOptions tune a producer handle's batching.
type ProducerOptions struct {
	MaxOps   int           // flush when this many ops are buffered (default 1000)
	MaxBytes int           // flush when the buffered ops reach this size (default 1 MiB)
	Linger   time.Duration // flush buffered ops this long after the first (0: only on size or Flush)
}

// DefaultProducerOptions returns the defaults.
func DefaultProducerOptions() ProducerOptions {
	return ProducerOptions{MaxOps: 1000, MaxBytes: 1 << 20}
}

// Producer is an exactly-once session for one operator instance. Every
// commit carries (producer, epoch, seq); the client retries a commit with
// the same seq until its outcome is known, and the server applies it at
// most once. Registering the same name elsewhere fences this handle: its
// commits then fail with ErrFenced and change nothing.
//
// A Producer is safe for concurrent use; commits are sent one at a time,
// in order.
type Producer struct {
	c     *Client
	name  string
	id    uint64
	epoch uint64
	opts  ProducerOptions

	mu      sync.Mutex // serializes commits
	seq     uint64     // last seq sent
	pending *pb.CommitRequest
	fenced  error

	bufMu   sync.Mutex
	bufOps  []*pb.Op
	bufOffs map[string]int64
	bufWms  map[string]*pb.Watermark
	bufSize int
	timer   *time.Timer
	bgErr   error

	offsets map[string]int64 // committed offsets as of registration
}

// RegisterProducer opens a session under name (fencing older instances)
// and returns a handle holding the offsets committed so far.
func (c *Client) RegisterProducer(ctx context.Context, name string, opts ProducerOptions) (*Producer, error) {
	if opts.MaxOps <= 0 {
		opts.MaxOps = DefaultProducerOptions().MaxOps
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultProducerOptions().MaxBytes
	}
	var resp *pb.RegisterProducerResponse
	// Registering twice only bumps the epoch twice: safe to retry.
	err := c.call(ctx, retrySafe, func(ctx context.Context, cc *grpc.ClientConn, o ...grpc.CallOption) (err error) {
		resp, err = pb.NewProducerClient(cc).RegisterProducer(ctx, &pb.RegisterProducerRequest{Name: name}, o...)
		return err
	})
	if err != nil {
		return nil, err
	}
	p := &Producer{c: c, name: name, id: resp.GetProducerId(), epoch: resp.GetEpoch(), opts: opts, offsets: map[string]int64{}}
	for _, o := range resp.GetOffsets() {
		p.offsets[o.GetSource()] = o.GetOffset()
	}
	return p, nil
}

// ID, Epoch and Name identify the session.
func (p *Producer) ID() uint64    { return p.id }
func (p *Producer) Epoch() uint64 { return p.epoch }
func (p *Producer) Name() string  { return p.name }

// Offsets returns the offsets committed before this session registered:
// where a restarted operator resumes.
func (p *Producer) Offsets() map[string]int64 {
	out := make(map[string]int64, len(p.offsets))
	for k, v := range p.offsets {
		out[k] = v
	}
	return out
}

// CommitResult is a commit's outcome.
type CommitResult struct {
	Index     uint64
	Seq       uint64
	Duplicate bool // an earlier attempt of this commit had already applied
	Nums      []int64
	Late      uint64
}

// ErrPreviousUnresolved: Commit was called while an earlier commit's
// outcome was still unknown and re-sending it failed again. The new commit
// was NOT sent; call it again (or Resolve) once the cluster is reachable.
var ErrPreviousUnresolved = errors.New("cairn: previous commit still unresolved; this commit was not sent")

// Commit applies ops and records offsets and watermarks atomically and
// exactly once. If it returns ErrUnknownOutcome or ErrUnavailable, the
// commit is held: the handle re-sends it, with the same sequence number, in
// Resolve or before the next Commit — never re-submit its ops yourself. If
// it returns ErrPreviousUnresolved, an earlier held commit could not be
// resolved and this one was not sent.
func (p *Producer) Commit(ctx context.Context, ops []*pb.Op, offsets map[string]int64, wms ...*pb.Watermark) (*CommitResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fenced != nil {
		return nil, p.fenced
	}
	if p.pending != nil {
		if _, err := p.send(ctx, p.pending); err != nil {
			if errors.Is(err, ErrFenced) {
				return nil, err
			}
			return nil, &clientError{ErrPreviousUnresolved, err}
		}
	}
	return p.commitLocked(ctx, ops, offsets, wms)
}

// Pending reports whether a commit with an unknown outcome is held.
func (p *Producer) Pending() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pending != nil
}

// Resolve re-sends the held commit, if any, until its outcome is known, and
// returns its result (nil, nil when nothing is held).
func (p *Producer) Resolve(ctx context.Context) (*CommitResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pending == nil {
		return nil, p.fenced
	}
	return p.send(ctx, p.pending)
}

func (p *Producer) commitLocked(ctx context.Context, ops []*pb.Op, offsets map[string]int64, wms []*pb.Watermark) (*CommitResult, error) {
	p.seq++
	req := &pb.CommitRequest{ProducerId: p.id, Epoch: p.epoch, Seq: p.seq, Ops: ops, Watermarks: wms}
	srcs := make([]string, 0, len(offsets))
	for s := range offsets {
		srcs = append(srcs, s)
	}
	sort.Strings(srcs)
	for _, s := range srcs {
		req.Offsets = append(req.Offsets, &pb.Offset{Source: s, Offset: offsets[s]})
	}
	p.pending = req
	return p.send(ctx, req)
}

// send retries req (same seq) until its outcome is known.
func (p *Producer) send(ctx context.Context, req *pb.CommitRequest) (*CommitResult, error) {
	var resp *pb.CommitResponse
	err := p.c.call(ctx, retrySafe, func(ctx context.Context, cc *grpc.ClientConn, o ...grpc.CallOption) (err error) {
		resp, err = pb.NewProducerClient(cc).Commit(ctx, req, o...)
		return err
	})
	switch {
	case err == nil:
		p.pending = nil
		if resp.GetDuplicate() {
			p.c.dups.Add(1)
		}
		return &CommitResult{Index: resp.GetIndex(), Seq: req.GetSeq(), Duplicate: resp.GetDuplicate(), Nums: resp.GetNums(), Late: resp.GetLate()}, nil
	case errors.Is(err, ErrFenced):
		p.c.fenced.Add(1)
		p.fenced, p.pending = err, nil
		return nil, err
	case errors.Is(err, ErrUnknownOutcome), errors.Is(err, ErrUnavailable):
		return nil, err // keep pending: re-sent before the next commit
	}
	// A definite rejection (sequence gap, invalid op, failed CAS): the
	// server recorded the outcome for this seq; move on.
	p.pending = nil
	return nil, err
}

// Add buffers an op; it is committed with the next flush, together with
// the offsets and watermarks buffered by then.
func (p *Producer) Add(ctx context.Context, op *pb.Op) error {
	p.bufMu.Lock()
	if err := p.bgErr; err != nil {
		p.bgErr = nil
		p.bufMu.Unlock()
		return err
	}
	p.bufOps = append(p.bufOps, op)
	p.bufSize += proto.Size(op)
	full := len(p.bufOps) >= p.opts.MaxOps || p.bufSize >= p.opts.MaxBytes
	if !full && p.opts.Linger > 0 && p.timer == nil {
		p.timer = time.AfterFunc(p.opts.Linger, p.lingerFlush)
	}
	p.bufMu.Unlock()
	if full {
		return p.Flush(ctx)
	}
	return nil
}

// SetOffset records a source offset to commit with the buffered ops.
func (p *Producer) SetOffset(source string, offset int64) {
	p.bufMu.Lock()
	defer p.bufMu.Unlock()
	if p.bufOffs == nil {
		p.bufOffs = map[string]int64{}
	}
	p.bufOffs[source] = offset
}

// SetWatermark records a source watermark to commit with the buffered ops.
func (p *Producer) SetWatermark(w *pb.Watermark) {
	p.bufMu.Lock()
	defer p.bufMu.Unlock()
	if p.bufWms == nil {
		p.bufWms = map[string]*pb.Watermark{}
	}
	p.bufWms[w.GetSource()] = w
}

func (p *Producer) lingerFlush() {
	if err := p.Flush(context.Background()); err != nil {
		p.bufMu.Lock()
		p.bgErr = err
		p.bufMu.Unlock()
	}
}

// Flush commits everything buffered (ops, offsets, watermarks) as one commit.
func (p *Producer) Flush(ctx context.Context) error {
	p.bufMu.Lock()
	ops, offs, wmm := p.bufOps, p.bufOffs, p.bufWms
	p.bufOps, p.bufOffs, p.bufWms, p.bufSize = nil, nil, nil, 0
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	p.bufMu.Unlock()
	if len(ops) == 0 && len(offs) == 0 && len(wmm) == 0 {
		return nil
	}
	srcs := make([]string, 0, len(wmm))
	for s := range wmm {
		srcs = append(srcs, s)
	}
	sort.Strings(srcs)
	wms := make([]*pb.Watermark, 0, len(srcs))
	for _, s := range srcs {
		wms = append(wms, wmm[s])
	}
	_, err := p.Commit(ctx, ops, offs, wms...)
	return err
}

// GetOffsets reads the named producer's committed offsets and sequence.
func (c *Client) GetOffsets(ctx context.Context, name string) (*pb.GetOffsetsResponse, error) {
	var resp *pb.GetOffsetsResponse
	err := c.call(ctx, retryRead, func(ctx context.Context, cc *grpc.ClientConn, o ...grpc.CallOption) (err error) {
		resp, err = pb.NewProducerClient(cc).GetOffsets(ctx, &pb.GetOffsetsRequest{Name: name}, o...)
		return err
	})
	return resp, err
}
