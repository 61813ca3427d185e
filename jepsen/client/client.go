package client

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-db/cairn/api"
	pb "github.com/cairn-db/cairn/api/cairnpb"
	"github.com/cairn-db/cairn/internal/tlsconf"
	"github.com/cairn-db/cairn/linearizability"
)

// Node is a node clients can talk to.
type Node struct {
	ID   string
	Addr string // gRPC
}

// Pool holds what all clients share: the recorder, one reader client per
// node (reads are sent to a chosen node, as a client attached to that node
// would) and raw connections for producer sessions.
type Pool struct {
	Rec     *Recorder
	Nodes   []Node
	Timeout time.Duration // per operation
	TLS     *tls.Config   // nil: plaintext
	// LeaseReads is the share of reads sent as lease reads (the leader
	// answers without a heartbeat round while its lease holds) instead of
	// linearizable ones. Both must be linearizable here: every node runs
	// on one machine, one clock.
	LeaseReads float64

	readers map[string]*api.Client
	mu      sync.Mutex
	conns   map[string]*grpc.ClientConn
}

// NewPool creates the shared clients. timeout bounds each operation;
// tlsCfg (nil: plaintext) is what every connection uses.
func NewPool(rec *Recorder, nodes []Node, timeout time.Duration, tlsCfg *tls.Config) (*Pool, error) {
	p := &Pool{Rec: rec, Nodes: nodes, Timeout: timeout, TLS: tlsCfg, readers: map[string]*api.Client{}, conns: map[string]*grpc.ClientConn{}}
	for _, n := range nodes {
		c, err := newAPIClient(timeout, tlsCfg, n.Addr)
		if err != nil {
			return nil, err
		}
		p.readers[n.ID] = c
	}
	return p, nil
}

func newAPIClient(timeout time.Duration, tlsCfg *tls.Config, endpoints ...string) (*api.Client, error) {
	cfg := api.DefaultClientConfig(endpoints...)
	cfg.TLS = tlsCfg
	cfg.AttemptTimeout = min(timeout, time.Second)
	cfg.RetryBudget = timeout
	cfg.BackoffMin, cfg.BackoffMax = 10*time.Millisecond, 200*time.Millisecond
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	return api.NewClient(cfg)
}

func (p *Pool) conn(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(tlsconf.Credentials(p.TLS)))
	if err != nil {
		return nil, err
	}
	p.conns[addr] = c
	return c, nil
}

// Close closes every connection.
func (p *Pool) Close() {
	for _, r := range p.readers {
		_ = r.Close()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for a, c := range p.conns {
		_ = c.Close()
		delete(p.conns, a)
	}
}

// Client is one logical client: it issues one operation at a time.
type Client struct {
	ID   int
	pool *Pool
	kv   *api.Client // writes: all endpoints, leader discovery
	rng  *rand.Rand
	n    uint32
	prod int // index of the node producer commits go to
	// final marks the records of successful reads as final reads.
	final bool
}

// NewClient returns logical client id; rng picks nodes after failures.
func (p *Pool) NewClient(id int, rng *rand.Rand) (*Client, error) {
	eps := make([]string, len(p.Nodes))
	for i, n := range p.Nodes {
		eps[i] = n.Addr
	}
	kv, err := newAPIClient(p.Timeout, p.TLS, eps...)
	if err != nil {
		return nil, err
	}
	return &Client{ID: id, pool: p, kv: kv, rng: rng, prod: id % len(p.Nodes)}, nil
}

// SetFinal makes the following successful reads final reads: issued after
// the workload stopped and the cluster recovered, they must reflect every
// committed write.
func (c *Client) SetFinal(on bool) { c.final = on }

// Close releases the client's connections.
func (c *Client) Close() { _ = c.kv.Close() }

// next returns a fresh request id and its history id.
func (c *Client) next() (uint64, string) {
	c.n++
	rid := RequestID(c.ID, c.n)
	id, _ := OpID(rid)
	return rid, id
}

func (c *Client) begin(op linearizability.Op) (Record, context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), c.pool.Timeout)
	op.Client = c.ID
	op.Call = c.pool.Rec.Now()
	return Record{Op: op}, ctx, cancel
}

func (c *Client) finish(r *Record, outcome linearizability.Outcome, err error) Record {
	r.Return = c.pool.Rec.Now()
	r.Outcome = outcome
	if c.final && outcome == linearizability.OutcomeOK && !r.Type.IsWrite() {
		r.Final = true
	}
	if err != nil {
		r.Error = trimErr(err)
	}
	c.pool.Rec.Add(*r)
	return *r
}

