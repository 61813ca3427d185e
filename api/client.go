package api

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/cairn-db/cairn/internal/tlsconf"
)

// Client errors. Every error the client returns wraps one of these (when
// it applies) and also the gRPC status, so both errors.Is and
// status.FromError work.
var (
	// ErrUnknownOutcome: a write may or may not have been applied (timeout,
	// leadership lost, connection cut after sending). Never a plain failure.
	ErrUnknownOutcome = errors.New("cairn: outcome unknown")
	// ErrFenced: a newer instance registered the same producer name.
	ErrFenced = errors.New("cairn: producer fenced by a newer instance")
	// ErrNotFound: the key (or producer) does not exist.
	ErrNotFound = errors.New("cairn: not found")
	// ErrCASFailed: a compare-and-set precondition did not hold; nothing applied.
	ErrCASFailed = errors.New("cairn: compare-and-set failed")
	// ErrUnavailable: no node could serve the call within the retry budget.
	ErrUnavailable = errors.New("cairn: unavailable")
)

type clientError struct {
	kind  error
	cause error
}

func (e *clientError) Error() string   { return e.cause.Error() }
func (e *clientError) Unwrap() []error { return []error{e.kind, e.cause} }

// DefaultEndpoints are the client addresses `cairn dev` starts.
var DefaultEndpoints = []string{"127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"}

// ClientConfig configures a Client.
type ClientConfig struct {
	Endpoints []string
	// AttemptTimeout bounds one attempt when ctx has a later (or no) deadline.
	AttemptTimeout time.Duration
	// RetryBudget bounds all attempts of a call when ctx has no deadline.
	RetryBudget time.Duration
	BackoffMin  time.Duration
	BackoffMax  time.Duration
	Logger      *slog.Logger
	// TLS, if set, connects over TLS (TLSFromFiles builds one from PEM
	// files); nil: plaintext.
	TLS *tls.Config
}

// DefaultClientConfig returns defaults for endpoints.
func DefaultClientConfig(endpoints ...string) ClientConfig {
	if len(endpoints) == 0 {
		endpoints = DefaultEndpoints
	}
	return ClientConfig{Endpoints: endpoints, AttemptTimeout: 5 * time.Second, RetryBudget: 30 * time.Second,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 250 * time.Millisecond}
}

// withDefaults fills the durations left at zero with DefaultClientConfig's,
// so that ClientConfig{Endpoints: ...} is usable as it reads.
func (c ClientConfig) withDefaults() ClientConfig {
	d := DefaultClientConfig(c.Endpoints...)
	if c.AttemptTimeout == 0 {
		c.AttemptTimeout = d.AttemptTimeout
	}
	if c.RetryBudget == 0 {
		c.RetryBudget = d.RetryBudget
	}
	if c.BackoffMin == 0 {
		c.BackoffMin = d.BackoffMin
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = max(d.BackoffMax, c.BackoffMin)
	}
	return c
}

// Validate reports an unusable configuration (zero durations mean the
// defaults; NewClient fills them in).
func (c ClientConfig) Validate() error {
	if len(c.Endpoints) == 0 {
		return errors.New("cairn client: no endpoints")
	}
	c = c.withDefaults()
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"AttemptTimeout", c.AttemptTimeout}, {"RetryBudget", c.RetryBudget}, {"BackoffMin", c.BackoffMin}, {"BackoffMax", c.BackoffMax}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("cairn client: %s must not be negative, got %v", d.name, d.v))
		}
	}
	if c.BackoffMax < c.BackoffMin {
		errs = append(errs, fmt.Errorf("cairn client: BackoffMax %v is below BackoffMin %v", c.BackoffMax, c.BackoffMin))
	}
	return errors.Join(errs...)
}

// Stats counts what the client did to get calls through.
type Stats struct {
	Calls           uint64 // calls made by the application
	Retries         uint64 // extra attempts after a retryable failure
	Redirects       uint64 // answers that named another node as leader
	UnknownOutcomes uint64 // writes that ended with ErrUnknownOutcome
	Duplicates      uint64 // producer commits answered as duplicates (a retry had already applied)
	Fenced          uint64 // producer commits rejected as fenced
}

// Client talks to a cairn cluster. It is safe for concurrent use.
type Client struct {
	cfg   ClientConfig
	log   *slog.Logger
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
	// leader is the endpoint believed to be the leader ("" unknown).
	leader string
	next   atomic.Uint64

	calls, retries, redirects, unknown, dups, fenced atomic.Uint64
}

// NewClient returns a client; connections are made lazily.
func NewClient(cfg ClientConfig) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	l := cfg.Logger
	if l == nil {
		l = slog.Default()
	}
	return &Client{cfg: cfg, log: l, conns: map[string]*grpc.ClientConn{}}, nil
}

// Close closes all connections.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for a, cc := range c.conns {
		_ = cc.Close()
		delete(c.conns, a)
	}
	return nil
}

// Stats returns the counters.
func (c *Client) Stats() Stats {
	return Stats{Calls: c.calls.Load(), Retries: c.retries.Load(), Redirects: c.redirects.Load(),
		UnknownOutcomes: c.unknown.Load(), Duplicates: c.dups.Load(), Fenced: c.fenced.Load()}
}

