package raftnode_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/fsm/command"
	"github.com/cairn-db/cairn/internal/faultnet"
	"github.com/cairn-db/cairn/raftnode"
)

type member struct {
	id    string
	dir   string
	addr  string
	net   *faultnet.Layer
	fsm   *fsm.FSM
	node  *raftnode.Node
	peers []raftnode.Peer
	tune  func(*raftnode.Config) // applied after testConfig, if set
}

type cluster struct {
	t       *testing.T
	members []*member
}

func testConfig(m *member) raftnode.Config {
	c := raftnode.DefaultConfig()
	c.NodeID, c.Dir, c.GRPCAddr = m.id, filepath.Join(m.dir, "raft"), "grpc-"+m.id
	c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = 300*time.Millisecond, 300*time.Millisecond, 150*time.Millisecond
	c.SnapshotThreshold, c.SnapshotInterval, c.TrailingLogs = 1<<30, time.Hour, 1024
	c.StreamLayer = m.net
	c.Bootstrap = m.peers
	if s := os.Getenv("CAIRN_TEST_LOG_STORE"); s != "" {
		c.LogStore = s // run the suite on another log store
	}
	return c
}

func (m *member) start(t *testing.T) {
	t.Helper()
	if m.net == nil {
		sl, err := raftnode.NewTCPStreamLayer(m.addrOr("127.0.0.1:0"), "")
		if err != nil {
			t.Fatal(err)
		}
		m.net = faultnet.Wrap(sl)
		m.addr = sl.Addr().String()
	}
	f, err := fsm.Open(fsm.DefaultConfig(filepath.Join(m.dir, "state")))
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(m)
	if m.tune != nil {
		m.tune(&cfg)
	}
	n, err := raftnode.New(cfg, f)
	if err != nil {
		t.Fatal(err)
	}
	m.fsm, m.node = f, n
}

func (m *member) addrOr(def string) string {
	if m.addr != "" {
		return m.addr
	}
	return def
}

func (m *member) stop() {
	if m.node != nil {
		_ = m.node.Shutdown()
		_ = m.fsm.Close()
		m.node, m.fsm, m.net = nil, nil, nil
	}
}

func newCluster(t *testing.T, n int) *cluster { return newClusterWith(t, n, nil) }

// newClusterWith is newCluster with tune applied to every member's config.
func newClusterWith(t *testing.T, n int, tune func(*raftnode.Config)) *cluster {
	c := &cluster{t: t}
	for i := 1; i <= n; i++ {
		m := &member{id: fmt.Sprintf("n%d", i), dir: t.TempDir(), tune: tune}
		sl, err := raftnode.NewTCPStreamLayer("127.0.0.1:0", "")
		if err != nil {
			t.Fatal(err)
		}
		m.net, m.addr = faultnet.Wrap(sl), sl.Addr().String()
		c.members = append(c.members, m)
	}
	var peers []raftnode.Peer
	for _, m := range c.members {
		peers = append(peers, raftnode.Peer{ID: m.id, Addr: m.addr})
	}
	for _, m := range c.members {
		m.peers = peers
		m.start(t)
	}
	t.Cleanup(func() {
		for _, m := range c.members {
			m.stop()
		}
	})
	return c
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *cluster) leader(exclude ...*member) *member {
	c.t.Helper()
	var l *member
	waitFor(c.t, "a ready leader", 10*time.Second, func() bool {
		for _, m := range c.members {
			skip := m.node == nil
			for _, e := range exclude {
				skip = skip || e == m
			}
			if !skip && m.node.Ready() {
				l = m
				return true
			}
		}
		return false
	})
	return l
}

func addCmd(key string, n int64) []byte {
	return command.MustEncode(&command.Command{Type: command.TypeBatch, Batch: &command.Batch{
		Ops: []command.Op{{Kind: command.OpAdd, Key: []byte(key), Num: n}}}})
}

func linearizableGet(ctx context.Context, m *member, key string) (fsm.Value, error) {
	idx, err := m.node.ReadIndex(ctx)
	if err != nil {
		return fsm.Value{}, err
	}
	if err := m.node.WaitApplied(ctx, idx); err != nil {
		return fsm.Value{}, err
	}
	v, _, err := m.fsm.Get([]byte(key))
	return v, err
}

