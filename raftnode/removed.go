package raftnode

import (
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Removed is closed once this node has seen itself removed from the
// cluster: raft shut down by its own removal (a leader that removed
// itself), or a newest configuration without it that no leader has undone
// for ten election timeouts (at least
// removalSettleFloor). A removed node no longer hears from the leader, so
// it would go on serving stale reads and reporting healthy; its owner
// should stop it (cairn serve exits).
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
			n.suspectSince = time.Time{}
			return
		}
	}
	// The newest configuration lacks this node. Whether that entry
	// committed, a removed server cannot tell: the leader stops replicating
	// to it as soon as it appends the removal (and raft's configuration
	// future carries no index to compare with the commit index). A removal
	// that no leader undoes for long settles it: an uncommitted one that a
	// new leader drops is undone by that leader's first AppendEntries,
	// which lists this node again; a joining node that replays the
	// configurations from before its addition hears from the leader all
	// along. (A process restarted on the data dir of a removed member is
	// caught too: it hears from no one.)
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
		n.log.Warn("removed from the cluster", "why", why)
		close(n.removedCh)
	})
}
