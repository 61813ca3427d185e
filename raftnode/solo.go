package raftnode

import (
	"github.com/hashicorp/raft"
)

// soloElection shortens the wait before the election of a node that is the
// only voter of its configuration. There is no leader it could hear from,
// yet raft sits out a whole randomized HeartbeatTimeout (1–2 s by default)
// after every start before campaigning, which was most of a single-node
// cluster's restart-to-ready time (docs/benchmarks.md, Restart to ready);
// etcd campaigns at once in that case. raft accepts no heartbeat timeout
// below LeaderLeaseTimeout, so the wait becomes LeaderLeaseTimeout
// (randomized up to twice that). The configured timeouts come back as soon
// as the node leads (restoreTimeouts), before a member can be added.
func (n *Node) soloElection(r *raft.Raft) {
	f := r.GetConfiguration()
	if f.Error() != nil {
		return
	}
	voters, self := 0, false
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters++
			self = self || s.ID == raft.ServerID(n.cfg.NodeID)
		}
	}
	short := n.cfg.LeaderLeaseTimeout
	if voters != 1 || !self || short <= 0 || short >= n.cfg.HeartbeatTimeout {
		return
	}
	rc := r.ReloadableConfig()
	rc.HeartbeatTimeout, rc.ElectionTimeout = short, short
	if err := r.ReloadConfig(rc); err != nil {
		n.log.Warn("raftnode: shortening the sole voter's election wait", "err", err)
		return
	}
	n.soloShortened.Store(true)
}

// restoreTimeouts puts back the configured heartbeat and election timeouts
// after soloElection shortened them (only those two: the other reloadable
// settings may have been changed meanwhile).
func (n *Node) restoreTimeouts() {
	if !n.soloShortened.Swap(false) {
		return
	}
	rc := n.raft.ReloadableConfig()
	rc.HeartbeatTimeout, rc.ElectionTimeout = n.cfg.HeartbeatTimeout, n.cfg.ElectionTimeout
	if err := n.raft.ReloadConfig(rc); err != nil {
		n.log.Warn("raftnode: restoring the heartbeat and election timeouts", "err", err)
		n.soloShortened.Store(true)
	}
}