func TestElectionReplicationFailover(t *testing.T) {
	c := newCluster(t, 3)
	l := c.leader()
	ctx := context.Background()
	acked := int64(0)
	for i := 0; i < 50; i++ {
		res, err := l.node.Apply(ctx, addCmd("n", 1))
		if err != nil || !res.OK() {
			t.Fatalf("apply %d: %v %+v", i, err, res)
		}
		acked++
	}
	// Every replica converges to the same applied index and value.
	target := l.node.Status().CommitIndex
	for _, m := range c.members {
		waitFor(t, m.id+" to apply", 5*time.Second, func() bool { return m.fsm.AppliedIndex() >= target })
		if v, _, _ := m.fsm.Get([]byte("n")); v.Int != acked {
			t.Fatalf("%s has n=%d want %d", m.id, v.Int, acked)
		}
	}
	// A follower refuses writes with a leader hint.
	for _, m := range c.members {
		if m != l {
			_, err := m.node.Apply(ctx, addCmd("n", 1))
			var nl *raftnode.NotLeaderError
			if !errors.As(err, &nl) || nl.LeaderID != l.id {
				t.Fatalf("follower apply: %v", err)
			}
			break
		}
	}
	// Kill the leader: a new one takes over and every acknowledged write is
	// readable linearizably from it.
	l.stop()
	l2 := c.leader(l)
	v, err := linearizableGet(ctx, l2, "n")
	if err != nil || v.Int != acked {
		t.Fatalf("after failover n=%d err=%v want %d", v.Int, err, acked)
	}
	if _, err := l2.node.Apply(ctx, addCmd("n", 1)); err != nil {
		t.Fatal(err)
	}
	acked++
	// The old leader restarts and catches up.
	l.start(t)
	target = l2.node.Status().CommitIndex
	waitFor(t, "restarted node to catch up", 10*time.Second, func() bool { return l.fsm.AppliedIndex() >= target })
	if v, _, _ := l.fsm.Get([]byte("n")); v.Int != acked {
		t.Fatalf("restarted node n=%d want %d", v.Int, acked)
	}
}

func TestPartitionedLeaderCannotServeLinearizableRead(t *testing.T) {
	c := newCluster(t, 3)
	l := c.leader()
	ctx := context.Background()
	if _, err := l.node.Apply(ctx, addCmd("n", 1)); err != nil {
		t.Fatal(err)
	}
	l.net.Isolate(true)
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	_, err := linearizableGet(rctx, l, "n")
	cancel()
	if err == nil {
		t.Fatal("isolated leader served a linearizable read")
	}
	// The majority elects a new leader and moves on.
	l2 := c.leader(l)
	if _, err := l2.node.Apply(ctx, addCmd("n", 10)); err != nil {
		t.Fatal(err)
	}
	// Still isolated, the old node must not serve a linearizable or lease read.
	rctx, cancel = context.WithTimeout(ctx, time.Second)
	if _, err := l.node.LeaseIndex(rctx); err == nil {
		t.Fatal("isolated old leader served a lease read after a new leader was elected")
	}
	cancel()
	l.net.Isolate(false)
	target := l2.node.Status().CommitIndex
	waitFor(t, "healed node to catch up", 10*time.Second, func() bool { return l.fsm.AppliedIndex() >= target })
	if v, _, _ := l.fsm.Get([]byte("n")); v.Int != 11 {
		t.Fatalf("healed node n=%d", v.Int)
	}
}

// other returns a member other than m.
func (c *cluster) other(m *member) *member {
	for _, o := range c.members {
		if o != m {
			return o
		}
	}
	c.t.Fatal("no other member")
	return nil
}

func TestMembershipAndTransfer(t *testing.T) {
	c := newCluster(t, 3)
	l := c.leader()
	target := c.other(l)
	if err := l.node.TransferLeadership(target.id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "transfer", 10*time.Second, func() bool { return target.node.Ready() })
	// Add a fourth node (empty) as non-voter, then promote, then remove.
	m4 := &member{id: "n4", dir: t.TempDir()}
	m4.start(t)
	t.Cleanup(m4.stop)
	if err := target.node.AddMember("n4", m4.addr, true); err != nil {
		t.Fatal(err)
	}
	if _, err := target.node.Apply(context.Background(), addCmd("x", 3)); err != nil {
		t.Fatal(err)
	}
	idx := target.node.Status().CommitIndex
	waitFor(t, "n4 catch up", 10*time.Second, func() bool { return m4.fsm.AppliedIndex() >= idx })
	ms, _ := target.node.Members()
	if len(ms) != 4 {
		t.Fatalf("members %v", ms)
	}
	if err := target.node.RemoveMember("n4"); err != nil {
		t.Fatal(err)
	}
	ms, _ = target.node.Members()
	if len(ms) != 3 {
		t.Fatalf("members after remove %v", ms)
	}
}

