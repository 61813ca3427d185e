package raftnode

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// TCPStreamLayer is the default raft.StreamLayer: a TCP listener plus a
// dialer. Tests and the fault harness wrap it (or replace it) to drop,
// delay or cut traffic.
type TCPStreamLayer struct {
	net.Listener
	advertise net.Addr
}

// NewTCPStreamLayer listens on bind. advertise, if non-empty, is the
// address peers dial; otherwise the listener's address.
func NewTCPStreamLayer(bind, advertise string) (*TCPStreamLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	s := &TCPStreamLayer{Listener: ln, advertise: ln.Addr()}
	if advertise != "" {
		a, err := net.ResolveTCPAddr("tcp", advertise)
		if err != nil {
			_ = ln.Close()
			return nil, err
		}
		s.advertise = a
	}
	return s, nil
}

// Addr is the advertised address.
func (s *TCPStreamLayer) Addr() net.Addr { return s.advertise }

// Dial connects to a peer.
func (s *TCPStreamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	return d.Dial("tcp", string(addr))
}

// raftTransport is the transport raft is given: nt with raft's heartbeat
// fast path confined to the case where it is safe (gatedHeartbeats) and,
// unless pipeline is set, without pipelined replication
// (noPipelineTransport). Set the gate's raft once raft.NewRaft returned;
// until then no heartbeat takes the fast path.
func raftTransport(nt *raft.NetworkTransport, pipeline bool) (raft.Transport, *heartbeatGate) {
	g := &heartbeatGate{acks: map[raft.ServerID]time.Time{}}
	t := gatedHeartbeats{NetworkTransport: nt, gate: g}
	if pipeline {
		return t, g
	}
	return noPipelineTransport{t}, g
}

// gatedHeartbeats confines raft's heartbeat fast path. raft.NewRaft installs
// processHeartbeat as the transport's heartbeat handler, which runs
// appendEntries on the transport's connection goroutine, concurrently with
// raft's main loop, although appendEntries may change the node's term and
// state. A heartbeat from a newer leader then sets the term and the follower
// state while a deposed leader's loop is still dispatching client entries:
// those are written to the log with the *new* term (dispatchLogs reads the
// current term) at indexes where the new leader has different entries. Raft
// detects conflicting entries by term only, so they are never replaced, and
// the node applies a write that was never committed (a leader resumed from
// SIGSTOP with client writes queued did exactly this: jepsen bank, seed 11).
//
// The fast path is still what keeps a leader's lease alive while a
// follower's main loop is stuck in a slow log write (fsync behind a
// checkpoint or a compaction on a shared disk); sending every heartbeat
// through the main loop cost leaderships under load ("leadership lost while
// committing"). So a heartbeat is handled on the fast path only when it
// cannot change anything but the time of last contact: this node is a
// follower and the heartbeat carries its current term. Any other heartbeat
// is answered with an error, which the leader counts as a failed heartbeat
// (no contact); the leader's regular AppendEntries, which go through the
// main loop, carry the new term to a node that is behind. A race between
// the check and the handler is harmless: a node that meanwhile became a
// candidate or moved to a newer term has a higher term than the heartbeat,
// which appendEntries rejects without a change.
type gatedHeartbeats struct {
	*raft.NetworkTransport
	gate *heartbeatGate
}

// heartbeatGate decides, per heartbeat, whether raft's handler may run,
// and records when each peer last accepted an AppendEntries (heartbeat or
// replication) that was *sent* by this node, for ackedSince.
type heartbeatGate struct {
	raft    atomic.Pointer[raftView]
	handler atomic.Pointer[func(raft.RPC)]

	mu    sync.Mutex
	acks  map[raft.ServerID]time.Time // send time of the newest successful AppendEntries
	ackCh chan struct{}               // closed and replaced on every recorded ack
}

// afterTimeoutNow, if set (tests only, export_test.go), runs when a
// TimeoutNow RPC — a leadership transfer's hand-over — has returned.
var afterTimeoutNow atomic.Pointer[func()]

// TimeoutNow sends a leadership transfer's hand-over.
func (t gatedHeartbeats) TimeoutNow(id raft.ServerID, target raft.ServerAddress, args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	err := t.NetworkTransport.TimeoutNow(id, target, args, resp)
	if h := afterTimeoutNow.Load(); h != nil {
		(*h)()
	}
	return err
}

// ackNotify returns a channel closed at the next recorded ack.
func (g *heartbeatGate) ackNotify() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ackCh == nil {
		g.ackCh = make(chan struct{})
	}
	return g.ackCh
}

// AppendEntries records, for a successful call, when it was sent.
func (t gatedHeartbeats) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	sent := time.Now()
	err := t.NetworkTransport.AppendEntries(id, target, args, resp)
	if err == nil && resp.Success && resp.Term == args.Term {
		t.gate.mu.Lock()
		if sent.After(t.gate.acks[id]) {
			t.gate.acks[id] = sent
		}
		if t.gate.ackCh != nil {
			close(t.gate.ackCh)
			t.gate.ackCh = nil
		}
		t.gate.mu.Unlock()
	}
	return err
}

// ackedSince counts the peers among ids that accepted an AppendEntries sent
// at or after t.
func (g *heartbeatGate) ackedSince(t time.Time, ids []raft.ServerID) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, id := range ids {
		if a, ok := g.acks[id]; ok && !a.Before(t) {
			n++
		}
	}
	return n
}

// raftView is what the gate reads of raft (a *raft.Raft; fakes in tests).
type raftView struct {
	r interface {
		State() raft.RaftState
		CurrentTerm() uint64
	}
}

// errHeartbeatNeedsMainLoop answers a heartbeat the fast path must not take.
var errHeartbeatNeedsMainLoop = errors.New("raftnode: heartbeat not handled: it could change this node's term or state")

func (t gatedHeartbeats) SetHeartbeatHandler(cb func(raft.RPC)) {
	if cb == nil {
		t.gate.handler.Store(nil)
		t.NetworkTransport.SetHeartbeatHandler(nil)
		return
	}
	t.gate.handler.Store(&cb)
	t.NetworkTransport.SetHeartbeatHandler(t.gate.handle)
}

// setRaft arms the gate with the raft instance whose state it checks.
func (g *heartbeatGate) setRaft(r interface {
	State() raft.RaftState
	CurrentTerm() uint64
}) {
	g.raft.Store(&raftView{r})
}

func (g *heartbeatGate) handle(rpc raft.RPC) {
	if g.safe(rpc) {
		(*g.handler.Load())(rpc)
		return
	}
	rpc.Respond(nil, errHeartbeatNeedsMainLoop)
}

func (g *heartbeatGate) safe(rpc raft.RPC) bool {
	v, h := g.raft.Load(), g.handler.Load()
	req, ok := rpc.Command.(*raft.AppendEntriesRequest)
	return v != nil && h != nil && ok && v.r.State() == raft.Follower && req.Term == v.r.CurrentTerm()
}

// noPipelineTransport turns off pipelined AppendEntries. hashicorp/raft's
// pipeline can deadlock after a partition heals (hashicorp/raft#612): the
// follower's replication stalls for good and Shutdown hangs — seen here in
// the fault harness. Without it, raft replicates with one synchronous
// AppendEntries per follower at a time (still up to MaxAppendEntries
// entries each).
type noPipelineTransport struct {
	gatedHeartbeats
}

func (noPipelineTransport) AppendEntriesPipeline(raft.ServerID, raft.ServerAddress) (raft.AppendPipeline, error) {
	return nil, raft.ErrPipelineReplicationNotSupported
}
