package cluster

import "testing"

// A node's three listeners need three different ports. Chosen one at a
// time, each released before the next, the kernel returned the same port
// twice: this loop caught that within 1,000 attempts in each of three runs;
// with the ports held until all are chosen it cannot happen.
func TestFreePortsAreDistinct(t *testing.T) {
	ip := NodeIP(10, 1)
	if err := LoopbackUsable(ip); err != nil {
		t.Skipf("no per-node loopback address here: %v", err)
	}
	for i := 0; i < 5000; i++ {
		ports, err := freePorts(ip, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(ports) != 3 || ports[0] == ports[1] || ports[1] == ports[2] || ports[0] == ports[2] {
			t.Fatalf("attempt %d: ports %v are not three distinct ports", i, ports)
		}
	}
}