// New returns before raft has read its log; a Shutdown right away must
// wait for the start and stop cleanly, and the state machine stays usable.
func TestShutdownWhileStarting(t *testing.T) {
	c := newCluster(t, 3)
	l := c.leader()
	// These writes only put entries in the log (their sum is never read);
	// on a loaded machine the leader can lose its lease during one, so an
	// unknown outcome or a lost leadership is retried on the leader of the
	// moment.
	for i, tries := 0, 0; i < 20; tries++ {
		_, err := l.node.Apply(context.Background(), addCmd("n", 1))
		switch {
		case err == nil:
			i++
		case tries < 100 && (errors.Is(err, raftnode.ErrUnknownOutcome) || errors.Is(err, raftnode.ErrNotLeader)):
			l = c.leader()
		default:
			t.Fatal(err)
		}
	}
	f := c.members[0]
	if f == l {
		f = c.members[1]
	}
	f.stop()
	f.start(t)
	if err := f.node.Shutdown(); err != nil {
		t.Fatalf("shutdown while starting: %v", err)
	}
	select {
	case <-f.node.Started():
	default:
		t.Fatal("Shutdown returned before raft's start finished")
	}
	_ = f.fsm.Close()
	f.node, f.fsm, f.net = nil, nil, nil
}

// Membership calls that raft would carry out silently and wrongly are
// refused with an error that says why; repeating an add is a no-op.
func TestMembershipRefusesConflicts(t *testing.T) {
	c := newCluster(t, 3)
	l := c.leader()
	f := c.other(l)
	for _, tc := range []struct {
		name  string
		call  func() error
		want  error // nil: succeeds
		after func() bool
	}{
		{"address without a port", func() error { return l.node.AddMember("n9", "garbage", true) }, raftnode.ErrBadAddress, nil},
		{"port out of range", func() error { return l.node.AddMember("n9", "127.0.0.1:70000", true) }, raftnode.ErrBadAddress, nil},
		{"empty id", func() error { return l.node.AddMember("", "127.0.0.1:7777", true) }, raftnode.ErrBadAddress, nil},
		{"a member at another address", func() error { return l.node.AddMember(f.id, "127.0.0.1:1", true) }, raftnode.ErrMemberConflict, nil},
		{"another id at a member's address", func() error { return l.node.AddMember("n9", f.addr, true) }, raftnode.ErrMemberConflict, nil},
		{"a voter as a non-voter", func() error { return l.node.AddMember(f.id, f.addr, false) }, raftnode.ErrMemberConflict, nil},
		{"a member again, as it is", func() error { return l.node.AddMember(f.id, f.addr, true) }, nil, nil},
		{"remove an unknown id", func() error { return l.node.RemoveMember("n9") }, raftnode.ErrNoMember, nil},
		{"transfer to an unknown id", func() error { return l.node.TransferLeadership("n9") }, raftnode.ErrNoMember, nil},
		{"transfer to itself", func() error { return l.node.TransferLeadership(l.id) }, nil, func() bool { return l.node.IsLeader() }},
	} {
		err := tc.call()
		if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if tc.after != nil && !tc.after() {
			t.Errorf("%s: not as expected afterwards", tc.name)
		}
	}
	ms, err := l.node.Members()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 {
		t.Fatalf("configuration changed: %+v", ms)
	}
	for _, m := range ms {
		if !m.Voter || (m.ID == f.id && m.Addr != f.addr) {
			t.Fatalf("configuration changed: %+v", ms)
		}
	}
}

// A removed follower, and a leader that removes itself, each see that they
// were removed (Removed closes); the members that stay do not.
func TestRemovedMembersKnowIt(t *testing.T) {
	old := raftnode.SetRemovalSettleFloor(time.Second)
	t.Cleanup(func() { raftnode.SetRemovalSettleFloor(old) })
	c := newCluster(t, 3)
	l := c.leader()
	f := c.other(l)
	var stay *member
	for _, m := range c.members {
		if m != l && m != f {
			stay = m
		}
	}
	wait := func(m *member, what string) {
		t.Helper()
		select {
		case <-m.node.Removed():
		case <-time.After(15 * time.Second):
			t.Fatalf("%s: %s was removed but does not know it", what, m.id)
		}
	}
	if err := l.node.RemoveMember(f.id); err != nil {
		t.Fatal(err)
	}
	wait(f, "follower removed")
	if err := l.node.RemoveMember(l.id); err != nil {
		t.Fatal(err)
	}
	wait(l, "leader removed itself")
	waitFor(t, "the remaining member to lead", 15*time.Second, func() bool { return stay.node.Ready() })
	select {
	case <-stay.node.Removed():
		t.Fatal("the remaining member thinks it was removed")
	default:
	}
}
