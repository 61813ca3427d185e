package node_test

import (
	"net"
	"strings"
	"testing"

	"github.com/cairn-db/cairn/internal/node"
)

// A node that cannot start (here: its HTTP address is taken) returns an
// error and releases what it had opened; it must not panic on the way out.
func TestStartFailureReturnsAnError(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg := node.DefaultConfig()
	cfg.NodeID, cfg.DataDir = "n1", t.TempDir()
	cfg.GRPCAddr, cfg.RaftAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0", taken.Addr().String()
	n, err := node.Start(cfg)
	if err == nil {
		n.Stop()
		t.Fatal("started with its HTTP address in use")
	}
	if !strings.Contains(err.Error(), "listen http") {
		t.Fatalf("error %v, want the HTTP listen failure", err)
	}
	// Everything it opened was closed: the same data directory starts now.
	cfg.HTTPAddr = ""
	n, err = node.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.Stop()
}
