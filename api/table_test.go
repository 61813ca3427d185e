package api_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/cairn-db/cairn/api"
	pb "github.com/cairn-db/cairn/api/cairnpb"
	"github.com/cairn-db/cairn/internal/testcluster"
	"github.com/cairn-db/cairn/window"
)

const minute = 60_000

// startCluster starts n nodes and waits until every node knows every
// node's client address (announced through the log at start), so that
// followers can forward and no announcement lands in the log later.
func startCluster(t *testing.T, n int) *testcluster.Cluster {
	c := testcluster.Start(t, n, nil)
	for _, m := range c.Members {
		testcluster.WaitFor(t, m.ID+" to know every client address", 15*time.Second, func() bool {
			addrs, err := m.Node.FSM.NodeAddrs()
			if err != nil {
				return false
			}
			for _, o := range c.Members {
				if addrs[o.ID] != o.Node.GRPCAddr() {
					return false
				}
			}
			return true
		})
	}
	return c
}

func TestTableCRUD(t *testing.T) {
	c := startCluster(t, 3)
	l := c.Leader()
	ctx := context.Background()
	// Only a follower is known: writes are forwarded to the leader.
	cl, err := api.NewClient(api.DefaultClientConfig(c.Followers(l)[0].Node.GRPCAddr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	canon, err := cl.CreateTable(ctx, "clicks", "tumbling 60s COUNT retention=5m lateness=10s")
	if err != nil || canon != "tumbling 1m count lateness=10s retention=5m" {
		t.Fatalf("create: %q %v", canon, err)
	}
	if _, err := cl.CreateTable(ctx, "sessions", "session 30m distinct precision=10"); err != nil {
		t.Fatal(err)
	}
	before := l.Node.Raft.Status().LastIndex
	bad := []struct {
		name, spec string
		code       codes.Code
		msg        string
	}{
		{"clicks", "tumbling 1m count", codes.AlreadyExists, `table "clicks" already exists`},
		{"x", "tumbling 0s count", codes.InvalidArgument, "size 0s must be > 0"},
		{"x", "hopping 1m 2m sum", codes.InvalidArgument, "slide 2m must be <= size 1m"},
		{"x", "tumbling 1m median", codes.InvalidArgument, `unknown aggregation "median"`},
		{"x", "", codes.InvalidArgument, "empty spec"},
		{"no spaces", "tumbling 1m count", codes.InvalidArgument, "may only contain"},
		{"", "tumbling 1m count", codes.InvalidArgument, "must be 1 to 128 characters"},
	}
	for _, b := range bad {
		_, err := cl.CreateTable(ctx, b.name, b.spec)
		if status.Code(err) != b.code || !strings.Contains(status.Convert(err).Message(), b.msg) {
			t.Errorf("create %q %q: got %v, want %v containing %q", b.name, b.spec, err, b.code, b.msg)
		}
		if b.code == codes.AlreadyExists && !errors.Is(err, api.ErrExists) {
			t.Errorf("create existing: %v is not ErrExists", err)
		}
	}
	// Invalid specs and names are rejected before the log; the duplicate
	// create is decided by the state machine and takes one entry.
	if after := l.Node.Raft.Status().LastIndex; after > before+1 {
		t.Fatalf("rejected creates reached the log: last index %d -> %d", before, after)
	}
	info, err := cl.DescribeTable(ctx, "clicks")
	if err != nil || info.Name != "clicks" || info.Spec != canon || info.HasWatermark || info.Late != 0 || info.Closed != 0 || info.Created == 0 {
		t.Fatalf("describe: %+v %v", info, err)
	}
	ts, err := cl.ListTables(ctx, api.WithConsistency(pb.Consistency_LEASE))
	if err != nil || len(ts) != 2 || ts[0].Name != "clicks" || ts[1].Name != "sessions" || ts[1].Spec != "session 30m distinct precision=10 lateness=0s retention=0s" {
		t.Fatalf("list: %+v %v", ts, err)
	}
	if err := cl.DropTable(ctx, "sessions"); err != nil {
		t.Fatal(err)
	}
	for _, call := range []func() error{
		func() error { _, err := cl.DescribeTable(ctx, "sessions"); return err },
		func() error { return cl.DropTable(ctx, "sessions") },
		func() error { _, err := cl.GetWindows(ctx, "sessions", []byte("k"), 0, 1); return err },
		func() error { _, _, err := cl.GetWindowKeys(ctx, "sessions", 0, minute, nil, 0); return err },
		func() error {
			return cl.Watch(ctx, "sessions", api.Position{}, func(api.ClosedWindow) error { return nil })
		},
	} {
		if err := call(); !errors.Is(err, api.ErrNotFound) || status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), `table "sessions" does not exist`) {
			t.Errorf("dropped table: got %v", err)
		}
	}
	c.WaitConverged()
	ts, err = cl.ListTables(ctx, api.WithConsistency(pb.Consistency_STALE))
	if err != nil || len(ts) != 1 {
		t.Fatalf("list after drop: %+v %v", ts, err)
	}
}

