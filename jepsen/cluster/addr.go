package cluster

import (
	"fmt"
	"net"
)

// NodeIP returns the loopback address of node i (1-based):
// 127.0.0.(base+i). Every node has its own address so that packet filters
// can tell nodes apart; the harness's clients use 127.0.0.1.
func NodeIP(base, i int) string { return fmt.Sprintf("127.0.0.%d", base+i) }

// freePort returns a TCP port free on ip right now. The port is released
// before the node binds it; a node that loses the race fails to start and
// Start reports it.
func freePort(ip string) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// LoopbackUsable reports whether ip can be bound (127.0.0.0/8 is local on
// Linux; other systems may only have 127.0.0.1).
func LoopbackUsable(ip string) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return fmt.Errorf("cannot bind %s: %w", ip, err)
	}
	return ln.Close()
}
