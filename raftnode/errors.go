package raftnode

import (
	"errors"
	"fmt"
)

// Sentinel errors. raftnode translates every hashicorp/raft error into one
// of these; api/ maps them to gRPC codes.
var (
	// ErrNotLeader: this node is not the leader. The error is a
	// *NotLeaderError carrying the leader's id and raft address when known.
	ErrNotLeader = errors.New("raftnode: not the leader")
	// ErrNoLeader: no leader is known (election in progress or no quorum).
	ErrNoLeader = errors.New("raftnode: no leader")
	// ErrNotReady: this node is the leader but has not yet applied every
	// entry of earlier terms, so it cannot serve linearizable reads yet.
	ErrNotReady = errors.New("raftnode: leader not ready")
	// ErrUnknownOutcome: the command was submitted but its fate is unknown
	// (leadership lost, deadline passed). It may or may not be committed.
	ErrUnknownOutcome = errors.New("raftnode: outcome unknown")
	// ErrClosed: the node is shutting down.
	ErrClosed = errors.New("raftnode: closed")
	// ErrNotSubmitted: the command could not be queued (enqueue timeout); it
	// was not submitted and is safe to retry.
	ErrNotSubmitted = errors.New("raftnode: not submitted")
	// ErrNoMember: a membership call named a server that is not in the
	// configuration.
	ErrNoMember = errors.New("raftnode: no such member")
	// ErrMemberConflict: adding a server whose id is already a member at
	// another address (or as a voter, asked to be a non-voter). Raft would
	// silently move or keep it; remove it first.
	ErrMemberConflict = errors.New("raftnode: member exists")
	// ErrBadAddress: a raft address that is not host:port.
	ErrBadAddress = errors.New("raftnode: bad address")
)

// NotLeaderError is returned (wrapping ErrNotLeader) with a leader hint.
type NotLeaderError struct {
	LeaderID   string
	LeaderAddr string // raft address
}

func (e *NotLeaderError) Error() string {
	if e.LeaderID == "" {
		return ErrNotLeader.Error()
	}
	return fmt.Sprintf("%v (leader is %s at %s)", ErrNotLeader, e.LeaderID, e.LeaderAddr)
}

func (e *NotLeaderError) Unwrap() error { return ErrNotLeader }
