// Package testcluster starts whole cairn nodes (state machine, raft, gRPC)
// in one process on 127.0.0.1 port 0, with a per-node isolation switch on
// the raft transport. For tests only.
package testcluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/internal/faultnet"
	"github.com/cairn-db/cairn/internal/node"
	"github.com/cairn-db/cairn/raftnode"
)

// TB is the part of testing.TB the cluster uses.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}

// Member is one node slot; its data dir and raft address survive restarts.
type Member struct {
	ID       string
	Dir      string
	RaftAddr string
	Net      *faultnet.Layer
	Node     *node.Node
}

// Cluster is a set of in-process nodes.
type Cluster struct {
	t       TB
	mu      sync.Mutex
	Members []*Member
	peers   []raftnode.Peer
	Tune    func(*node.Config)
	// ClientTLS, if set, is what Client connects with (nodes run with TLS).
	ClientTLS *tls.Config
}

// FastRaft shortens raft timeouts for tests.
func FastRaft(c *node.Config) {
	c.Raft.HeartbeatTimeout, c.Raft.ElectionTimeout, c.Raft.LeaderLeaseTimeout = 300*time.Millisecond, 300*time.Millisecond, 150*time.Millisecond
}

// Start starts n nodes bootstrapped together and waits for a leader.
func Start(t TB, n int, tune func(*node.Config)) *Cluster {
	t.Helper()
	c := Prepare(t, n, tune)
	c.StartAll()
	return c
}

// Prepare lays out n members (ids, data dirs, raft listeners on port 0)
// without starting them, so that a test can prepare their data dirs first
// (for example node.Restore of an exported checkpoint); StartAll starts them.
func Prepare(t TB, n int, tune func(*node.Config)) *Cluster {
	t.Helper()
	c := &Cluster{t: t, Tune: tune}
	for i := 1; i <= n; i++ {
		sl, err := raftnode.NewTCPStreamLayer("127.0.0.1:0", "")
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		m := &Member{ID: fmt.Sprintf("n%d", i), Dir: filepath.Join(t.TempDir(), fmt.Sprintf("n%d", i)), RaftAddr: sl.Addr().String(), Net: faultnet.Wrap(sl)}
		c.Members = append(c.Members, m)
		c.peers = append(c.peers, raftnode.Peer{ID: m.ID, Addr: m.RaftAddr})
	}
	t.Cleanup(c.Stop)
	return c
}

// Peers lists every member's id and raft address (the bootstrap list).
func (c *Cluster) Peers() []raftnode.Peer { return append([]raftnode.Peer(nil), c.peers...) }

// StartAll starts every member and waits for a leader.
func (c *Cluster) StartAll() {
	c.t.Helper()
	for _, m := range c.Members {
		c.StartMember(m)
	}
	c.Leader()
}

// StartMember (re)starts m on its data dir and raft address.
func (c *Cluster) StartMember(m *Member) {
	c.t.Helper()
	if m.Net == nil {
		sl, err := raftnode.NewTCPStreamLayer(m.RaftAddr, "")
		if err != nil {
			c.t.Fatalf("relisten %s: %v", m.RaftAddr, err)
		}
		m.Net = faultnet.Wrap(sl)
	}
	cfg := node.DefaultConfig()
	cfg.NodeID, cfg.DataDir, cfg.GRPCAddr, cfg.RaftStream, cfg.Bootstrap = m.ID, m.Dir, "127.0.0.1:0", m.Net, c.peers
	FastRaft(&cfg)
	if s := os.Getenv("CAIRN_TEST_LOG_STORE"); s != "" {
		cfg.Raft.LogStore = s // run the suites on another log store
	}
	if c.Tune != nil {
		c.Tune(&cfg)
	}
	n, err := node.Start(cfg)
	if err != nil {
		c.t.Fatalf("start %s: %v", m.ID, err)
	}
	m.Node = n
}

// StopMember stops m (a clean stop; its data stays).
func (c *Cluster) StopMember(m *Member) {
	if m.Node != nil {
		m.Node.Stop()
		m.Node, m.Net = nil, nil
	}
}

// Stop stops every node.
func (c *Cluster) Stop() {
	for _, m := range c.Members {
		c.StopMember(m)
	}
}

// Endpoints lists the gRPC addresses of running nodes.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, m := range c.Members {
		if m.Node != nil {
			out = append(out, m.Node.GRPCAddr())
		}
	}
	return out
}

// Client returns a client over the running nodes.
func (c *Cluster) Client() *api.Client {
	c.t.Helper()
	cfg := api.DefaultClientConfig(c.Endpoints()...)
	cfg.TLS = c.ClientTLS
	cl, err := api.NewClient(cfg)
	if err != nil {
		c.t.Fatalf("client: %v", err)
	}
	c.t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// Leader waits for a ready leader among running, non-isolated nodes.
func (c *Cluster) Leader() *Member {
	c.t.Helper()
	var l *Member
	WaitFor(c.t, "a ready leader", 15*time.Second, func() bool {
		for _, m := range c.Members {
			if m.Node != nil && !m.Net.Isolated() && m.Node.Raft.Ready() {
				l = m
				return true
			}
		}
		return false
	})
	return l
}

// MakeLeader moves leadership to m (asking through cl until m leads and
// is ready).
func (c *Cluster) MakeLeader(cl *api.Client, m *Member) {
	c.t.Helper()
	WaitFor(c.t, m.ID+" leading", 20*time.Second, func() bool {
		if m.Node != nil && m.Node.Raft.IsLeader() && m.Node.Raft.Ready() {
			return true
		}
		_, _ = cl.TransferLeader(context.Background(), m.ID)
		return false
	})
}

// Followers returns running members other than l.
func (c *Cluster) Followers(l *Member) []*Member {
	var out []*Member
	for _, m := range c.Members {
		if m != l && m.Node != nil {
			out = append(out, m)
		}
	}
	return out
}

// WaitConverged waits until every running node applied the leader's commit index.
func (c *Cluster) WaitConverged() {
	c.t.Helper()
	l := c.Leader()
	target := l.Node.Raft.Status().CommitIndex
	for _, m := range c.Members {
		if m.Node == nil || m.Net.Isolated() {
			continue
		}
		WaitFor(c.t, m.ID+" to apply index "+fmt.Sprint(target), 15*time.Second, func() bool {
			return m.Node.FSM.AppliedIndex() >= target
		})
	}
}

// WaitFor polls cond every 10ms until it holds or d passes.
func WaitFor(t TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	tk := time.NewTicker(10 * time.Millisecond)
	defer tk.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %v waiting for %s", d, what)
			return
		case <-tk.C:
		}
	}
}

// Idempotent runs write until it succeeds, repeating it while its outcome
// is unknown (api.ErrUnknownOutcome: a leader lost its lease mid-commit,
// which a disk stall on a loaded machine can cause at any time). Use it
// only for writes that are safe to apply twice — a Put of a fixed value,
// a Batch of such Puts — never for Add or CAS: a repeated unknown write
// may have applied already. Any other error fails the test.
func Idempotent(t TB, what string, write func() error) {
	t.Helper()
	const tries = 50
	var err error
	for range tries {
		if err = write(); !errors.Is(err, api.ErrUnknownOutcome) {
			break
		}
	}
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}