func TestWindowQueries(t *testing.T) {
	c := startCluster(t, 3)
	cl := c.Client()
	ctx := context.Background()
	if _, err := cl.CreateTable(ctx, "clicks", "tumbling 1m count lateness=10s retention=1h"); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CreateTable(ctx, "latency", "tumbling 1m mean"); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CreateTable(ctx, "visits", "session 5m count"); err != nil {
		t.Fatal(err)
	}
	p, err := cl.RegisterProducer(ctx, "op", api.DefaultProducerOptions())
	if err != nil {
		t.Fatal(err)
	}
	wm := func(t int64) *pb.Watermark { return &pb.Watermark{Source: "s0", Time: t} }
	// Five keys in minute 0, key a also in minute 1 (out of order).
	var ops []*pb.Op
	for i, k := range []string{"e", "c", "a", "d", "b"} {
		for j := 0; j <= i; j++ {
			ops = append(ops, api.WindowAddOp("clicks", []byte(k), int64(1000*(i+j)), 1))
		}
	}
	ops = append(ops, api.WindowAddOp("clicks", []byte("a"), minute+5, 1), api.WindowAddOp("clicks", []byte("a"), 30_000, 1),
		api.WindowAddOp("latency", []byte("a"), 10, 3), api.WindowAddOp("latency", []byte("a"), 20, 4),
		api.WindowAddOp("visits", []byte("u"), 0, 1))
	if r, err := p.Commit(ctx, ops, nil, wm(50_000)); err != nil || r.Late != 0 {
		t.Fatalf("commit: %+v %v", r, err)
	}
	ws, err := cl.GetWindows(ctx, "clicks", []byte("a"), 0, 2*minute)
	if err != nil || len(ws) != 2 {
		t.Fatalf("windows: %+v %v", ws, err)
	}
	// a: 3 events in minute 0 (i=2: j=0..2) + 1 at 30s; 1 in minute 1.
	if w := ws[0]; w.Start != 0 || w.End != minute || w.Value.Kind != window.ValueInt || w.Value.Int != 4 || w.Value.Count != 4 || w.Closed {
		t.Fatalf("window 0: %+v", w)
	}
	if w := ws[1]; w.Start != minute || w.Value.Int != 1 || w.Closed {
		t.Fatalf("window 1: %+v", w)
	}
	if ws, err := cl.GetWindows(ctx, "latency", []byte("a"), 0, 1); err != nil || len(ws) != 1 || ws[0].Value.Kind != window.ValueFloat || ws[0].Value.Float != 3.5 {
		t.Fatalf("mean: %+v %v", ws, err)
	}
	if ws, err := cl.GetWindows(ctx, "visits", []byte("u"), 0, 1); err != nil || len(ws) != 1 || ws[0].End != 5*minute {
		t.Fatalf("session: %+v %v", ws, err)
	}
	// The watermark passes minute 0's end + lateness: it closes; a late
	// event for it is counted and not applied.
	r, err := p.Commit(ctx, nil, nil, wm(minute+10_000))
	if err != nil {
		t.Fatal(err)
	}
	r, err = p.Commit(ctx, []*pb.Op{api.WindowAddOp("clicks", []byte("a"), 59_999, 1), api.WindowAddOp("clicks", []byte("a"), minute, 1)}, nil)
	if err != nil || r.Late != 1 {
		t.Fatalf("late commit: %+v %v", r, err)
	}
	ws, _ = cl.GetWindows(ctx, "clicks", []byte("a"), 0, 2*minute, api.WithConsistency(pb.Consistency_LEASE))
	if len(ws) != 2 || ws[0].Value.Int != 4 || !ws[0].Closed || ws[1].Value.Int != 2 || ws[1].Closed {
		t.Fatalf("after close: %+v", ws)
	}
	info, err := cl.DescribeTable(ctx, "clicks")
	if err != nil || !info.HasWatermark || info.Watermark != minute+10_000 || info.Late != 1 || info.Closed != 5 || info.Producers != 1 {
		t.Fatalf("describe: %+v %v", info, err)
	}
	// Keys of window [0, 1m), two per page.
	var keys []string
	var tok []byte
	pages := 0
	for {
		page, next, err := cl.GetWindowKeys(ctx, "clicks", 0, minute, tok, 2)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, w := range page {
			keys = append(keys, fmt.Sprintf("%s=%d", w.Key, w.Value.Int))
			if !w.Closed || w.Start != 0 || w.End != minute {
				t.Fatalf("window key %+v", w)
			}
		}
		if next == nil {
			break
		}
		tok = next
	}
	if got := strings.Join(keys, " "); got != "a=4 b=5 c=2 d=4 e=1" || pages != 3 {
		t.Fatalf("window keys (%d pages): %s", pages, got)
	}
	if page, next, err := cl.GetWindowKeys(ctx, "clicks", minute, 2*minute, nil, 0); err != nil || len(page) != 1 || next != nil {
		t.Fatalf("minute 1: %+v %q %v", page, next, err)
	}
	for _, b := range []struct {
		call func() error
		msg  string
	}{
		{func() error { _, _, err := cl.GetWindowKeys(ctx, "clicks", 1, minute+1, nil, 0); return err }, "is not a window of table"},
		{func() error { _, _, err := cl.GetWindowKeys(ctx, "clicks", 0, 2*minute, nil, 0); return err }, "is not a window of table"},
		{func() error { _, _, err := cl.GetWindowKeys(ctx, "visits", 0, minute, nil, 0); return err }, "only for tumbling and hopping"},
		{func() error { _, err := cl.GetWindows(ctx, "clicks", []byte("a"), 5, 5); return err }, "must be after"},
		{func() error { _, err := cl.GetWindows(ctx, "clicks", nil, 0, 5); return err }, "key is empty"},
	} {
		if err := b.call(); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), b.msg) {
			t.Errorf("got %v, want InvalidArgument containing %q", err, b.msg)
		}
	}
}

