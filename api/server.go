package api

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	pb "github.com/cairn-db/cairn/api/cairnpb"
	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/fsm/command"
	"github.com/cairn-db/cairn/internal/faulty"
	"github.com/cairn-db/cairn/internal/tlsconf"
	"github.com/cairn-db/cairn/raftnode"
)

// Raft is what the handlers need of the consensus layer; *raftnode.Node
// implements it.
type Raft interface {
	Apply(ctx context.Context, data []byte) (*command.Result, error)
	ReadIndex(ctx context.Context) (uint64, error)
	LeaseIndex(ctx context.Context) (uint64, error)
	WaitApplied(ctx context.Context, index uint64) error
	Leader() (id, addr string)
	IsLeader() bool
	Status() raftnode.Status
	Members() ([]raftnode.Member, error)
	AddMember(id, addr string, voter bool) error
	RemoveMember(id string) error
	TransferLeadership(id string) error
}

// State is what the handlers read; *fsm.FSM implements it.
type State interface {
	Get(key []byte) (fsm.Value, uint64, error)
	Scan(req fsm.ScanRequest) ([]fsm.KV, []byte, uint64, error)
	Producer(name string) (*fsm.ProducerInfo, error)
	NodeAddrs() (map[string]string, error)

	// Windowed tables (see table.go).
	Table(name string) (fsm.TableInfo, error)
	Tables() ([]fsm.TableInfo, error)
	Windows(table string, key []byte, from, to int64) ([]fsm.WindowResult, error)
	WindowKeys(table string, start, end int64, after []byte, limit int) ([]fsm.WindowResult, error)
	ClosedSince(table string, index uint64, ord uint32, limit int) ([]fsm.ClosedResult, error)
	// Notify returns a channel closed the next time the applied index
	// moves; Watch waits on it for more closed windows.
	Notify() <-chan struct{}
}

// Config configures a Server.
type Config struct {
	NodeID   string
	GRPCAddr string // this node's advertised client address
	Limits   Limits
	Logger   *slog.Logger
	// ForwardTimeout bounds a call forwarded to the leader when the
	// caller set no deadline.
	ForwardTimeout time.Duration
	// PID reported by Status (the process id; tests may fake it).
	PID int64
	// CoalesceWrites lets concurrent plain puts and deletes share one log
	// entry (see coalescer). On by default.
	CoalesceWrites bool
	// PeerTLS, if set, is used to connect to other members (forwarded
	// calls, status); nil: plaintext.
	PeerTLS *tls.Config
}

// DefaultConfig returns defaults.
func DefaultConfig() Config {
	return Config{Limits: DefaultLimits(), ForwardTimeout: 30 * time.Second, CoalesceWrites: true}
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if c.NodeID == "" {
		return fmt.Errorf("api: NodeID is required")
	}
	if c.NodeID == NodeLeader || c.NodeID == NodeFollower {
		return fmt.Errorf("api: node id %q is reserved: checkpoint requests use it to name a role", c.NodeID)
	}
	return c.Limits.Validate()
}

// Server implements the cairn gRPC services on one node.
type Server struct {
	pb.UnimplementedKVServer
	pb.UnimplementedProducerServer
	pb.UnimplementedClusterServer
	pb.UnimplementedTableServer

	cfg   Config
	raft  Raft
	state State
	log   *slog.Logger

	connMu sync.Mutex
	conns  map[string]*grpc.ClientConn // peer gRPC address -> conn (forwarding, status)

	ckptMu sync.Mutex
	ckpt   Checkpoints // nil: this node serves no checkpoint catalog (see SetCheckpoints)

	// closing is closed by Close; open Watch streams end with Unavailable.
	closing   chan struct{}
	closeOnce sync.Once

	coalesce *coalescer // merges concurrent plain writes; nil: off
}

// NewServer returns a Server over a raft node and its state machine.
func NewServer(cfg Config, r Raft, s State) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l := cfg.Logger
	if l == nil {
		l = slog.Default()
	}
	srv := &Server{cfg: cfg, raft: r, state: s, log: l, conns: map[string]*grpc.ClientConn{}, closing: make(chan struct{})}
	if cfg.CoalesceWrites {
		srv.coalesce = newCoalescer(r, coalesceMaxOps, min(coalesceMaxBytes, cfg.Limits.MaxRequestBytes))
	}
	return srv, nil
}

// Register adds the services to g.
func (s *Server) Register(g *grpc.Server) {
	pb.RegisterKVServer(g, s)
	pb.RegisterProducerServer(g, s)
	pb.RegisterClusterServer(g, s)
	pb.RegisterTableServer(g, s)
	pb.RegisterCheckpointServer(g, &checkpointService{s: s})
}

// Close ends open Watch streams (clients reconnect elsewhere) and releases
// peer connections. Call it before a graceful gRPC stop, which otherwise
// waits for the streams.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { close(s.closing) })
	s.connMu.Lock()
	defer s.connMu.Unlock()
	for a, c := range s.conns {
		_ = c.Close()
		delete(s.conns, a)
	}
	return nil
}

func (s *Server) peerConn(addr string) (*grpc.ClientConn, error) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if c, ok := s.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(tlsconf.Credentials(s.cfg.PeerTLS)))
	if err != nil {
		return nil, err
	}
	s.conns[addr] = c
	return c, nil
}

