package raftnode

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestHeartbeatsReachRaftMainLoop: the transport raft is given must not
// take raft's heartbeat fast path. raft installs processHeartbeat with
// SetHeartbeatHandler; the fast path runs appendEntries on the connection's
// goroutine, concurrently with raft's main loop, and a heartbeat from a newer
// leader then lets a deposed leader write its queued client entries with the
// new leader's term, where raft's conflict check (by term) never replaces
// them: the node applies writes that were never committed (see
// mainLoopHeartbeats). A heartbeat must arrive on Consumer(), the main loop's
// channel, like every other RPC.
func TestHeartbeatsReachRaftMainLoop(t *testing.T) {
	for _, pipeline := range []bool{false, true} {
		recv, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, 5*time.Second, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		send, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, 5*time.Second, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		trans := raftTransport(recv, pipeline)
		if _, ok := trans.(raft.WithPreVote); !ok {
			t.Fatalf("pipeline=%v: the transport lost pre-vote", pipeline)
		}
		if _, ok := trans.(raft.WithClose); !ok {
			t.Fatalf("pipeline=%v: the transport lost Close", pipeline)
		}
		if _, err := trans.AppendEntriesPipeline("n2", send.LocalAddr()); !pipeline && !errors.Is(err, raft.ErrPipelineReplicationNotSupported) {
			t.Fatalf("pipeline=false: AppendEntriesPipeline = %v, want ErrPipelineReplicationNotSupported", err)
		}

		fastPath := make(chan struct{}, 1)
		trans.SetHeartbeatHandler(func(rpc raft.RPC) { // what raft.NewRaft does
			fastPath <- struct{}{}
			rpc.Respond(&raft.AppendEntriesResponse{Term: 7, Success: true}, nil)
		})

		done := make(chan error, 1)
		go func() {
			hb := &raft.AppendEntriesRequest{
				RPCHeader: raft.RPCHeader{ID: []byte("n2"), Addr: send.EncodePeer("n2", send.LocalAddr())},
				Term:      7,
				Leader:    send.EncodePeer("n2", send.LocalAddr()),
			}
			var resp raft.AppendEntriesResponse
			done <- send.AppendEntries("n1", recv.LocalAddr(), hb, &resp)
		}()
		select {
		case rpc := <-recv.Consumer():
			if _, ok := rpc.Command.(*raft.AppendEntriesRequest); !ok {
				t.Fatalf("pipeline=%v: got %T on the main loop's channel", pipeline, rpc.Command)
			}
			rpc.Respond(&raft.AppendEntriesResponse{Term: 7, Success: true}, nil)
		case <-fastPath:
			t.Fatalf("pipeline=%v: a heartbeat was handled on the transport's goroutine (raft's fast path), not by raft's main loop", pipeline)
		case <-time.After(10 * time.Second):
			t.Fatalf("pipeline=%v: heartbeat never delivered", pipeline)
		}
		if err := <-done; err != nil {
			t.Fatalf("pipeline=%v: heartbeat: %v", pipeline, err)
		}
		_ = send.Close()
		_ = recv.Close()
	}
}