// --- a deterministic out-of-order stream and its reference ---

type event struct {
	key string
	t   int64
}

type commit struct {
	events []event
	wm     int64 // the producer's watermark sent with the commit
}

// genStream makes n commits of out-of-order events over keys, with about
// one event in 20 arriving later than the allowed lateness.
func genStream(seed uint64, n, perCommit int, keys []string) []commit {
	rng := rand.New(rand.NewPCG(seed, 1))
	var out []commit
	maxT := int64(0)
	for i := 0; i < n; i++ {
		var c commit
		now := int64(i) * 2_000 // 2s of event time per commit
		for j := 0; j < perCommit; j++ {
			t := now - rng.Int64N(15_000) // up to 15s out of order
			if rng.IntN(20) == 0 {
				t = now - 60_000 - rng.Int64N(60_000) // well behind
			}
			t = max(t, 0)
			c.events = append(c.events, event{keys[rng.IntN(len(keys))], t})
			maxT = max(maxT, t)
		}
		c.wm = maxT - 15_000
		out = append(out, c)
	}
	return out
}

type result struct {
	key        string
	start, end int64
	count      int64
}

func (r result) String() string { return fmt.Sprintf("%s[%d,%d)=%d", r.key, r.start, r.end, r.count) }

// reference replays commits through the table rules for a tumbling count
// table with one producer: events are applied at the watermark of the
// commits before theirs; a window is final once the watermark reaches
// end+lateness; results are published by close time, then key, then start.
func reference(cs []commit, size, lateness int64) (closed []result, late int) {
	wm := window.MinWatermark
	counts := map[[2]any]int64{}
	for _, c := range cs {
		for _, e := range c.events {
			start := e.t - e.t%size
			if wm >= start+size+lateness {
				late++
				continue
			}
			counts[[2]any{e.key, start}]++
		}
		wm = max(wm, c.wm)
	}
	for k, n := range counts {
		start := k[1].(int64)
		if wm >= start+size+lateness {
			closed = append(closed, result{k[0].(string), start, start + size, n})
		}
	}
	sort.Slice(closed, func(i, j int) bool {
		a, b := closed[i], closed[j]
		if a.end != b.end {
			return a.end < b.end
		}
		if a.key != b.key {
			return a.key < b.key
		}
		return a.start < b.start
	})
	return closed, late
}

