package node_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/cairn-db/cairn/api"
	pb "github.com/cairn-db/cairn/api/cairnpb"
	"github.com/cairn-db/cairn/internal/node"
	"github.com/cairn-db/cairn/internal/testcluster"
)

// The leader's disk fails a read its state machine needs (a bad sector
// under an SST). The write that hit it is reported as an unknown outcome
// (it is committed), the leader leaves raft instead of holding leadership
// while applying nothing, the other two elect a leader and go on serving
// with the write applied, and the failed node, restarted on a healthy
// disk, catches up.
func TestStateMachineFailureOnTheLeaderHandsOverTheCluster(t *testing.T) {
	var failing atomic.Bool
	badDisk := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && op.Kind.ReadOrWrite() == errorfs.OpIsRead && strings.HasSuffix(op.Path, ".sst") {
			return errorfs.ErrInjected
		}
		return nil
	}))
	c := testcluster.Start(t, 3, func(cfg *node.Config) {
		if cfg.NodeID == "n1" {
			cfg.StateFS = badDisk
		}
	})
	cl := c.Client()
	ctx := context.Background()
	// Keys between the applied index (read when the state opens) and n, so
	// that n's block is one n1 has not read since it opened.
	for b := 0; b < 4; b++ {
		var ops []*pb.Op
		for i := 0; i < 500; i++ {
			ops = append(ops, api.PutOp([]byte(fmt.Sprintf("a%02d%03d", b, i)), make([]byte, 100)))
		}
		if _, err := cl.Batch(ctx, ops...); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cl.Batch(ctx, api.AddOp([]byte("n"), 1)); err != nil {
		t.Fatal(err)
	}
	n1 := c.Members[0]
	c.WaitConverged()
	// A clean stop flushes the state to SSTs; n1 comes back as leader.
	c.StopMember(n1)
	c.StartMember(n1)
	c.WaitConverged()
	c.MakeLeader(cl, n1)

	failing.Store(true)
	_, err := cl.Batch(ctx, api.AddOp([]byte("n"), 1))
	if !errors.Is(err, api.ErrUnknownOutcome) {
		t.Fatalf("the add on the failing leader: %v, want an unknown outcome", err)
	}
	select {
	case <-n1.Node.Failed():
	case <-time.After(10 * time.Second):
		t.Fatal("n1's state machine stopped but the node did not leave raft")
	}
	if ok, why := n1.Node.Ready(); ok || !strings.Contains(why, "state machine stopped") {
		t.Errorf("n1 ready = %v (%q), want not ready: state machine stopped", ok, why)
	}
	testcluster.WaitFor(t, "another leader", 20*time.Second, func() bool {
		for _, m := range c.Members[1:] {
			if m.Node.Raft.IsLeader() && m.Node.Raft.Ready() {
				return true
			}
		}
		return false
	})
	// The cluster serves, and the add that n1 could not apply took effect.
	if _, err := cl.Batch(ctx, api.AddOp([]byte("n"), 1)); err != nil {
		t.Fatalf("write after the hand-over: %v", err)
	}
	v, _, err := cl.Get(ctx, []byte("n"))
	if err != nil || v.Int != 3 {
		t.Fatalf("n = %d (%v), want 3: 1 + the committed add n1 could not apply + 1", v.Int, err)
	}

	// Restarted on a healthy disk, n1 replays its log and catches up.
	failing.Store(false)
	c.StopMember(n1)
	c.StartMember(n1)
	testcluster.WaitFor(t, "n1 caught up", 20*time.Second, func() bool {
		v, _, err := n1.Node.FSM.Get([]byte("n"))
		return err == nil && v.Int == 3 && n1.Node.Err() == nil
	})
}