func (c *Client) conn(addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc, ok := c.conns[addr]; ok {
		return cc, nil
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(tlsconf.Credentials(c.cfg.TLS)))
	if err != nil {
		return nil, err
	}
	c.conns[addr] = cc
	return cc, nil
}

// pick returns the endpoint to try: the known leader, else round robin.
func (c *Client) pick() string {
	c.mu.Lock()
	l := c.leader
	c.mu.Unlock()
	if l != "" {
		return l
	}
	return c.cfg.Endpoints[(c.next.Add(1)-1)%uint64(len(c.cfg.Endpoints))] // the first one first
}

func (c *Client) setLeader(addr string) {
	c.mu.Lock()
	if c.leader != addr {
		c.leader = addr
		if addr != "" {
			c.redirects.Add(1)
		}
	}
	c.mu.Unlock()
}

// retryPolicy says which failures a call may retry.
type retryPolicy int

const (
	// retryRead: reads: any transient failure may be retried.
	retryRead retryPolicy = iota
	// retrySafe: producer commits (deduplicated): any transient failure,
	// including an unknown outcome, may be retried.
	retrySafe
	// retryUnsent: plain writes: only failures that prove the write was
	// not submitted are retried; an unknown outcome is returned.
	retryUnsent
)

// notSent reports failures that prove the request never entered the log.
func notSent(err error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable {
		return false
	}
	switch ReasonOf(err) {
	case ReasonNotLeader, ReasonNoLeader:
		return true
	}
	// No connection was made, or the far end is not a gRPC server (its
	// preface never came: a node's HTTP port, say): nothing was sent.
	m := st.Message()
	for _, s := range []string{"not submitted", "shutting down", "Error while dialing", "connection refused",
		"name resolver error", "produced zero addresses", "error reading server preface"} {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}

// transient reports failures worth retrying when the call is safe to repeat.
// ResourceExhausted is not one: in cairn it only comes from gRPC's message
// size limits (a request or response over them), which the same call
// would hit again — retrying it spent the whole retry budget before failing.
func transient(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
		return true
	}
	return false
}

// call runs fn against endpoints until it succeeds, fails definitely, or
// the budget runs out.
func (c *Client) call(ctx context.Context, policy retryPolicy, fn func(ctx context.Context, cc *grpc.ClientConn, opts ...grpc.CallOption) error) error {
	c.calls.Add(1)
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.RetryBudget)
		defer cancel()
	}
	backoff := c.cfg.BackoffMin
	sentOnce := false
	for attempt := 0; ; attempt++ {
		addr := c.pick()
		cc, err := c.conn(addr)
		if err == nil {
			actx, cancel := context.WithTimeout(ctx, c.cfg.AttemptTimeout)
			var hdr metadata.MD
			err = fn(actx, cc, grpc.Header(&hdr))
			cancel()
			if err == nil {
				if l := hdr.Get(MDLeader); len(l) > 0 {
					c.setLeader(l[0])
				}
				return nil
			}
		}
		// Decide whether to go on.
		unsent := notSent(err)
		if !unsent {
			sentOnce = true
		}
		if unsent || status.Code(err) == codes.DeadlineExceeded || status.Code(err) == codes.Unavailable {
			c.setLeader("") // whoever we thought was leader did not serve it
		}
		retry := transient(err)
		if policy == retryUnsent && !unsent {
			retry = false
		}
		if !retry || ctx.Err() != nil {
			return c.wrap(err, policy, sentOnce)
		}
		c.retries.Add(1)
		d := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return c.wrap(err, policy, sentOnce)
		}
		backoff = min(backoff*2, c.cfg.BackoffMax)
	}
}

func (c *Client) wrap(err error, policy retryPolicy, sent bool) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); !ok {
		err = status.Error(codes.Unavailable, err.Error())
	}
	switch {
	case status.Code(err) == codes.NotFound:
		return &clientError{ErrNotFound, err}
	case ReasonOf(err) == ReasonFenced:
		return &clientError{ErrFenced, err}
	case ReasonOf(err) == ReasonCASFailed:
		return &clientError{ErrCASFailed, err}
	case policy != retryRead && sent && (status.Code(err) == codes.DeadlineExceeded || status.Code(err) == codes.Unavailable || status.Code(err) == codes.Canceled):
		c.unknown.Add(1)
		return &clientError{ErrUnknownOutcome, err}
	case status.Code(err) == codes.Unavailable:
		return &clientError{ErrUnavailable, err}
	}
	return err
}

// TLSFromFiles returns a client TLS configuration from PEM files: the CA
// that signed the nodes' certificates and, for nodes run with
// --tls-client-auth, this client's certificate and key ("" for none).
func TLSFromFiles(caFile, certFile, keyFile string) (*tls.Config, error) {
	c, err := tlsconf.Client(caFile, certFile, keyFile)
	if err == nil && c == nil {
		err = errors.New("cairn client: TLS needs at least the CA file")
	}
	return c, err
}