func ops(table string, es []event) []*pb.Op {
	out := make([]*pb.Op, len(es))
	for i, e := range es {
		out[i] = api.WindowAddOp(table, []byte(e.key), e.t, 1)
	}
	return out
}

// checkDelivered compares delivered results with the reference: same
// results in the same order, positions strictly increasing.
func checkDelivered(t *testing.T, got []*pb.ClosedWindow, want []result) {
	t.Helper()
	var prev api.Position
	for i, g := range got {
		p := api.Position{Index: g.GetIndex(), Ord: g.GetOrd()}
		if !prev.Less(p) {
			t.Fatalf("result %d at position %s, not after %s", i, p, prev)
		}
		prev = p
	}
	if len(got) != len(want) {
		t.Errorf("delivered %d results, want %d", len(got), len(want))
	}
	for i := 0; i < min(len(got), len(want)); i++ {
		g := result{string(got[i].GetKey()), got[i].GetStart(), got[i].GetEnd(), got[i].GetValue().GetInt()}
		if g != want[i] {
			t.Fatalf("result %d: got %v, want %v", i, g, want[i])
		}
	}
}

func toPB(cw api.ClosedWindow) *pb.ClosedWindow {
	return &pb.ClosedWindow{Index: cw.Position.Index, Ord: cw.Position.Ord, Key: cw.Key, Start: cw.Start, End: cw.End,
		Value: &pb.WindowValue{Kind: &pb.WindowValue_Int{Int: cw.Value.Int}, Count: cw.Value.Count}}
}

var pages = []string{"home", "search", "product", "cart", "checkout", "help"}

