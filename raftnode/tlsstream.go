package raftnode

import (
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// StreamTLS are the TLS configurations of a TLSStreamLayer: Server for
// accepted connections (it should require client certificates: every peer
// is a member), Client for dialled ones.
type StreamTLS struct{ Server, Client *tls.Config }

// TLSStreamLayer carries raft traffic over TLS on top of another stream
// layer (TCP, or a fault-injecting wrapper in tests). Accepted connections
// handshake on their first read, on the transport's connection goroutine,
// so that a slow or hostile client does not hold up the accept loop; dials
// handshake before raft writes to them, within the dial's timeout.
type TLSStreamLayer struct {
	raft.StreamLayer
	server, client *tls.Config
}

// NewTLSStreamLayer wraps inner: server is used for accepted connections
// (it should require client certificates: every peer is a member), client
// for dialled ones (its ServerName, if empty, is the dialled host).
func NewTLSStreamLayer(inner raft.StreamLayer, server, client *tls.Config) *TLSStreamLayer {
	return &TLSStreamLayer{StreamLayer: inner, server: server, client: client}
}

// Accept returns the next connection, to be handshaken on first use.
func (s *TLSStreamLayer) Accept() (net.Conn, error) {
	c, err := s.StreamLayer.Accept()
	if err != nil {
		return nil, err
	}
	return tls.Server(c, s.server), nil
}

// Dial connects to a peer and completes the TLS handshake.
func (s *TLSStreamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := s.StreamLayer.Dial(addr, timeout)
	if err != nil {
		return nil, err
	}
	cfg := s.client
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(string(addr))
		if err != nil {
			_ = c.Close()
			return nil, err
		}
		cfg = cfg.Clone()
		cfg.ServerName = host
	}
	tc := tls.Client(c, cfg)
	if timeout > 0 {
		_ = tc.SetDeadline(time.Now().Add(timeout))
	}
	if err := tc.Handshake(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("raft: TLS handshake with %s: %w", addr, err)
	}
	_ = tc.SetDeadline(time.Time{})
	return tc, nil
}