func trimErr(err error) string {
	s := err.Error()
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// writeOutcome classifies the error of a write. Only answers that prove
// the write never reached the log are failures; everything else that is
// not a success is unknown.
func writeOutcome(err error) linearizability.Outcome {
	switch {
	case err == nil:
		return linearizability.OutcomeOK
	case errors.Is(err, api.ErrUnknownOutcome):
		return linearizability.OutcomeUnknown
	case errors.Is(err, api.ErrUnavailable):
		return linearizability.OutcomeFail // the client saw no attempt sent
	}
	switch status.Code(err) {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.AlreadyExists, codes.NotFound, codes.OutOfRange:
		return linearizability.OutcomeFail // rejected: nothing applied
	}
	return linearizability.OutcomeUnknown
}

// readOutcome classifies a failed read: reads change nothing, so the
// distinction only matters to people reading the history.
func readOutcome(err error) linearizability.Outcome {
	if errors.Is(err, api.ErrUnavailable) {
		return linearizability.OutcomeFail
	}
	return linearizability.OutcomeUnknown
}

// Put writes key=value with a request id.
func (c *Client) Put(key, value string) Record {
	rid, id := c.next()
	r, ctx, cancel := c.begin(linearizability.Op{ID: id, Type: linearizability.OpPut, Key: key, Value: value})
	defer cancel()
	_, err := c.kv.BatchWithID(ctx, rid, api.PutOp([]byte(key), []byte(value)))
	return c.finish(&r, writeOutcome(err), err)
}

// CAS sets key to value if it holds expected.
func (c *Client) CAS(key, expected, value string) Record {
	rid, id := c.next()
	r, ctx, cancel := c.begin(linearizability.Op{ID: id, Type: linearizability.OpCAS, Key: key, Expected: expected, Value: value})
	defer cancel()
	_, err := c.kv.BatchWithID(ctx, rid, api.CASOp([]byte(key), []byte(expected), []byte(value)))
	if errors.Is(err, api.ErrCASFailed) {
		f := false
		r.Applied = &f
		return c.finish(&r, linearizability.OutcomeOK, nil)
	}
	if err == nil {
		t := true
		r.Applied = &t
	}
	return c.finish(&r, writeOutcome(err), err)
}

// Get reads key (linearizable) at node.
func (c *Client) Get(node, key string) Record {
	_, id := c.next()
	r, ctx, cancel := c.begin(linearizability.Op{ID: id, Type: linearizability.OpGet, Key: key})
	defer cancel()
	r.Node = node
	v, _, err := c.pool.readers[node].Get(ctx, []byte(key), c.readLevel(&r))
	switch {
	case errors.Is(err, api.ErrNotFound):
		return c.finish(&r, linearizability.OutcomeOK, nil)
	case err != nil:
		return c.finish(&r, readOutcome(err), err)
	}
	r.Found, r.Result = true, v.String()
	return c.finish(&r, linearizability.OutcomeOK, nil)
}

// readLevel picks a read's consistency (Pool.LeaseReads) and notes a
// lease read in r. Final reads are always linearizable.
func (c *Client) readLevel(r *Record) api.ReadOption {
	if !c.final && c.pool.LeaseReads > 0 && c.rng.Float64() < c.pool.LeaseReads {
		r.Consistency = "lease"
		return api.WithConsistency(pb.Consistency_LEASE)
	}
	return api.WithConsistency(pb.Consistency_LINEARIZABLE)
}

// Transfer moves amount from one account key to another in one atomic
// batch of two integer adds.
func (c *Client) Transfer(from, to string, amount int64) Record {
	rid, id := c.next()
	r, ctx, cancel := c.begin(linearizability.Op{ID: id, Type: linearizability.OpTransfer, From: from, To: to, Amount: amount})
	defer cancel()
	_, err := c.kv.BatchWithID(ctx, rid, api.AddOp([]byte(from), -amount), api.AddOp([]byte(to), amount))
	if err == nil {
		t := true
		r.Applied = &t
	}
	return c.finish(&r, writeOutcome(err), err)
}

// ReadAll scans prefix at node (one linearizable page) and returns the
// integer balances.
func (c *Client) ReadAll(node, prefix string) Record {
	_, id := c.next()
	r, ctx, cancel := c.begin(linearizability.Op{ID: id, Type: linearizability.OpReadAll})
	defer cancel()
	r.Node = node
	so := api.ScanOptions{Prefix: []byte(prefix), Limit: 1000}
	c.readLevel(&r)(&so.Consistency)
	kvs, next, err := c.pool.readers[node].Scan(ctx, so)
	if err != nil {
		return c.finish(&r, readOutcome(err), err)
	}
	if len(next) > 0 {
		return c.finish(&r, linearizability.OutcomeFail, errors.New("read-all needs more than one page: not atomic"))
	}
	r.Balances = map[string]int64{}
	for _, kv := range kvs {
		r.Balances[string(kv.Key)] = kv.Value.Int
	}
	return c.finish(&r, linearizability.OutcomeOK, nil)
}

// ReadCounter reads an integer key at node; missing reads 0.
func (c *Client) ReadCounter(node, key string) Record {
	_, id := c.next()
	r, ctx, cancel := c.begin(linearizability.Op{ID: id, Type: linearizability.OpRead, Key: key})
	defer cancel()
	r.Node = node
	v, _, err := c.pool.readers[node].Get(ctx, []byte(key), c.readLevel(&r))
	var total int64
	switch {
	case errors.Is(err, api.ErrNotFound):
	case err != nil:
		return c.finish(&r, readOutcome(err), err)
	default:
		total = v.Int
	}
	r.Total = &total
	return c.finish(&r, linearizability.OutcomeOK, nil)
}

// Session is a producer session: the name, the id and epoch the cluster
// gave it, and the last sequence number acknowledged.
type Session struct {
	Name  string
	ID    uint64
	Epoch uint64
	Seq   uint64
}

// Register opens (or re-opens, fencing the old epoch) a producer session.
// Registration is idempotent in effect (only the epoch moves), so it is
// retried until it succeeds or timeout passes.
func (c *Client) Register(name string, timeout time.Duration) (*Session, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for attempt := 0; ctx.Err() == nil; attempt++ {
		rid, _ := c.next()
		conn, err := c.pool.conn(c.pool.Nodes[c.prod].Addr)
		if err == nil {
			actx, acancel := context.WithTimeout(ctx, c.pool.Timeout)
			var resp *pb.RegisterProducerResponse
			resp, err = pb.NewProducerClient(conn).RegisterProducer(actx, &pb.RegisterProducerRequest{Name: name, RequestId: rid})
			acancel()
			if err == nil {
				return &Session{Name: name, ID: resp.GetProducerId(), Epoch: resp.GetEpoch()}, nil
			}
		}
		last = err
		c.prod = c.rng.IntN(len(c.pool.Nodes))
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(20+c.rng.IntN(80)) * time.Millisecond):
		}
	}
	return nil, errors.Join(errors.New("register producer: gave up"), last)
}

