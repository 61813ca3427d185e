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

// noPipelineTransport turns off pipelined AppendEntries. hashicorp/raft's
// pipeline can deadlock after a partition heals (hashicorp/raft#612): the
// follower's replication stalls for good and Shutdown hangs — seen here in
// the fault harness. Without it, raft replicates with one synchronous
// AppendEntries per follower at a time (still up to MaxAppendEntries
// entries each).
type noPipelineTransport struct {
	*raft.NetworkTransport
}

func (noPipelineTransport) AppendEntriesPipeline(raft.ServerID, raft.ServerAddress) (raft.AppendPipeline, error) {
	return nil, raft.ErrPipelineReplicationNotSupported
}