func TestWatchDeliversEveryClosedWindowOnceInOrder(t *testing.T) {
	c := startCluster(t, 3)
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := cl.CreateTable(ctx, "views", "tumbling 1m count lateness=10s retention=1h"); err != nil {
		t.Fatal(err)
	}
	stream := genStream(1, 200, 20, pages)
	last := stream[len(stream)-1].wm
	stream = append(stream, commit{wm: last + 2*minute}) // close everything
	want, late := reference(stream, minute, 10_000)
	if late == 0 || len(want) < 30 {
		t.Fatalf("weak stream: %d late, %d windows", late, len(want))
	}
	// A subscriber from the start, concurrent with the producer.
	var (
		mu  sync.Mutex
		got []*pb.ClosedWindow
	)
	done := make(chan struct{})
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	werr := make(chan error, 1)
	go func() {
		werr <- cl.Watch(wctx, "views", api.Position{}, func(cw api.ClosedWindow) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, toPB(cw))
			if len(got) == len(want) {
				close(done)
			}
			return nil
		})
	}()
	p, err := cl.RegisterProducer(ctx, "op", api.DefaultProducerOptions())
	if err != nil {
		t.Fatal(err)
	}
	var lateSum uint64
	for _, s := range stream {
		r, err := p.Commit(ctx, ops("views", s.events), nil, &pb.Watermark{Source: "s0", Time: s.wm})
		if err != nil {
			t.Fatal(err)
		}
		lateSum += r.Late
	}
	select {
	case <-done:
	case err := <-werr:
		t.Fatalf("watch ended: %v", err)
	case <-ctx.Done():
		t.Fatalf("timed out waiting for %d results", len(want))
	}
	// Nothing beyond the reference is pending on any node.
	c.WaitConverged()
	mu.Lock()
	defer mu.Unlock()
	for _, m := range c.Members {
		rest, err := m.Node.FSM.ClosedSince("views", got[len(got)-1].GetIndex(), got[len(got)-1].GetOrd(), 0)
		if err != nil || len(rest) != 0 {
			t.Fatalf("%s: %d results after the last delivered (%v)", m.ID, len(rest), err)
		}
	}
	checkDelivered(t, got, want)
	info, _ := cl.DescribeTable(ctx, "views")
	if int(info.Late) != late || int(lateSum) != late || int(info.Closed) != len(want) {
		t.Fatalf("late %d (commits %d), closed %d; reference late %d closed %d", info.Late, lateSum, info.Closed, late, len(want))
	}
	// A second subscriber resuming from the middle gets exactly the rest.
	mid := len(want) / 2
	var rest []*pb.ClosedWindow
	rctx, rcancel := context.WithCancel(ctx)
	err = cl.Watch(rctx, "views", api.Position{Index: got[mid].GetIndex(), Ord: got[mid].GetOrd()}, func(cw api.ClosedWindow) error {
		rest = append(rest, toPB(cw))
		if len(rest) == len(want)-mid-1 {
			rcancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	checkDelivered(t, rest, want[mid+1:])
	// A subscriber that stops after three results gets three, even though
	// more had already arrived on the stream.
	n := 0
	sctx, scancel := context.WithCancel(ctx)
	err = cl.Watch(sctx, "views", api.Position{}, func(api.ClosedWindow) error {
		if n++; n == 3 {
			scancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || n != 3 {
		t.Fatalf("stopped subscriber: %d results, %v", n, err)
	}
}

func dial(t *testing.T, addr string) pb.TableClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return pb.NewTableClient(cc)
}

// recvN reads from a raw watch stream until n results arrived in total.
func recvN(t *testing.T, s pb.Table_WatchClient, got *[]*pb.ClosedWindow, n int) {
	t.Helper()
	for len(*got) < n {
		m, err := s.Recv()
		if err != nil {
			t.Fatalf("recv after %d of %d: %v", len(*got), n, err)
		}
		*got = append(*got, m)
	}
}

// A subscriber reads part of the results from the leader and disconnects;
// the leader stops; the subscriber resumes from its last position on
// another node: nothing missed, nothing twice.
func TestWatchResumeAcrossLeaderChange(t *testing.T) {
	c := startCluster(t, 3)
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := cl.CreateTable(ctx, "views", "tumbling 1m count lateness=10s retention=1h"); err != nil {
		t.Fatal(err)
	}
	stream := genStream(2, 160, 20, pages)
	stream = append(stream, commit{wm: stream[len(stream)-1].wm + 2*minute})
	want, _ := reference(stream, minute, 10_000)
	half := len(stream) / 2
	p, err := cl.RegisterProducer(ctx, "op", api.DefaultProducerOptions())
	if err != nil {
		t.Fatal(err)
	}
	commitRange := func(cs []commit) {
		for _, s := range cs {
			if _, err := p.Commit(ctx, ops("views", s.events), nil, &pb.Watermark{Source: "s0", Time: s.wm}); err != nil {
				t.Fatal(err)
			}
		}
	}
	commitRange(stream[:half])
	firstHalf, _ := reference(stream[:half], minute, 10_000)
	if len(firstHalf) < 10 {
		t.Fatalf("only %d windows closed in the first half", len(firstHalf))
	}
	leader := c.Leader()
	sctx, scancel := context.WithCancel(ctx)
	s, err := dial(t, leader.Node.GRPCAddr()).Watch(sctx, &pb.WatchRequest{Table: "views"})
	if err != nil {
		t.Fatal(err)
	}
	var got []*pb.ClosedWindow
	recvN(t, s, &got, len(firstHalf)-3)
	scancel() // disconnect mid-way
	c.StopMember(leader)
	commitRange(stream[half:]) // through the new leader
	last := got[len(got)-1]
	other := c.Followers(leader)[0]
	s, err = dial(t, other.Node.GRPCAddr()).Watch(ctx, &pb.WatchRequest{Table: "views", ResumeIndex: last.GetIndex(), ResumeOrd: last.GetOrd()})
	if err != nil {
		t.Fatal(err)
	}
	recvN(t, s, &got, len(want))
	c.WaitConverged()
	if rest, err := other.Node.FSM.ClosedSince("views", got[len(got)-1].GetIndex(), got[len(got)-1].GetOrd(), 0); err != nil || len(rest) != 0 {
		t.Fatalf("%d results after the last delivered (%v)", len(rest), err)
	}
	checkDelivered(t, got, want)
}

// The Go client's Watch keeps going while the node it reads from (the
// leader) is stopped mid-stream, and delivers exactly the reference.
func TestWatchClientSurvivesLeaderStop(t *testing.T) {
	c := startCluster(t, 3)
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := cl.CreateTable(ctx, "views", "tumbling 1m count lateness=10s retention=1h"); err != nil {
		t.Fatal(err)
	}
	stream := genStream(3, 200, 20, pages)
	stream = append(stream, commit{wm: stream[len(stream)-1].wm + 2*minute})
	want, _ := reference(stream, minute, 10_000)
	leader := c.Leader()
	fs := c.Followers(leader)
	// A fresh client's first attempt goes to its first endpoint: the leader.
	wcfg := api.DefaultClientConfig(leader.Node.GRPCAddr(), fs[0].Node.GRPCAddr(), fs[1].Node.GRPCAddr())
	wcfg.BackoffMax = 100 * time.Millisecond
	wcl, err := api.NewClient(wcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer wcl.Close()
	var (
		mu  sync.Mutex
		got []*pb.ClosedWindow
	)
	first, done := make(chan struct{}), make(chan struct{})
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	werr := make(chan error, 1)
	go func() {
		werr <- wcl.Watch(wctx, "views", api.Position{}, func(cw api.ClosedWindow) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, toPB(cw))
			switch len(got) {
			case 1:
				close(first)
			case len(want):
				close(done)
			}
			return nil
		})
	}()
	p, err := cl.RegisterProducer(ctx, "op", api.DefaultProducerOptions())
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range stream {
		if i == len(stream)/2 {
			<-first // the subscriber is reading from the leader
			c.StopMember(leader)
		}
		if _, err := p.Commit(ctx, ops("views", s.events), nil, &pb.Watermark{Source: "s0", Time: s.wm}); err != nil {
			t.Fatalf("commit %d: %v", i, err)
		}
	}
	select {
	case <-done:
	case err := <-werr:
		t.Fatalf("watch ended: %v", err)
	case <-ctx.Done():
		t.Fatalf("timed out waiting for %d results", len(want))
	}
	c.WaitConverged()
	mu.Lock()
	defer mu.Unlock()
	for _, m := range c.Followers(leader) {
		if rest, err := m.Node.FSM.ClosedSince("views", got[len(got)-1].GetIndex(), got[len(got)-1].GetOrd(), 0); err != nil || len(rest) != 0 {
			t.Fatalf("%d results after the last delivered (%v)", len(rest), err)
		}
	}
	checkDelivered(t, got, want)
	if st := wcl.Stats(); st.Retries == 0 {
		t.Fatalf("the watch never reconnected (was it on the leader?): %+v", st)
	}
}

func TestWatchTrimmedPosition(t *testing.T) {
	c := startCluster(t, 1)
	cl := c.Client()
	ctx := context.Background()
	if _, err := cl.CreateTable(ctx, "views", "tumbling 1m count retention=1m"); err != nil {
		t.Fatal(err)
	}
	p, err := cl.RegisterProducer(ctx, "op", api.DefaultProducerOptions())
	if err != nil {
		t.Fatal(err)
	}
	wm := func(t int64) *pb.Watermark { return &pb.Watermark{Source: "s0", Time: t} }
	if _, err := p.Commit(ctx, []*pb.Op{api.WindowAddOp("views", []byte("a"), 0, 1), api.WindowAddOp("views", []byte("a"), minute, 1),
		api.WindowAddOp("views", []byte("a"), 2*minute, 1)}, nil, wm(minute)); err != nil {
		t.Fatal(err)
	}
	var first api.ClosedWindow
	wctx, wcancel := context.WithCancel(ctx)
	_ = cl.Watch(wctx, "views", api.Position{}, func(cw api.ClosedWindow) error { first = cw; wcancel(); return nil })
	if first.Start != 0 || first.ExpireTime != 2*minute {
		t.Fatalf("first %+v", first)
	}
	// Minute 1 closes (the watch log holds it), minute 0 expires.
	if _, err := p.Commit(ctx, nil, nil, wm(2*minute)); err != nil {
		t.Fatal(err)
	}
	// Resuming after minute 0 is fine: nothing after it was trimmed.
	wctx, wcancel = context.WithCancel(ctx)
	var second api.ClosedWindow
	_ = cl.Watch(wctx, "views", first.Position, func(cw api.ClosedWindow) error { second = cw; wcancel(); return nil })
	if second.Start != minute {
		t.Fatalf("second %+v", second)
	}
	// Minute 1 expires too (and is trimmed at the following advance): a
	// subscriber still at minute 0 missed it.
	for _, w := range []int64{3 * minute, 4 * minute} {
		if _, err := p.Commit(ctx, nil, nil, wm(w)); err != nil {
			t.Fatal(err)
		}
	}
	err = cl.Watch(ctx, "views", first.Position, func(api.ClosedWindow) error { return nil })
	if !errors.Is(err, api.ErrTrimmed) || status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "longer retention") {
		t.Fatalf("trimmed resume: %v", err)
	}
	info, _ := cl.DescribeTable(ctx, "views")
	if info.Trimmed != second.Position {
		t.Fatalf("trimmed through %s, want %s", info.Trimmed, second.Position)
	}
	// A position from before the table existed (an older table of the
	// same name) is refused too, rather than silently skipping nothing.
	err = cl.Watch(ctx, "views", api.Position{Index: 1}, func(api.ClosedWindow) error { return nil })
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "dropped") {
		t.Fatalf("pre-creation position: %v", err)
	}
	// A callback error ends the watch with that error (minute 2 is
	// still in the log).
	boom := errors.New("boom")
	if err := cl.Watch(ctx, "views", api.Position{}, func(api.ClosedWindow) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("callback error: %v", err)
	}
}

// A follower that has not applied a table's creation yet still accepts a
// watch of it (it asks the leader and waits), instead of NotFound.
func TestWatchOnLaggingFollower(t *testing.T) {
	c := startCluster(t, 3)
	l := c.Leader()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i, f := range append(c.Followers(l), c.Followers(l)...) {
		for j := 0; j < 5; j++ {
			name := fmt.Sprintf("t%d-%d", i, j)
			createTableRetrying(ctx, t, c, name, "tumbling 1m count")
			sctx, scancel := context.WithCancel(ctx)
			s, err := dial(t, f.Node.GRPCAddr()).Watch(sctx, &pb.WatchRequest{Table: name})
			if err != nil {
				t.Fatal(err)
			}
			if md, _ := s.Header(); len(md.Get("cairn-watch")) == 0 {
				_, err := s.Recv()
				t.Fatalf("watch of %s on %s right after its creation: %v", name, f.ID, err)
			}
			scancel()
		}
	}
}

// createTableRetrying creates a table on the current leader. On a busy
// machine leadership can move during the call (the outcome is then unknown):
// it retries on the new leader, and AlreadyExists after such a retry means
// the earlier attempt was applied.
func createTableRetrying(ctx context.Context, t *testing.T, c *testcluster.Cluster, name, spec string) {
	t.Helper()
	retried := false
	for {
		_, err := dial(t, c.Leader().Node.GRPCAddr()).CreateTable(ctx, &pb.CreateTableRequest{Name: name, Spec: spec})
		switch code := status.Code(err); {
		case err == nil, retried && code == codes.AlreadyExists:
			return
		case (code == codes.Unavailable || code == codes.DeadlineExceeded) && ctx.Err() == nil:
			t.Logf("create table %s: %v; retrying on the current leader", name, err)
			retried = true
		default:
			t.Fatal(err)
		}
	}
}

// A node cut off from the cluster ends its watch streams (Unavailable), so
// that subscribers move to a node that still receives results.
func TestWatchEndsOnIsolatedNode(t *testing.T) {
	c := startCluster(t, 3)
	l := c.Leader()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := dial(t, l.Node.GRPCAddr()).CreateTable(ctx, &pb.CreateTableRequest{Name: "v", Spec: "tumbling 1m count"}); err != nil {
		t.Fatal(err)
	}
	f := c.Followers(l)[0]
	s, err := dial(t, f.Node.GRPCAddr()).Watch(ctx, &pb.WatchRequest{Table: "v"})
	if err != nil {
		t.Fatal(err)
	}
	if md, _ := s.Header(); len(md.Get("cairn-watch")) == 0 {
		t.Fatal("watch not accepted")
	}
	f.Net.Isolate(true)
	defer f.Net.Isolate(false)
	start := time.Now()
	_, err = s.Recv()
	if status.Code(err) != codes.Unavailable || api.ReasonOf(err) != api.ReasonNoLeader {
		t.Fatalf("isolated node's watch ended with %v", err)
	}
	t.Logf("stream ended %v after isolation: %v", time.Since(start).Round(time.Millisecond), err)
}

func TestPositionParse(t *testing.T) {
	for in, want := range map[string]api.Position{"12/3": {Index: 12, Ord: 3}, "7": {Index: 7}, " 0/0 ": {}} {
		if p, err := api.ParsePosition(in); err != nil || p != want || (in == "12/3" && p.String() != in) {
			t.Errorf("%q: %v %v", in, p, err)
		}
	}
	for _, in := range []string{"", "a/1", "1/x", "1/99999999999"} {
		if _, err := api.ParsePosition(in); err == nil {
			t.Errorf("%q parsed", in)
		}
	}
	a, b := api.Position{Index: 1, Ord: 5}, api.Position{Index: 2}
	if !a.Less(b) || b.Less(a) || b.Less(b) {
		t.Error("Less")
	}
}
