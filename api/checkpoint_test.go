package api_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/cairn-db/cairn/api"
	pb "github.com/cairn-db/cairn/api/cairnpb"
	"github.com/cairn-db/cairn/internal/node"
	"github.com/cairn-db/cairn/internal/testcluster"
)

// The whole Checkpoint service through a client that only knows a
// follower: every call addressed to the leader (node "") is forwarded.
func TestCheckpointCatalogFromAFollower(t *testing.T) {
	c := testcluster.Start(t, 3, func(cfg *node.Config) {
		// Leadership should stay put on a loaded machine: the test names
		// the leader's catalog both as "" and by id.
		cfg.Raft.HeartbeatTimeout, cfg.Raft.ElectionTimeout, cfg.Raft.LeaderLeaseTimeout = time.Second, time.Second, 500*time.Millisecond
	})
	l := c.Leader()
	f := c.Followers(l)[0]
	ctx := context.Background()
	cl := clientAt(t, f.Node.GRPCAddr())

	p, err := cl.RegisterProducer(ctx, "ingest", api.DefaultProducerOptions())
	if err != nil {
		t.Fatal(err)
	}
	val := make([]byte, 512)
	rand.New(rand.NewSource(1)).Read(val)
	write := func(prefix string, n int) {
		t.Helper()
		ops := make([]*pb.Op, 0, n)
		for i := 0; i < n; i++ {
			ops = append(ops, api.PutOp([]byte(fmt.Sprintf("%s/%05d", prefix, i)), val))
		}
		testcluster.Idempotent(t, "batch of puts", func() error {
			_, err := cl.Batch(ctx, ops...)
			return err
		})
	}
	write("a", 500)
	if _, err := p.Commit(ctx, []*pb.Op{api.AddOp([]byte("count"), 3)}, map[string]int64{"topic-0": 41, "topic-1": 7}); err != nil {
		t.Fatal(err)
	}

	// Create: on the leader by default.
	settle(t, l)
	cr, err := cl.CreateCheckpoint(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	ck := cr.Checkpoint
	if cr.Node != l.ID || !cr.Created || ck.Index == 0 || ck.Files == 0 || ck.StateBytes == 0 || !ck.Manifest || ck.Source != l.ID {
		t.Fatalf("create: %+v (leader %s)", cr, l.ID)
	}
	if len(ck.Producers) != 1 || ck.Producers[0].Name != "ingest" || len(ck.Producers[0].Offsets) != 2 ||
		ck.Producers[0].Offsets[0] != (api.SourceOffset{Source: "topic-0", Offset: 41}) {
		t.Fatalf("producer offsets in the checkpoint: %+v", ck.Producers)
	}
	// From here the leader's catalog is named by id: on a loaded machine
	// leadership can move mid-test (a 1.5 s disk stall did in a clean-clone
	// run), and the checkpoints stay in l's catalog.
	// Pinned at once: retention keeps only the newest two otherwise.
	if in, err := cl.PinCheckpoint(ctx, l.ID, ck.ID); err != nil || in == nil || in.ID != ck.ID || !in.Pinned {
		t.Fatalf("pin %s: %+v, %v", ck.ID, in, err)
	}
	// Nothing new since: the same checkpoint comes back (or, if the
	// cluster applied an entry of its own meanwhile, a newer one).
	again, err := cl.CreateCheckpoint(ctx, l.ID)
	if err != nil {
		t.Fatal(err)
	}
	if again.Created && again.Checkpoint.Index <= ck.Index || !again.Created && again.Checkpoint.ID != ck.ID {
		t.Fatalf("second create: %+v after %+v", again, ck)
	}

	// List and Show, by the node's id, the checkpoint id and "latest".
	list, err := cl.Checkpoints(ctx, l.ID)
	if err != nil {
		t.Fatal(err)
	}
	if list.Node != l.ID || len(list.Checkpoints) == 0 || list.Recovery.AppliedIndex < ck.Index {
		t.Fatalf("list: %+v", list)
	}
	if got := list.Checkpoints[len(list.Checkpoints)-1]; got.ID != ck.ID || got.Verification.Status != "unverified" {
		t.Fatalf("list entry %+v, want %s unverified", got, ck.ID)
	}
	for _, id := range []string{ck.ID, ck.CheckpointID} {
		d, err := cl.ShowCheckpoint(ctx, l.ID, id)
		if err != nil {
			t.Fatal(err)
		}
		if d.ID != ck.ID || len(d.FileList) != ck.Files || len(d.Configuration) != 3 || d.PebbleFormat == 0 {
			t.Fatalf("show %s: %+v", id, d)
		}
	}
	if d, err := cl.ShowCheckpoint(ctx, l.ID, "latest"); err != nil || d.Index < ck.Index {
		t.Fatalf("show latest: %+v %v", d, err)
	}
	if _, err := cl.ShowCheckpoint(ctx, l.ID, "1-2-3"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("show of a missing checkpoint: %v", err)
	}
	// Roles instead of ids: "leader", and "follower" (the first voting
	// follower by id, the same one for a create and the list after it).
	// Leadership may move under load: the answer must match the leader
	// before or after the call.
	firstFollower := func() string {
		want := ""
		for _, n := range c.Followers(c.Leader()) {
			if want == "" || n.ID < want {
				want = n.ID
			}
		}
		return want
	}
	before := c.Leader().ID
	if again, err := cl.CreateCheckpoint(ctx, api.NodeLeader); err != nil || again.Node != before && again.Node != c.Leader().ID {
		t.Fatalf("create on %q: %+v %v (leader %s)", api.NodeLeader, again, err, before)
	}
	want := firstFollower()
	fc, err := cl.CreateCheckpoint(ctx, api.NodeFollower)
	if err != nil || fc.Checkpoint.Source != fc.Node || fc.Node != want && fc.Node != firstFollower() {
		t.Fatalf("create on %q: %+v %v, want it on %s", api.NodeFollower, fc, err, want)
	}
	if fl, err := cl.Checkpoints(ctx, api.NodeFollower); err != nil || fl.Node != fc.Node && firstFollower() == fc.Node ||
		fl.Node == fc.Node && fl.Checkpoints[0].ID != fc.Checkpoint.ID {
		t.Fatalf("list on %q: %+v %v, want %s's catalog, newest %s", api.NodeFollower, fl, err, fc.Node, fc.Checkpoint.ID)
	}
	if _, err := cl.Checkpoints(ctx, "nosuchnode"); status.Code(err) != codes.NotFound {
		t.Fatalf("list of an unknown node: %v", err)
	}
	// A follower's own catalog, asked of the follower itself.
	fc, err = cl.CreateCheckpoint(ctx, f.ID)
	if err != nil || fc.Node != f.ID || fc.Checkpoint.Source != f.ID {
		t.Fatalf("create on the follower: %+v %v", fc, err)
	}

	// Verify.
	v, err := cl.VerifyCheckpoint(ctx, l.ID, ck.ID)
	if err != nil || v.Status != "ok" || v.Keys < 500 || v.FilesChecked == 0 {
		t.Fatalf("verify: %+v %v", v, err)
	}

	// Export with progress, then a later checkpoint ships only what is new.
	bucket := "file://" + t.TempDir()
	var reports []api.ExportProgress
	ex, err := cl.ExportCheckpoint(ctx, l.ID, ck.ID, bucket, func(p api.ExportProgress) { reports = append(reports, p) })
	if err != nil {
		t.Fatal(err)
	}
	if !ex.Done || ex.FilesUploaded == 0 || ex.BytesUploaded != ex.BytesTotal || ex.FilesSkipped != 0 || ex.CheckpointID != ck.CheckpointID ||
		len(reports) == 0 || reports[len(reports)-1] != ex {
		t.Fatalf("export: %+v (%d reports)", ex, len(reports))
	}
	write("b", 50)
	ck2, err := cl.CreateCheckpoint(ctx, l.ID)
	if err != nil {
		t.Fatal(err)
	}
	ex2, err := cl.ExportCheckpoint(ctx, l.ID, ck2.Checkpoint.ID, bucket, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ex2.FilesSkipped == 0 || ex2.BytesUploaded >= ex2.BytesTotal/2 {
		t.Fatalf("second export shipped %d of %d bytes (%d files skipped)", ex2.BytesUploaded, ex2.BytesTotal, ex2.FilesSkipped)
	}
	if _, err := cl.ExportCheckpoint(ctx, l.ID, ck.ID, "", nil); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("export without a URL: %v", err)
	}

	// The pin (taken above) keeps a checkpoint beyond retention (2);
	// unpin lets it go.
	for i := 0; i < 3; i++ {
		write(fmt.Sprintf("c%d", i), 10)
		if _, err := cl.CreateCheckpoint(ctx, l.ID); err != nil {
			t.Fatal(err)
		}
	}
	find := func() *api.CheckpointInfo {
		list, err := cl.Checkpoints(ctx, l.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range list.Checkpoints {
			if in.ID == ck.ID {
				return &in
			}
		}
		return nil
	}
	if in := find(); in == nil || !in.Pinned || in.Verification.Status != "ok" {
		t.Fatalf("pinned checkpoint after retention: %+v", in)
	}
	if in, err := cl.UnpinCheckpoint(ctx, l.ID, ck.ID); err != nil || in != nil {
		t.Fatalf("unpin of a checkpoint retention removes at once: %+v, %v", in, err)
	}
	if in := find(); in != nil {
		t.Fatalf("unpinned old checkpoint still listed: %+v", in)
	}

	// A corrupt stored file: Verify reports it and quarantines it.
	latest, err := cl.ShowCheckpoint(ctx, l.ID, "latest")
	if err != nil {
		t.Fatal(err)
	}
	var victim api.CheckpointFile
	for _, fl := range latest.FileList {
		if filepath.Ext(fl.Name) == ".sst" && fl.Size > victim.Size {
			victim = fl
		}
	}
	if victim.Name == "" {
		t.Fatalf("no SST in %+v", latest.FileList)
	}
	flip(t, filepath.Join(l.Dir, "snapshots", "files", victim.Checksum))
	v, err = cl.VerifyCheckpoint(ctx, l.ID, "latest")
	if err != nil || v.Status != "corrupt" || len(v.Corrupt) != 1 || v.Corrupt[0].Checksum != victim.Checksum {
		t.Fatalf("verify of a corrupt checkpoint: %+v %v", v, err)
	}
	if list, err := cl.Checkpoints(ctx, l.ID); err != nil || len(list.Quarantined) != 1 {
		t.Fatalf("quarantine after verify: %+v %v", list, err)
	}
}

// A checkpoint taken on a follower holds every write acknowledged before
// the create call, whichever node the call reaches: while the follower is
// cut off from raft it cannot have applied the last write, so the create
// must wait (here: until its deadline) rather than snapshot what it has;
// once it is back, the create returns a checkpoint at or past the write.
func TestCreateOnAFollowerHoldsAcknowledgedWrites(t *testing.T) {
	c := testcluster.Start(t, 3, func(cfg *node.Config) {
		// The cut-off follower should go on believing in its leader for a
		// while, so that a create it receives takes the two hops (to the
		// leader for the index, back to it to wait) rather than failing
		// for want of a leader.
		cfg.Raft.HeartbeatTimeout, cfg.Raft.ElectionTimeout, cfg.Raft.LeaderLeaseTimeout = 2*time.Second, 2*time.Second, time.Second
	})
	l := c.Leader()
	f := c.Followers(l)[0]
	ctx := context.Background()
	viaLeader := clientAt(t, l.Node.GRPCAddr())
	viaFollower := clientAt(t, f.Node.GRPCAddr())
	cl := c.Client()
	defer cl.Close()
	testcluster.Idempotent(t, "put", func() error { _, err := cl.Put(ctx, []byte("k"), []byte("before")); return err })
	testcluster.WaitFor(t, "the follower to apply the first write", 10*time.Second, func() bool {
		return f.Node.Raft.AppliedIndex() >= c.Leader().Node.Raft.AppliedIndex()
	})

	f.Net.Isolate(true)
	isolated := true
	defer func() {
		if isolated {
			f.Net.Isolate(false)
		}
	}()
	testcluster.Idempotent(t, "put", func() error { _, err := cl.Put(ctx, []byte("k"), []byte("after")); return err })
	acked := c.Leader().Node.Raft.AppliedIndex()
	if got := f.Node.Raft.AppliedIndex(); got >= acked {
		t.Fatalf("isolated follower applied %d, the write is at or below %d", got, acked)
	}
	vias := []struct {
		name string
		via  *api.Client
	}{{"via the follower", viaFollower}, {"via the leader", viaLeader}}
	for _, v := range vias {
		name, via := v.name, v.via
		cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		cr, err := via.CreateCheckpoint(cctx, f.ID)
		cancel()
		if err == nil {
			t.Fatalf("%s: the cut-off follower took checkpoint %s at index %d, without the write acknowledged at %d",
				name, cr.Checkpoint.ID, cr.Checkpoint.Index, acked)
		}
		t.Logf("%s, while cut off: %v", name, err)
	}

	f.Net.Isolate(false)
	isolated = false
	for _, v := range vias {
		name, via := v.name, v.via
		var cr *api.CreatedCheckpoint
		// Rejoining, the follower may call an election: retry until there
		// is a leader again.
		testcluster.WaitFor(t, "a create on the follower "+name, 20*time.Second, func() bool {
			var err error
			if cr, err = via.CreateCheckpoint(ctx, f.ID); err != nil {
				t.Logf("%s: %v", name, err)
			}
			return err == nil
		})
		if cr.Node != f.ID || cr.Checkpoint.Source != f.ID || cr.Checkpoint.Index < acked {
			t.Fatalf("%s: checkpoint %+v on %s, want one on %s at index %d or later", name, cr.Checkpoint, cr.Node, f.ID, acked)
		}
	}
}

// settle flushes and compacts the leader's state so that the next
// checkpoint shares its SSTs with the last one (a tiny test DB otherwise
// compacts everything together on the next flush, which large DBs don't).
func settle(t *testing.T, m *testcluster.Member) {
	t.Helper()
	err := m.Node.FSM.DB(func(db *pebble.DB) error {
		if err := db.Flush(); err != nil {
			return err
		}
		return db.Compact(context.Background(), []byte{0}, []byte{0xff, 0xff}, false)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// flip inverts one byte in the middle of a file. The store's copy of an
// SST shares its inode with the live DB's, so this corrupts both, as bit
// rot would.
func flip(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A cluster restored from another's checkpoint starts with the other
// cluster's client addresses under the same node ids. A forwarded call
// names its target by id and configured raft address, so a node of the
// other cluster reached through a stale address refuses it instead of
// serving it.
func TestForwardedCallRefusedByAnotherCluster(t *testing.T) {
	a := testcluster.Start(t, 1, nil)
	b := testcluster.Start(t, 1, nil)
	ctx := context.Background()
	testcluster.Idempotent(t, "put", func() error {
		_, err := a.Client().Put(ctx, []byte("only-in-a"), []byte("x"))
		return err
	})
	get := func(m *testcluster.Member, md ...string) error {
		cc, err := grpc.NewClient(m.Node.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		octx := metadata.AppendToOutgoingContext(ctx, md...)
		_, err = pb.NewKVClient(cc).Get(octx, &pb.GetRequest{Key: []byte("only-in-a")})
		return err
	}
	am, bm := a.Members[0], b.Members[0] // both "n1"
	target := "n1 " + am.RaftAddr        // as a node of cluster a names its n1
	if err := get(am, "cairn-forwarded", "n2", "cairn-target", target); err != nil {
		t.Fatalf("a's n1 refused a call meant for it: %v", err)
	}
	if err := get(bm, "cairn-forwarded", "n2", "cairn-target", target); status.Code(err) != codes.Unavailable {
		t.Fatalf("b's n1 served a call meant for a's n1: %v", err)
	}
	// Calls without a target (clients, older nodes) are served as before.
	if err := get(bm); status.Code(err) != codes.NotFound {
		t.Fatalf("plain get on b: %v", err)
	}
}

// The role names checkpoint requests accept cannot be node ids.
func TestConfigReservesRoleNames(t *testing.T) {
	for _, id := range []string{api.NodeLeader, api.NodeFollower} {
		cfg := api.DefaultConfig()
		cfg.NodeID = id
		if err := cfg.Validate(); err == nil {
			t.Errorf("node id %q: accepted", id)
		}
	}
	cfg := api.DefaultConfig()
	cfg.NodeID = "n1"
	if err := cfg.Validate(); err != nil {
		t.Errorf("node id n1: %v", err)
	}
}