// CommitResult says what a producer commit attempt means for the session.
type CommitResult int

const (
	CommitOK       CommitResult = iota // applied (or answered as a duplicate)
	CommitRetry                        // unknown or not sent: retry the same seq
	CommitReopen                       // fenced, sequence gap, unknown producer: register again
	CommitRejected                     // a definite rejection of this commit
)

// Commit sends one attempt of increment (key += delta) as seq of session
// s and records it. Attempts go to one node (followers forward to the
// leader) and move to another node after a failure.
func (c *Client) Commit(s *Session, seq uint64, key string, delta int64) (Record, CommitResult) {
	rid, id := c.next()
	r, ctx, cancel := c.begin(linearizability.Op{ID: id, Type: linearizability.OpAdd, Key: key, Delta: delta,
		Producer: strconv.FormatUint(s.ID, 10), Epoch: s.Epoch, Seq: seq})
	defer cancel()
	node := c.pool.Nodes[c.prod]
	conn, err := c.pool.conn(node.Addr)
	var resp *pb.CommitResponse
	if err == nil {
		resp, err = pb.NewProducerClient(conn).Commit(ctx, &pb.CommitRequest{ProducerId: s.ID, Epoch: s.Epoch, Seq: seq,
			Ops: []*pb.Op{api.AddOp([]byte(key), delta)}, RequestId: rid})
	}
	if err == nil {
		if nums := resp.GetNums(); len(nums) == 1 {
			t := nums[0]
			r.Total = &t
		}
		return c.finish(&r, linearizability.OutcomeOK, nil), CommitOK
	}
	c.prod = c.rng.IntN(len(c.pool.Nodes))
	outcome, res := commitOutcome(err)
	return c.finish(&r, outcome, err), res
}

// commitOutcome classifies the error of a producer commit attempt: what it
// means for the history and for the session.
func commitOutcome(err error) (linearizability.Outcome, CommitResult) {
	switch api.ReasonOf(err) {
	case api.ReasonFenced, api.ReasonSequenceGap, api.ReasonUnknownProducer:
		return linearizability.OutcomeFail, CommitReopen
	case api.ReasonNotLeader, api.ReasonNoLeader:
		return linearizability.OutcomeFail, CommitRetry
	}
	switch status.Code(err) {
	case codes.InvalidArgument, codes.FailedPrecondition:
		return linearizability.OutcomeFail, CommitRejected
	case codes.Unavailable:
		if m := status.Convert(err).Message(); strings.Contains(m, "connection refused") || strings.Contains(m, "not submitted") {
			return linearizability.OutcomeFail, CommitRetry
		}
	}
	return linearizability.OutcomeUnknown, CommitRetry
}

// Unrecorded applies ops in one batch outside the history (workload
// setup); the caller must make the batch idempotent.
func (c *Client) Unrecorded(ops ...*pb.Op) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.pool.Timeout)
	defer cancel()
	_, err := c.kv.Batch(ctx, ops...)
	return err
}
