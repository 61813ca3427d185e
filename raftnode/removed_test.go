package raftnode_test

import (
	"testing"
	"time"

	"github.com/cairn-db/cairn/raftnode"
)

// A removed non-voter never learns that its removal committed (the leader
// stops replicating to it when it appends the removal): it counts as
// removed once no leader has contacted it for the settle time.
func TestRemovedNonVoterKnowsIt(t *testing.T) {
	old := raftnode.SetRemovalSettleFloor(2 * time.Second)
	t.Cleanup(func() { raftnode.SetRemovalSettleFloor(old) })
	c := newCluster(t, 3)
	l := c.leader()
	m4 := &member{id: "n4", dir: t.TempDir()}
	m4.start(t)
	t.Cleanup(m4.stop)
	if err := l.node.AddMember("n4", m4.addr, false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n4 replicating", 10*time.Second, func() bool { return m4.fsm.AppliedIndex() >= l.node.Status().CommitIndex })
	if err := l.node.RemoveMember("n4"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m4.node.Removed():
	case <-time.After(15 * time.Second):
		ms, _ := m4.node.Members()
		t.Fatalf("n4 removed but does not know it; its members %+v, status %+v", ms, m4.node.Status())
	}
}
