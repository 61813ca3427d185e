package raftnode_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/raftnode"
)

// startSolo starts the only voter of a cluster whose heartbeat and election
// timeouts are a minute: without the sole-voter shortcut its first election
// would come after one to two minutes.
func startSolo(t *testing.T, dir string, bootstrap bool) (*raftnode.Node, *fsm.FSM) {
	t.Helper()
	sl, err := raftnode.NewTCPStreamLayer("127.0.0.1:0", "")
	if err != nil {
		t.Fatal(err)
	}
	f, err := fsm.Open(fsm.DefaultConfig(filepath.Join(dir, "state")))
	if err != nil {
		t.Fatal(err)
	}
	c := raftnode.DefaultConfig()
	c.NodeID, c.Dir, c.GRPCAddr, c.StreamLayer = "n1", filepath.Join(dir, "raft"), "grpc-n1", sl
	c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = time.Minute, time.Minute, 100*time.Millisecond
	if bootstrap {
		c.Bootstrap = []raftnode.Peer{{ID: "n1", Addr: sl.Addr().String()}}
	}
	n, err := raftnode.New(c, f)
	if err != nil {
		t.Fatal(err)
	}
	return n, f
}

// The only voter of its configuration campaigns after LeaderLeaseTimeout
// instead of a whole HeartbeatTimeout, at bootstrap and after a restart,
// and once it leads raft runs with the configured timeouts again.
func TestSoleVoterDoesNotWaitOutHeartbeatTimeout(t *testing.T) {
	dir := t.TempDir()
	for i, bootstrap := range []bool{true, false} {
		n, f := startSolo(t, dir, bootstrap)
		// 20 s is far below the one-minute timeouts.
		waitFor(t, "the sole voter to lead", 20*time.Second, n.Ready)
		waitFor(t, "the configured timeouts back", 20*time.Second, func() bool {
			rc := n.Raft().ReloadableConfig()
			return rc.HeartbeatTimeout == time.Minute && rc.ElectionTimeout == time.Minute
		})
		if err := n.Shutdown(); err != nil {
			t.Fatalf("start %d: %v", i, err)
		}
		_ = f.Close()
	}
}
