package raftnode

import (
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

type fakeRaft struct {
	state raft.RaftState
	term  uint64
}

func (f fakeRaft) State() raft.RaftState { return f.state }
func (f fakeRaft) CurrentTerm() uint64   { return f.term }

// TestHeartbeatFastPathOnlyWhenSafe: raft's heartbeat handler (what
// raft.NewRaft installs: processHeartbeat, run on the transport's goroutine)
// may only run for a follower receiving a heartbeat of its current term.
// Anything else — a heartbeat that would raise the term or demote a leader
// or a candidate, or one arriving before raft is up — is answered with an
// error and never reaches the handler: on the fast path such a heartbeat let
// a deposed leader log queued writes under the new leader's term, and a node
// applied a write that was never committed (jepsen bank, seed 11).
func TestHeartbeatFastPathOnlyWhenSafe(t *testing.T) {
	cases := []struct {
		name  string
		raft  *fakeRaft // nil: raft not started yet
		term  uint64    // the heartbeat's
		taken bool
	}{
		{"follower, same term", &fakeRaft{raft.Follower, 7}, 7, true},
		{"follower, newer leader", &fakeRaft{raft.Follower, 6}, 7, false},
		{"follower, stale leader", &fakeRaft{raft.Follower, 8}, 7, false},
		{"leader, newer term", &fakeRaft{raft.Leader, 6}, 7, false},
		{"candidate, same term", &fakeRaft{raft.Candidate, 7}, 7, false},
		{"raft not started", nil, 7, false},
	}
	for _, pipeline := range []bool{false, true} {
		for _, c := range cases {
			recv, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, 5*time.Second, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			send, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, 5*time.Second, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			trans, gate := raftTransport(recv, pipeline)
			if _, ok := trans.(raft.WithPreVote); !ok {
				t.Fatalf("pipeline=%v: the transport lost pre-vote", pipeline)
			}
			if _, ok := trans.(raft.WithClose); !ok {
				t.Fatalf("pipeline=%v: the transport lost Close", pipeline)
			}
			if _, err := trans.AppendEntriesPipeline("n2", send.LocalAddr()); !pipeline && !errors.Is(err, raft.ErrPipelineReplicationNotSupported) {
				t.Fatalf("pipeline=false: AppendEntriesPipeline = %v, want ErrPipelineReplicationNotSupported", err)
			}
			var handled atomic.Int32
			trans.SetHeartbeatHandler(func(rpc raft.RPC) { // as raft.NewRaft does
				handled.Add(1)
				rpc.Respond(&raft.AppendEntriesResponse{Term: c.term, Success: true}, nil)
			})
			if c.raft != nil {
				gate.setRaft(*c.raft)
			}
			hb := &raft.AppendEntriesRequest{
				RPCHeader: raft.RPCHeader{ID: []byte("n2"), Addr: send.EncodePeer("n2", send.LocalAddr())},
				Term:      c.term,
				Leader:    send.EncodePeer("n2", send.LocalAddr()),
			}
			var resp raft.AppendEntriesResponse
			err = send.AppendEntries("n1", recv.LocalAddr(), hb, &resp)
			if c.taken {
				if err != nil || !resp.Success || handled.Load() != 1 {
					t.Fatalf("pipeline=%v %s: heartbeat err=%v success=%v handled=%d, want the fast path", pipeline, c.name, err, resp.Success, handled.Load())
				}
			} else if err == nil || !strings.Contains(err.Error(), "heartbeat not handled") || handled.Load() != 0 {
				t.Fatalf("pipeline=%v %s: heartbeat err=%v handled=%d, want refused without running raft's handler", pipeline, c.name, err, handled.Load())
			}
			_ = send.Close()
			_ = recv.Close()
		}
	}
}

// The transport records, per peer, when the newest AppendEntries that the
// peer accepted was sent; a rejected one (another term) does not count.
// verifyFresh relies on it to ignore responses to RPCs sent before a
// leadership check began.
func TestAppendEntriesAcksRecordSendTime(t *testing.T) {
	recv, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, 5*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Close()
	nt, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, 5*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	trans, gate := raftTransport(nt, false)
	defer nt.Close()
	go func() {
		for rpc := range recv.Consumer() {
			req := rpc.Command.(*raft.AppendEntriesRequest)
			rpc.Respond(&raft.AppendEntriesResponse{Term: 5, Success: req.Term == 5}, nil)
		}
	}()
	send := func(term uint64) {
		t.Helper()
		var resp raft.AppendEntriesResponse
		req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte("n1")}, Term: term, PrevLogEntry: 1, PrevLogTerm: 1}
		if err := trans.AppendEntries("n2", recv.LocalAddr(), req, &resp); err != nil {
			t.Fatal(err)
		}
	}
	before := time.Now()
	send(5)
	between := time.Now()
	if n := gate.ackedSince(before, []raft.ServerID{"n2"}); n != 1 {
		t.Fatalf("ackedSince(before the call) = %d, want 1", n)
	}
	if n := gate.ackedSince(between, []raft.ServerID{"n2", "n3"}); n != 0 {
		t.Fatalf("ackedSince(after the call) = %d, want 0", n)
	}
	send(4) // rejected: the peer is in term 5
	if n := gate.ackedSince(between, []raft.ServerID{"n2"}); n != 0 {
		t.Fatalf("a rejected AppendEntries counted as an ack")
	}
	send(5)
	if n := gate.ackedSince(between, []raft.ServerID{"n2"}); n != 1 {
		t.Fatalf("ackedSince after a second accepted call = %d, want 1", n)
	}
}
