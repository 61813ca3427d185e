package raftnode

import (
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Removed is closed once this node has seen itself removed from the
// cluster: a committed configuration without it, after one with it, or
// raft shut down by its own removal (a leader that removed itself). A
// removed node no longer hears from the leader, so it would go on serving
// stale reads and reporting healthy; its owner should stop it (cairn serve
// exits). See checkRemoved for when a removal counts as settled.
func (n *Node) Removed() <-chan struct{} { return n.removedCh }

// checkRemoved is called from the leadership watch loop.
func (n *Node) checkRemoved() {
	select {
	case <-n.removedCh:
		return
	case <-n.closed:
		return
	default:
	}
	if n.raft.State() == raft.Shutdown { // not by Shutdown: n.closed is open
		n.markRemoved("raft shut down after removing this node")
		return
	}
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	servers := f.Configuration().Servers
	if len(servers) == 0 {
		return // never heard from a cluster (a node waiting to be added)
	}
	for _, s := range servers {
		if s.ID == raft.ServerID(n.cfg.NodeID) {
			n.wasMember.Store(true)
			n.suspectSince = time.Time{}
			return
		}
	}
	// A committed configuration without this node, after one with it,
	// settles it. (A joining node replays older configurations, committed
	// ones, before the one that added it: hence "after one with it", which
	// this loop may miss when the removal follows the addition closely.)
	// The leader stops replicating to a removed server as soon as it
	// appends the removal, so the server usually never learns that it
	// committed; a removal that no leader undoes for long settles it too
	// (an uncommitted one that a new leader drops is undone by that
	// leader's first AppendEntries, which lists this node again). A
	// restarted node that was removed before is caught that way.
	if n.wasMember.Load() && f.Index() <= n.raft.CommitIndex() {
		n.markRemoved("the committed configuration no longer lists this node")
		return
	}
	now := time.Now()
	if n.suspectSince.IsZero() {
		n.suspectSince = now
		return
	}
	settle := max(10*max(n.cfg.ElectionTimeout, n.cfg.HeartbeatTimeout), removalSettleFloor)
	if now.Sub(n.suspectSince) >= settle && now.Sub(n.raft.LastContact()) >= settle {
		n.markRemoved(fmt.Sprintf("the newest configuration no longer lists this node, and no leader contacted it for %v", settle))
	}
}

// removalSettleFloor is the least time an uncommitted-looking removal must
// stand, unanswered by any leader, before it counts (tests shorten it).
var removalSettleFloor = 10 * time.Second

func (n *Node) markRemoved(why string) {
	n.removedOnce.Do(func() {
		n.log.Warn("removed from the cluster", "node", n.cfg.NodeID, "why", why)
		close(n.removedCh)
	})
}
