package raftnode_test

import (
	"context"
	"testing"
	"time"

	"github.com/cairn-db/cairn/raftnode"
)

// A leadership transfer must end the old leader's lease. The target
// campaigns the moment it gets TimeoutNow, and the other members vote for
// it at once (a transfer's vote request overrides their loyalty to a
// current leader), so a new leader can commit writes long before the old
// leader's lease — which assumes no election before a heartbeat timeout —
// runs out. hashicorp/raft says as much where it sends TimeoutNow: "If
// [lease reads are] implemented, the lease has to be reset as well, in case
// leadership is transferred."
//
// Here the old leader is cut off the moment TimeoutNow returns, so it does
// not hear of the election; the new leader commits a write; a lease read on
// the old leader must not answer from before that write.
func TestLeaseEndsWhenLeadershipIsTransferred(t *testing.T) {
	// The old leader may still hear of the election before it is cut off
	// (the vote request travels on another connection than TimeoutNow's
	// reply); then there is nothing to check, and the scenario is tried
	// again on a fresh cluster.
	for attempt := 1; attempt <= 5; attempt++ {
		if leaseAfterTransfer(t) {
			return
		}
		t.Logf("attempt %d: the old leader stepped down before it was cut off; again", attempt)
	}
	t.Fatal("in 5 attempts the old leader never missed the election: the scenario was not tested")
}

// leaseAfterTransfer runs the scenario once; false if it did not arise.
func leaseAfterTransfer(t *testing.T) bool {
	c := newClusterWith(t, 3, func(cfg *raftnode.Config) {
		// A lease (half the heartbeat timeout) long enough that it cannot run
		// out during the test on a slow machine, and the old leader's own
		// step-down (no quorum for LeaderLeaseTimeout) later than that.
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 4*time.Second, 4*time.Second, 4*time.Second
	})
	defer func() {
		for _, m := range c.members {
			m.stop()
		}
	}()
	ctx := context.Background()
	old := c.leader()
	target := c.other(old)
	if _, err := old.node.Apply(ctx, addCmd("n", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := old.node.LeaseIndex(ctx); err != nil { // a round: the lease starts
		t.Fatal(err)
	}
	raftnode.SetAfterTimeoutNow(func() { old.net.Isolate(true) })
	defer raftnode.SetAfterTimeoutNow(nil)
	transferred := make(chan struct{})
	go func() { defer close(transferred); _ = old.node.TransferLeadership(target.id) }()
	defer func() { old.net.Isolate(false); <-transferred }() // healed, it hears of the new term
	waitFor(t, "the target to lead", 20*time.Second, func() bool { return target.node.Ready() })
	raftnode.SetAfterTimeoutNow(nil)
	if _, err := target.node.Apply(ctx, addCmd("n", 10)); err != nil {
		t.Fatal(err)
	}
	if !old.node.IsLeader() {
		return false
	}
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if idx, err := old.node.LeaseIndex(rctx); err == nil {
		v, _, _ := old.fsm.Get([]byte("n"))
		t.Fatalf("the old leader, deposed by a transfer, served a lease read at index %d (n=%d; the new leader has n=11)", idx, v.Int)
	}
	return true
}
