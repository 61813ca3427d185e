package cluster

import (
	"fmt"
	"net"
)

// NodeIP returns the loopback address of node i (1-based):
// 127.0.0.(base+i). Every node has its own address so that packet filters
// can tell nodes apart; the harness's clients use 127.0.0.1.
func NodeIP(base, i int) string { return fmt.Sprintf("127.0.0.%d", base+i) }

// freePorts returns n distinct TCP ports free on ip right now. All n are
// held until the last is chosen: released one by one, the kernel may hand
// the same port out twice (about once in 2,000 triples here; once in a
// .ci/run, as raft and gRPC address of one node), and a node
// given one port for two listeners fails to start. The ports are released
// before the node binds them; a node that loses that race to another
// process fails to start and Start reports it.
func freePorts(ip string, n int) ([]int, error) {
	out := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		out = append(out, ln.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
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
