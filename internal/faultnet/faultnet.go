// Package faultnet wraps a raft.StreamLayer so that in-process tests can cut
// a node off the network: while isolated, dials fail, accepted connections
// are closed at once and every open connection is torn down. It is the
// transport hook for fault tests; packet-dropping partitions between real
// processes live in jepsen/.
package faultnet

import (
	"errors"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// ErrIsolated is returned by Dial while the layer is isolated.
var ErrIsolated = errors.New("faultnet: isolated")

// Layer is a raft.StreamLayer with an isolation switch.
type Layer struct {
	raft.StreamLayer
	mu       sync.Mutex
	isolated bool
	conns    map[net.Conn]struct{}
}

// Wrap returns a Layer around s.
func Wrap(s raft.StreamLayer) *Layer {
	return &Layer{StreamLayer: s, conns: map[net.Conn]struct{}{}}
}

// Isolate cuts (true) or restores (false) all traffic of this node.
func (l *Layer) Isolate(on bool) {
	l.mu.Lock()
	l.isolated = on
	var cut []net.Conn
	if on {
		for c := range l.conns {
			cut = append(cut, c.(*trackedConn).Conn)
		}
		l.conns = map[net.Conn]struct{}{}
	}
	l.mu.Unlock()
	for _, c := range cut {
		_ = c.Close()
	}
}

// Isolated reports the switch.
func (l *Layer) Isolated() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.isolated
}

func (l *Layer) track(c net.Conn) (net.Conn, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.isolated {
		_ = c.Close()
		return nil, false
	}
	tc := &trackedConn{Conn: c, l: l}
	l.conns[tc] = struct{}{}
	return tc, true
}

// Accept returns the next connection that arrives while not isolated.
func (l *Layer) Accept() (net.Conn, error) {
	for {
		c, err := l.StreamLayer.Accept()
		if err != nil {
			return nil, err
		}
		if tc, ok := l.track(c); ok {
			return tc, nil
		}
	}
}

// Dial connects unless isolated.
func (l *Layer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if l.Isolated() {
		return nil, ErrIsolated
	}
	c, err := l.StreamLayer.Dial(addr, timeout)
	if err != nil {
		return nil, err
	}
	if tc, ok := l.track(c); ok {
		return tc, nil
	}
	return nil, ErrIsolated
}

type trackedConn struct {
	net.Conn
	l *Layer
}

func (c *trackedConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}
