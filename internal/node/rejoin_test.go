package node_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	pb "github.com/cairn-db/cairn/api/cairnpb"
	"github.com/cairn-db/cairn/internal/node"
	"github.com/cairn-db/cairn/internal/testcluster"
)

// A member wiped and added back under the same id must be able to install
// the leader's checkpoint when that checkpoint was created by the member
// itself in its previous life. The manifest names the creator as the
// source of its files, an install never fetches from itself, and the
// wiped node's empty state knows no other member's address: it found no
// source, failed, and the leader sent the same checkpoint again, forever
// (jepsen window workload, membership+snapshot nemeses). The manifest now
// also lists the members' addresses.
func TestWipedMemberInstallsACheckpointItCreatedBefore(t *testing.T) {
	wiped := false
	c := testcluster.Start(t, 3, func(cfg *node.Config) {
		cfg.Raft.SnapshotThreshold, cfg.Raft.TrailingLogs, cfg.Raft.SnapshotInterval = 1<<40, 16, time.Hour
		cfg.Raft.HeartbeatTimeout, cfg.Raft.ElectionTimeout = time.Second, time.Second
		if cfg.NodeID == "n1" && wiped {
			cfg.Bootstrap = nil // joins instead
		}
	})
	ctx := context.Background()
	cl := c.Client()
	write := func(from, to int) {
		t.Helper()
		for i := from; i < to; i += 5 { // entries enough to pass TrailingLogs
			var ops []*pb.Op
			for j := i; j < i+5; j++ {
				ops = append(ops, api.PutOp([]byte(fmt.Sprintf("k%05d", j)), []byte(fmt.Sprint(j))))
			}
			if _, err := cl.Batch(ctx, ops...); err != nil {
				t.Fatal(err)
			}
		}
	}
	n1, n3 := c.Members[0], c.Members[2]
	c.MakeLeader(cl, n1)
	// n3 misses entries that n1's checkpoint then compacts away, so n3
	// installs that checkpoint (created by n1) when it comes back.
	c.StopMember(n3)
	write(0, 500)
	if _, err := cl.CreateCheckpoint(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	write(500, 600)
	c.StartMember(n3)
	c.WaitConverged()
	list, err := cl.Checkpoints(ctx, "n3")
	if err != nil || len(list.Checkpoints) == 0 {
		t.Fatalf("n3's checkpoints: %v, %v; want the one it installed from n1", list, err)
	}
	// n3 leads; its newest checkpoint is the one n1 created. n1 is wiped and
	// added back under its own id and raft address.
	c.MakeLeader(cl, n3)
	if err := cl.RemoveNode(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	c.StopMember(n1)
	if err := os.RemoveAll(n1.Dir); err != nil {
		t.Fatal(err)
	}
	wiped = true
	c.StartMember(n1)
	if err := cl.AddNode(ctx, "n1", n1.RaftAddr, n1.Node.GRPCAddr(), false); err != nil {
		t.Fatal(err)
	}
	write(600, 700)
	target := n3.Node.Raft.Status().CommitIndex
	testcluster.WaitFor(t, "the wiped n1 to install n3's checkpoint and catch up", 30*time.Second, func() bool {
		return n1.Node.FSM.AppliedIndex() >= target
	})
	v, _, err := n1.Node.FSM.Get([]byte("k00042"))
	if err != nil || string(v.Bytes) != "42" {
		t.Fatalf("n1 after the install: k00042 = %q (%v)", v.Bytes, err)
	}
}
