package node_test

import (
	"context"
	"testing"

	"github.com/cairn-db/cairn/internal/node"
	"github.com/cairn-db/cairn/internal/testcluster"
	"github.com/cairn-db/cairn/raftnode"
)

// A cluster restored from an export — with no --grpc-advertise given to the
// restore, so the adopted checkpoint names no address to fetch from — adds
// an empty member, which must install that checkpoint from the leader. The
// old cluster is gone. The new member knew no source: the manifest's is
// empty and its own empty state knows no member; it failed the install
// every two seconds until someone took a new checkpoint (new-user audit).
// The leader now sends the manifest naming itself as the holder.
func TestRestoredClusterCatchesUpANewMember(t *testing.T) {
	ctx := context.Background()
	a := testcluster.Start(t, 3, steadyRaft)
	cl := a.Client()
	writeKeys(t, cl, "k", 0, 500, 100, 1)
	l := a.Leader()
	settle(t, l)
	id, err := l.Node.Raft.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	bucket := "file://" + t.TempDir()
	if _, err := l.Node.Snapshots.Export(ctx, id, bucket, nil); err != nil {
		t.Fatal(err)
	}
	want := dumpKV(t, cl)
	a.Stop() // no source but the new cluster

	b := testcluster.Prepare(t, 2, steadyRaft)
	n1, n2 := b.Members[0], b.Members[1]
	solo := []raftnode.Peer{{ID: n1.ID, Addr: n1.RaftAddr}}
	if _, err := node.Restore(ctx, node.RestoreConfig{BucketURL: bucket, DataDir: n1.Dir, NodeID: n1.ID, Peers: solo}); err != nil {
		t.Fatal(err)
	}
	b.Tune = func(cfg *node.Config) {
		steadyRaft(cfg)
		cfg.Bootstrap = nil
		if cfg.NodeID == n1.ID {
			cfg.Bootstrap = solo
		}
	}
	b.StartMember(n1)
	b.StartMember(n2)
	bcl := b.Client()
	if err := bcl.AddNode(ctx, n2.ID, n2.RaftAddr, n2.Node.GRPCAddr(), false); err != nil {
		t.Fatal(err)
	}
	b.WaitConverged()
	got, _, err := n2.Node.FSM.Get([]byte("k/000042"))
	if err != nil || string(got.Bytes) != want["k/000042"] {
		t.Fatalf("the new member after catching up: k/000042 = %d bytes (%v), want the export's", len(got.Bytes), err)
	}
}