const (
	mdForwarded = "cairn-forwarded"
	// mdTarget names the member a forwarded call is meant for, as "ID
	// RAFTADDR" with the address from the forwarding node's raft
	// configuration; see checkTarget.
	mdTarget = "cairn-target"
	// MDLeader is the response header naming the leader's gRPC address when
	// a call was forwarded, so clients can go there directly next time.
	MDLeader = "cairn-leader"
)

// leaderConn returns a connection to the leader, for forwarding. It fails
// with the original error when the call was already forwarded once (no
// loops) or the leader's address is not known yet.
func (s *Server) leaderConn(ctx context.Context, cause error) (*grpc.ClientConn, string, string, error) {
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get(mdForwarded)) > 0 {
		return nil, "", "", cause
	}
	id, _ := s.raft.Leader()
	if id == "" || id == s.cfg.NodeID {
		return nil, "", "", cause
	}
	addrs, err := s.state.NodeAddrs()
	if err != nil || addrs[id] == "" {
		return nil, "", "", cause
	}
	c, err := s.peerConn(addrs[id])
	if err != nil {
		return nil, "", "", cause
	}
	return c, id, addrs[id], nil
}

// forwardCtx is ctx for a call this node forwards to member id: it is
// marked as forwarded (no second hop) and names its target by id and raft
// address, so that a node reached through a stale client address refuses
// it (checkTarget).
func (s *Server) forwardCtx(ctx context.Context, id string) context.Context {
	md := []string{mdForwarded, s.cfg.NodeID}
	if addr := s.memberAddr(id); addr != "" {
		md = append(md, mdTarget, id+" "+addr)
	}
	return metadata.AppendToOutgoingContext(ctx, md...)
}

// memberAddr is id's raft address in this node's raft configuration ("" if
// not known).
func (s *Server) memberAddr(id string) string {
	ms, err := s.raft.Members()
	if err != nil {
		return ""
	}
	for _, m := range ms {
		if m.ID == id {
			return m.Addr
		}
	}
	return ""
}

// checkTarget refuses a call forwarded to this node that was meant for
// another member. Client addresses live in the replicated state; a cluster
// restored from another cluster's checkpoint starts with that cluster's
// addresses (until its members announce their own), under the same node
// ids, and would otherwise forward writes and reads to the old cluster.
// The target is named by id and by the raft address the forwarding node's
// configuration records for it: in one cluster both nodes read that
// address from the same replicated configuration.
func (s *Server) checkTarget(ctx context.Context) error {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok || len(md.Get(mdTarget)) == 0 {
		return nil
	}
	id, addr, _ := strings.Cut(md.Get(mdTarget)[0], " ")
	if id == s.cfg.NodeID && addr == s.memberAddr(id) {
		return nil
	}
	return statusWithReason(codes.Unavailable, ReasonNotLeader, fmt.Sprintf("call forwarded to %s at raft address %s reached %s, "+
		"which is not that member (a stale client address, e.g. from a restored checkpoint, or raft not started yet); "+
		"not submitted, safe to retry", id, addr, s.cfg.NodeID), nil)
}

// UnaryInterceptor and StreamInterceptor apply checkTarget; install both
// on the gRPC server the services are registered on.
func (s *Server) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if err := s.checkTarget(ctx); err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
}

func (s *Server) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if err := s.checkTarget(ss.Context()); err != nil {
			return err
		}
		return h(srv, ss)
	}
}

// forward sends the call to the leader when this node cannot serve it.
// newC builds the service client and call is the method expression, e.g.
// forward(s, ctx, err, req, pb.NewKVClient, pb.KVClient.Put).
func forward[C, Req, Resp any](s *Server, ctx context.Context, cause error, req Req,
	newC func(grpc.ClientConnInterface) C, call func(C, context.Context, Req, ...grpc.CallOption) (Resp, error)) (Resp, error) {
	var zero Resp
	conn, id, addr, err := s.leaderConn(ctx, cause)
	if err != nil {
		return zero, toStatus(err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.ForwardTimeout)
		defer cancel()
	}
	resp, err := call(newC(conn), s.forwardCtx(ctx, id), req)
	if err == nil {
		_ = grpc.SetHeader(ctx, metadata.Pairs(MDLeader, addr))
	}
	return resp, err
}

// isRedirect reports whether err means "ask the leader".
func isRedirect(err error) bool { return errors.Is(err, raftnode.ErrNotLeader) }

// apply submits an encoded command; a follower forwards via fwd.
func (s *Server) apply(ctx context.Context, c *command.Command) (*command.Result, error) {
	data, err := command.Encode(c)
	if err != nil {
		return nil, invalid("%v", err)
	}
	if faulty.Enabled(faulty.AckBeforeCommit) && s.raft.IsLeader() && c.Type == command.TypeBatch {
		// Planted bug: acknowledge as soon as the entry is handed to raft.
		go func() { _, _ = s.raft.Apply(context.WithoutCancel(ctx), data) }()
		return &command.Result{Nums: make([]int64, len(c.Batch.Ops))}, nil
	}
	return s.raft.Apply(ctx, data)
}

// readBarrier makes the local state fit to serve a read at consistency c,
// or returns a not-leader error for the caller to forward.
func (s *Server) readBarrier(ctx context.Context, c pb.Consistency) error {
	var idx uint64
	var err error
	switch {
	case c == pb.Consistency_STALE, faulty.Enabled(faulty.StaleRead):
		return nil
	case c == pb.Consistency_LEASE:
		idx, err = s.raft.LeaseIndex(ctx)
	default:
		idx, err = s.raft.ReadIndex(ctx)
	}
	if err != nil {
		return err
	}
	return s.raft.WaitApplied(ctx, idx)
}
