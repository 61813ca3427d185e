package api_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/cairn-db/cairn/api"
	pb "github.com/cairn-db/cairn/api/cairnpb"
	"github.com/cairn-db/cairn/internal/testcluster"
)

func TestKVThroughFollowers(t *testing.T) {
	c := testcluster.Start(t, 3, nil)
	l := c.Leader()
	ctx := context.Background()
	// A client that only knows a follower: writes and linearizable reads
	// are forwarded; the user never sees "not leader".
	f := c.Followers(l)[0]
	cl := clientAt(t, f.Node.GRPCAddr())
	var idx uint64
	testcluster.Idempotent(t, "put via follower", func() (err error) {
		idx, err = cl.Put(ctx, []byte("k1"), []byte("v1"))
		return err
	})
	if idx == 0 {
		t.Fatal("put via follower: index 0")
	}
	v, _, err := cl.Get(ctx, []byte("k1"))
	if err != nil || string(v.Bytes) != "v1" {
		t.Fatalf("get: %q %v", v.Bytes, err)
	}
	for i := 0; i < 25; i++ {
		testcluster.Idempotent(t, "put", func() error {
			_, err := cl.Put(ctx, []byte(fmt.Sprintf("s/%02d", i)), []byte("x"))
			return err
		})
	}
	// Paginated scan.
	var keys []string
	var next []byte
	for {
		kvs, n, err := cl.Scan(ctx, api.ScanOptions{Prefix: []byte("s/"), Start: next, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range kvs {
			keys = append(keys, string(kv.Key))
		}
		if n == nil {
			break
		}
		next = n
	}
	if len(keys) != 25 || keys[0] != "s/00" || keys[24] != "s/24" {
		t.Fatalf("scan got %d keys: %v", len(keys), keys)
	}
	if _, err := cl.Delete(ctx, []byte("k1")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cl.Get(ctx, []byte("k1")); !errors.Is(err, api.ErrNotFound) || status.Code(err) != codes.NotFound {
		t.Fatalf("get deleted: %v", err)
	}
	// Stale reads are served locally and report the index read at.
	c.WaitConverged()
	_, sidx, err := cl.Get(ctx, []byte("s/00"), api.WithConsistency(pb.Consistency_STALE))
	if err != nil || sidx == 0 {
		t.Fatalf("stale get idx=%d err=%v", sidx, err)
	}
	// Counters, atomic batch, CAS.
	resp, err := cl.Batch(ctx, api.AddOp([]byte("n"), 5), api.AddOp([]byte("n"), 2), api.MaxOp([]byte("hi"), 9))
	if err != nil || fmt.Sprint(resp.GetNums()) != "[5 7 9]" {
		t.Fatalf("batch %v %v", resp.GetNums(), err)
	}
	_, err = cl.Batch(ctx, api.PutOp([]byte("never"), []byte("x")), api.CASOp([]byte("n"), []byte("wrong"), []byte("y")))
	if !errors.Is(err, api.ErrCASFailed) || status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("cas: %v", err)
	}
	if _, _, err := cl.Get(ctx, []byte("never")); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("failed batch left a write behind: %v", err)
	}
	v, _, _ = cl.Get(ctx, []byte("n"), api.WithConsistency(pb.Consistency_LEASE))
	if !v.IsInt || v.Int != 7 {
		t.Fatalf("n=%v", v)
	}
}

func TestBadInputIsRejectedAndNeverLogged(t *testing.T) {
	c := testcluster.Start(t, 3, nil)
	l := c.Leader()
	cc, err := grpc.NewClient(l.Node.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	kv := pb.NewKVClient(cc)
	ctx := context.Background()
	// Nodes announce their client addresses through the log on start: let
	// that settle so that only the requests below could add entries.
	testcluster.WaitFor(t, "every node announced", 10*time.Second, func() bool {
		addrs, err := l.Node.FSM.NodeAddrs()
		return err == nil && len(addrs) == 3
	})
	c.WaitConverged()
	before := l.Node.Raft.Status().LastIndex
	cases := []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"empty key", func() error { _, err := kv.Put(ctx, &pb.PutRequest{Value: []byte("v")}); return err }, codes.InvalidArgument},
		{"huge key", func() error { _, err := kv.Put(ctx, &pb.PutRequest{Key: bytes.Repeat([]byte("k"), 5000)}); return err }, codes.InvalidArgument},
		{"huge value", func() error {
			_, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: make([]byte, 2<<20)})
			return err
		}, codes.InvalidArgument},
		{"empty batch", func() error { _, err := kv.Batch(ctx, &pb.BatchRequest{}); return err }, codes.InvalidArgument},
		{"unspecified op", func() error { _, err := kv.Batch(ctx, &pb.BatchRequest{Ops: []*pb.Op{{Key: []byte("k")}}}); return err }, codes.InvalidArgument},
		{"too many ops", func() error {
			ops := make([]*pb.Op, 10001)
			for i := range ops {
				ops[i] = api.PutOp([]byte("k"), nil)
			}
			_, err := kv.Batch(ctx, &pb.BatchRequest{Ops: ops})
			return err
		}, codes.InvalidArgument},
		{"missing key", func() error { _, err := kv.Get(ctx, &pb.GetRequest{Key: []byte("absent")}); return err }, codes.NotFound},
		{"bad scan range", func() error {
			_, err := kv.Scan(ctx, &pb.ScanRequest{Start: []byte("b"), End: []byte("a")})
			return err
		}, codes.InvalidArgument},
		{"commit unregistered", func() error {
			_, err := pb.NewProducerClient(cc).Commit(ctx, &pb.CommitRequest{Ops: []*pb.Op{api.AddOp([]byte("k"), 1)}})
			return err
		}, codes.InvalidArgument},
	}
	for _, tc := range cases {
		err := tc.call()
		if status.Code(err) != tc.want || status.Convert(err).Message() == "" {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	if after := l.Node.Raft.Status().LastIndex; after != before {
		t.Fatalf("rejected requests reached the log: last index %d -> %d", before, after)
	}
	// The node keeps serving.
	if _, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("ok"), Value: []byte("1")}); err != nil {
		t.Fatal(err)
	}
}

