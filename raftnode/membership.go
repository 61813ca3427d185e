package raftnode

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
)

// Member is one server of the raft configuration.
type Member struct {
	ID    string
	Addr  string
	Voter bool
}

// Members returns the current raft configuration.
func (n *Node) Members() ([]Member, error) {
	if !n.up() {
		return nil, ErrNoLeader
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, n.translate(err)
	}
	var out []Member
	for _, s := range f.Configuration().Servers {
		out = append(out, Member{ID: string(s.ID), Addr: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	return out, nil
}

// AddMember adds a voter (or non-voter) at run time. Leader only. Adding a
// member that is already present with the same address and role is a no-op
// (a retried join succeeds); a non-voter added again as a voter is
// promoted. An id that is a member at another address, or a voter asked to
// be a non-voter, is refused (ErrMemberConflict): raft would move it, or
// keep it a voter, without a word.
func (n *Node) AddMember(id, addr string, voter bool) error {
	if id == "" {
		return fmt.Errorf("%w: empty member id", ErrBadAddress)
	}
	if err := checkAddr(addr); err != nil {
		return err
	}
	if !n.IsLeader() {
		return n.notLeader()
	}
	ms, err := n.Members()
	if err != nil {
		return err
	}
	for _, m := range ms {
		switch {
		case m.ID != id && m.Addr == addr:
			return fmt.Errorf("%w: %s is already member %s's address", ErrMemberConflict, addr, m.ID)
		case m.ID != id:
		case m.Addr != addr:
			return fmt.Errorf("%w: %s is a member at %s, not %s; remove it first to move it", ErrMemberConflict, id, m.Addr, addr)
		case m.Voter && !voter:
			return fmt.Errorf("%w: %s is a voter; remove it first to make it a non-voter", ErrMemberConflict, id)
		case m.Voter == voter:
			return nil // already there
		}
	}
	var f raft.IndexFuture
	if voter {
		f = n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, 30*time.Second)
	} else {
		f = n.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), 0, 30*time.Second)
	}
	if err := f.Error(); err != nil {
		return n.translate(err)
	}
	return nil
}

// RemoveMember removes a server. Leader only.
func (n *Node) RemoveMember(id string) error {
	if !n.IsLeader() {
		return n.notLeader()
	}
	ms, err := n.Members()
	if err != nil {
		return err
	}
	found := false
	for _, m := range ms {
		found = found || m.ID == id
	}
	if !found {
		return fmt.Errorf("%w: %q", ErrNoMember, id)
	}
	if err := n.raft.RemoveServer(raft.ServerID(id), 0, 30*time.Second).Error(); err != nil {
		return n.translate(err)
	}
	return nil
}

// TransferLeadership hands leadership to id, or to the most up-to-date
// follower when id is empty. Leader only.
func (n *Node) TransferLeadership(id string) error {
	if !n.IsLeader() {
		return n.notLeader()
	}
	addr := ""
	if id != "" {
		ms, err := n.Members()
		if err != nil {
			return err
		}
		for _, m := range ms {
			if m.ID == id {
				addr = m.Addr
			}
		}
		if addr == "" {
			return fmt.Errorf("%w: %q", ErrNoMember, id)
		}
		if id == n.cfg.NodeID {
			return nil // already the leader
		}
	}
	// No lease reads from the moment the hand-over may begin until it is
	// over (lease.go): the target may be elected at once.
	n.lease.hold()
	defer n.lease.release()
	var f raft.Future
	if id == "" {
		f = n.raft.LeadershipTransfer()
	} else {
		f = n.raft.LeadershipTransferToServer(raft.ServerID(id), raft.ServerAddress(addr))
	}
	if err := f.Error(); err != nil {
		return n.translate(err)
	}
	return nil
}

// Status is this node's view of itself.
type Status struct {
	ID           string
	RaftAddr     string
	Role         string // leader, follower, candidate, shutdown
	Term         uint64
	CommitIndex  uint64
	AppliedIndex uint64 // the FSM's
	LastIndex    uint64
	LeaderID     string
	Ready        bool
	LastContact  time.Time
}

// Status reports this node's raft state.
func (n *Node) Status() Status {
	if !n.up() {
		return Status{ID: n.cfg.NodeID, RaftAddr: string(n.trans.LocalAddr()), Role: "starting", AppliedIndex: n.fsm.AppliedIndex()}
	}
	lid, _ := n.Leader()
	role := "follower"
	switch n.raft.State() {
	case raft.Leader:
		role = "leader"
	case raft.Candidate:
		role = "candidate"
	case raft.Shutdown:
		role = "shutdown"
	}
	return Status{
		ID: n.cfg.NodeID, RaftAddr: string(n.trans.LocalAddr()), Role: role,
		Term: n.raft.CurrentTerm(), CommitIndex: n.raft.CommitIndex(), AppliedIndex: n.fsm.AppliedIndex(),
		LastIndex: n.raft.LastIndex(), LeaderID: lid, Ready: n.Ready(), LastContact: n.raft.LastContact(),
	}
}

// checkAddr accepts host:port with a numeric port, as raft's TCP transport
// dials it.
func checkAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: %q is not host:port: %v", ErrBadAddress, addr, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 || host == "" {
		return fmt.Errorf("%w: %q needs a host and a port in 1..65535", ErrBadAddress, addr)
	}
	return nil
}
