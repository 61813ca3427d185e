package raftnode

import (
	"net"
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

// raftTransport is the transport raft is given: nt with heartbeats handled
// by raft's main loop (mainLoopHeartbeats) and, unless pipeline is set,
// without pipelined replication (noPipelineTransport).
func raftTransport(nt *raft.NetworkTransport, pipeline bool) raft.Transport {
	if pipeline {
		return mainLoopHeartbeats{nt}
	}
	return noPipelineTransport{mainLoopHeartbeats{nt}}
}

// mainLoopHeartbeats refuses raft's heartbeat fast path. raft.NewRaft
// installs processHeartbeat as the transport's heartbeat handler, which runs
// appendEntries on the transport's connection goroutine, concurrently with
// raft's main loop, although appendEntries must only run on the main loop.
// A heartbeat from a newer leader then sets the term and the follower state
// while the deposed leader's loop is still dispatching client entries: those
// are written to the log with the *new* term (dispatchLogs reads the current
// term) at indexes where the new leader has different entries. Raft detects
// conflicting entries by term only, so they are never replaced, and the node
// applies a write that was never committed (a leader resumed from SIGSTOP with
// client writes queued did exactly this: jepsen bank, seed 11). Without a
// handler, the transport passes heartbeats to the main loop like every other
// RPC. The cost: a heartbeat can wait behind a follower's log write, which
// also counts as contact from the leader.
type mainLoopHeartbeats struct {
	*raft.NetworkTransport
}

func (mainLoopHeartbeats) SetHeartbeatHandler(func(raft.RPC)) {}

// noPipelineTransport turns off pipelined AppendEntries. hashicorp/raft's
// pipeline can deadlock after a partition heals (hashicorp/raft#612): the
// follower's replication stalls for good and Shutdown hangs — seen here in
// the fault harness. Without it, raft replicates with one synchronous
// AppendEntries per follower at a time (still up to MaxAppendEntries
// entries each).
type noPipelineTransport struct {
	mainLoopHeartbeats
}

func (noPipelineTransport) AppendEntriesPipeline(raft.ServerID, raft.ServerAddress) (raft.AppendPipeline, error) {
	return nil, raft.ErrPipelineReplicationNotSupported
}