func TestProducerExactlyOnceAndFencing(t *testing.T) {
	c := testcluster.Start(t, 3, nil)
	cl := c.Client()
	ctx := context.Background()
	p1, err := cl.RegisterProducer(ctx, "op", api.DefaultProducerOptions())
	if err != nil {
		t.Fatal(err)
	}
	r, err := p1.Commit(ctx, []*pb.Op{api.AddOp([]byte("clicks/a"), 1)}, map[string]int64{"in/0": 100})
	if err != nil || r.Duplicate {
		t.Fatalf("commit %+v %v", r, err)
	}
	// A raw retry of the same (producer, epoch, seq) is answered from the
	// dedup table, not applied again.
	cc, _ := grpc.NewClient(c.Endpoints()[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer cc.Close()
	dup, err := pb.NewProducerClient(cc).Commit(ctx, &pb.CommitRequest{ProducerId: p1.ID(), Epoch: p1.Epoch(), Seq: r.Seq,
		Ops: []*pb.Op{api.AddOp([]byte("clicks/a"), 1)}, Offsets: []*pb.Offset{{Source: "in/0", Offset: 100}}})
	if err != nil || !dup.GetDuplicate() || dup.GetIndex() != r.Index {
		t.Fatalf("retry: %+v %v", dup, err)
	}
	v, _, _ := cl.Get(ctx, []byte("clicks/a"))
	if v.Int != 1 {
		t.Fatalf("clicks/a=%d after retry", v.Int)
	}
	// A second instance fences the first.
	p2, err := cl.RegisterProducer(ctx, "op", api.DefaultProducerOptions())
	if err != nil {
		t.Fatal(err)
	}
	if p2.Offsets()["in/0"] != 100 {
		t.Fatalf("new instance does not see committed offsets: %v", p2.Offsets())
	}
	_, err = p1.Commit(ctx, []*pb.Op{api.AddOp([]byte("clicks/a"), 1)}, map[string]int64{"in/0": 200})
	if !errors.Is(err, api.ErrFenced) || status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("zombie commit: %v", err)
	}
	off, err := cl.GetOffsets(ctx, "op")
	if err != nil || off.GetOffsets()[0].GetOffset() != 100 {
		t.Fatalf("offsets after fenced commit: %v %v", off, err)
	}
	if _, err := p2.Commit(ctx, []*pb.Op{api.AddOp([]byte("clicks/a"), 1)}, map[string]int64{"in/0": 200}); err != nil {
		t.Fatal(err)
	}
	v, _, _ = cl.Get(ctx, []byte("clicks/a"))
	if v.Int != 2 {
		t.Fatalf("clicks/a=%d", v.Int)
	}
	if st := cl.Stats(); st.Fenced != 1 {
		t.Fatalf("stats %+v", st)
	}
	// Batching handle: Add + SetOffset + Flush.
	for i := 0; i < 2500; i++ {
		if err := p2.Add(ctx, api.AddOp([]byte("clicks/b"), 1)); err != nil {
			t.Fatal(err)
		}
	}
	p2.SetOffset("in/0", 2700)
	if err := p2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	v, _, _ = cl.Get(ctx, []byte("clicks/b"))
	off, _ = cl.GetOffsets(ctx, "op")
	if v.Int != 2500 || off.GetOffsets()[0].GetOffset() != 2700 {
		t.Fatalf("clicks/b=%d offsets=%v", v.Int, off.GetOffsets())
	}
}

func TestStatusAndLeaderFailover(t *testing.T) {
	c := testcluster.Start(t, 3, nil)
	cl := c.Client()
	ctx := context.Background()
	c.WaitConverged()
	var st *pb.StatusResponse
	testcluster.WaitFor(t, "every node to report", 10*time.Second, func() bool {
		var err error
		st, err = cl.Status(ctx)
		if err != nil || len(st.GetNodes()) != 3 {
			return false
		}
		for _, n := range st.GetNodes() {
			if n.GetRole() == "unreachable" {
				return false
			}
		}
		return true
	})
	leaders := 0
	for _, n := range st.GetNodes() {
		if n.GetRole() == "leader" {
			leaders++
		}
		if n.GetPid() == 0 || n.GetGrpcAddress() == "" || n.GetRaftAddress() == "" {
			t.Fatalf("incomplete status %v", n)
		}
	}
	if leaders != 1 {
		t.Fatalf("%d leaders: %v", leaders, st)
	}
	for i := 0; i < 20; i++ {
		testcluster.Idempotent(t, "put", func() error {
			_, err := cl.Put(ctx, []byte(fmt.Sprintf("k%d", i)), []byte("v"))
			return err
		})
	}
	old := c.Leader()
	c.StopMember(old)
	cl2, _ := api.NewClient(api.DefaultClientConfig(c.Endpoints()...))
	defer cl2.Close()
	for i := 0; i < 20; i++ {
		if _, _, err := cl2.Get(ctx, []byte(fmt.Sprintf("k%d", i))); err != nil {
			t.Fatalf("acknowledged write k%d lost after failover: %v", i, err)
		}
	}
	if _, err := cl2.TransferLeader(ctx, ""); err != nil {
		t.Fatalf("transfer: %v", err)
	}
}

func TestProducerHeldCommitIsResolvedOnce(t *testing.T) {
	c := testcluster.Start(t, 3, nil)
	cl := c.Client()
	ctx := context.Background()
	p, err := cl.RegisterProducer(ctx, "held", api.DefaultProducerOptions())
	if err != nil {
		t.Fatal(err)
	}
	// A commit whose deadline has already passed: its outcome is unknown.
	dead, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	_, err = p.Commit(dead, []*pb.Op{api.AddOp([]byte("n"), 1)}, map[string]int64{"in": 1})
	cancel()
	if !errors.Is(err, api.ErrUnknownOutcome) || !p.Pending() {
		t.Fatalf("expired commit: err=%v pending=%v", err, p.Pending())
	}
	// The next commit first re-sends the held one (same seq), then its own.
	if _, err := p.Commit(ctx, []*pb.Op{api.AddOp([]byte("n"), 10)}, map[string]int64{"in": 2}); err != nil {
		t.Fatal(err)
	}
	if p.Pending() {
		t.Fatal("still pending after resolution")
	}
	v, _, err := cl.Get(ctx, []byte("n"))
	if err != nil || v.Int != 11 {
		t.Fatalf("n=%d (%v), want 11: the held commit must apply exactly once", v.Int, err)
	}
	if r, err := p.Resolve(ctx); r != nil || err != nil {
		t.Fatalf("resolve with nothing held: %v %v", r, err)
	}
}

// A scan's page ends at Limits.MaxScanBytes as well as at a key count:
// 40 values of 200 KiB (8 MB) in one page of the default 10,000 keys
// would exceed gRPC's 4 MiB receive limit (ResourceExhausted, as
// `cairn scan --limit 0` showed on a store of 1 KiB values).
func TestScanPagesStayUnderTheMessageLimit(t *testing.T) {
	c := testcluster.Start(t, 1, nil)
	cl := c.Client()
	ctx := context.Background()
	val := bytes.Repeat([]byte{'v'}, 200<<10)
	for i := 0; i < 40; i++ {
		testcluster.Idempotent(t, "put", func() error {
			_, err := cl.Put(ctx, []byte(fmt.Sprintf("big/%02d", i)), val)
			return err
		})
	}
	var keys []string
	pages := 0
	var next []byte
	for {
		kvs, n, err := cl.Scan(ctx, api.ScanOptions{Prefix: []byte("big/"), Start: next})
		if err != nil {
			t.Fatalf("scan page %d: %v", pages, err)
		}
		pages++
		size := 0
		for _, kv := range kvs {
			keys = append(keys, string(kv.Key))
			size += len(kv.Key) + len(kv.Value.Bytes)
		}
		if limit := api.DefaultLimits().MaxScanBytes; size > limit+len(val)+16 {
			t.Fatalf("page %d holds %d bytes, limit %d", pages, size, limit)
		}
		if n == nil {
			break
		}
		next = n
	}
	if len(keys) != 40 || keys[0] != "big/00" || keys[39] != "big/39" || pages < 4 {
		t.Fatalf("%d keys in %d pages (%v ... ): want 40 in order, in at least 4 pages", len(keys), pages, keys[:min(3, len(keys))])
	}
}

// clientAt is a client that knows only addr, closed when the test ends.
func clientAt(t *testing.T, addr string) *api.Client {
	t.Helper()
	cl, err := api.NewClient(api.DefaultClientConfig(addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}
