package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	pb "github.com/cairn-db/cairn/api/cairnpb"
	"github.com/cairn-db/cairn/internal/tlsconf"
)

// pollEvery is the polling interval of every wait in this package.
const pollEvery = 100 * time.Millisecond

type statusClient struct {
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
	http  *http.Client
	creds credentials.TransportCredentials
}

func newStatusClient(tlsCfg *tls.Config) *statusClient {
	return &statusClient{conns: map[string]*grpc.ClientConn{}, http: &http.Client{Timeout: time.Second}, creds: tlsconf.Credentials(tlsCfg)}
}

func (s *statusClient) conn(addr string) (*grpc.ClientConn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(s.creds))
	if err != nil {
		return nil, err
	}
	s.conns[addr] = c
	return c, nil
}

func (s *statusClient) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for a, c := range s.conns {
		_ = c.Close()
		delete(s.conns, a)
	}
}

// LocalStatus asks n for its own view (role, term, indexes), bounded by
// timeout.
func (c *Cluster) LocalStatus(ctx context.Context, n *Node, timeout time.Duration) (*pb.NodeStatus, error) {
	conn, err := c.st.conn(n.GRPCAddr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r, err := pb.NewClusterClient(conn).Status(ctx, &pb.StatusRequest{Local: true})
	if err != nil {
		return nil, err
	}
	if len(r.GetNodes()) != 1 {
		return nil, fmt.Errorf("%s: status with %d nodes", n.ID, len(r.GetNodes()))
	}
	return r.GetNodes()[0], nil
}

// Members asks n for the raft configuration (ids and voter flags).
func (c *Cluster) Members(ctx context.Context, n *Node) (map[string]bool, error) {
	conn, err := c.st.conn(n.GRPCAddr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	r, err := pb.NewClusterClient(conn).Status(ctx, &pb.StatusRequest{})
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, ns := range r.GetNodes() {
		out[ns.GetId()] = ns.GetVoter()
	}
	return out, nil
}

// Leader returns the running node that reports itself leader in the
// highest term, asking every running node.
func (c *Cluster) Leader(ctx context.Context) (*Node, uint64, error) {
	sts := make([]*pb.NodeStatus, len(c.nodes))
	var wg sync.WaitGroup
	for i, n := range c.nodes {
		if n.State() != StateRunning {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sts[i], _ = c.LocalStatus(ctx, n, 500*time.Millisecond)
		}()
	}
	wg.Wait()
	var best *Node
	var term uint64
	for i, st := range sts {
		if st.GetRole() == "leader" && st.GetTerm() >= term {
			best, term = c.nodes[i], st.GetTerm()
		}
	}
	if best == nil {
		return nil, 0, errors.New("no leader")
	}
	return best, term, nil
}

// WaitLeader polls until some running node is leader.
func (c *Cluster) WaitLeader(ctx context.Context, timeout time.Duration) (*Node, error) {
	var n *Node
	err := poll(ctx, timeout, func() (bool, string) {
		var err error
		if n, _, err = c.Leader(ctx); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	return n, err
}

// Ready reports n's /readyz answer.
func (c *Cluster) Ready(ctx context.Context, n *Node) (bool, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.HTTPAddr+"/readyz", nil)
	if err != nil {
		return false, err.Error()
	}
	resp, err := c.st.http.Do(req)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return resp.StatusCode == http.StatusOK, strings.TrimSpace(string(b))
}

// WaitReady polls n's /readyz until it answers ok.
func (c *Cluster) WaitReady(ctx context.Context, n *Node) error {
	return poll(ctx, c.cfg.ReadyTimeout, func() (bool, string) {
		if s := n.State(); s != StateRunning {
			return false, fmt.Sprintf("%s is %s", n.ID, s)
		}
		ok, why := c.Ready(ctx, n)
		return ok, n.ID + ": " + why
	})
}

// WaitHealthy polls until every node runs, is a voter, and is ready, and
// all running nodes agree on one leader.
func (c *Cluster) WaitHealthy(ctx context.Context, timeout time.Duration) error {
	return poll(ctx, timeout, func() (bool, string) {
		leaders := map[string]bool{}
		for _, n := range c.nodes {
			if s := n.State(); s != StateRunning {
				return false, fmt.Sprintf("%s is %s", n.ID, s)
			}
			if ok, why := c.Ready(ctx, n); !ok {
				return false, n.ID + " not ready: " + why
			}
			st, err := c.LocalStatus(ctx, n, time.Second)
			if err != nil {
				return false, fmt.Sprintf("%s status: %v", n.ID, err)
			}
			leaders[st.GetLeaderId()] = true
		}
		if len(leaders) != 1 {
			return false, fmt.Sprintf("nodes disagree on the leader: %v", keys(leaders))
		}
		m, err := c.Members(ctx, c.nodes[0])
		if err != nil {
			return false, "members: " + err.Error()
		}
		for _, n := range c.nodes {
			if !m[n.ID] {
				return false, fmt.Sprintf("%s is not a voter (members %v)", n.ID, m)
			}
		}
		return true, ""
	})
}

// WaitConverged polls until every running node has applied its whole log
// and all logs end at the same index and term. Once that holds with no
// client traffic, every entry in any log is committed.
func (c *Cluster) WaitConverged(ctx context.Context, timeout time.Duration) error {
	return poll(ctx, timeout, func() (bool, string) {
		var last, term uint64
		for i, n := range c.nodes {
			if n.State() != StateRunning {
				return false, fmt.Sprintf("%s is %s", n.ID, n.State())
			}
			st, err := c.LocalStatus(ctx, n, time.Second)
			if err != nil {
				return false, fmt.Sprintf("%s: %v", n.ID, err)
			}
			if st.GetAppliedIndex() != st.GetLastIndex() || st.GetCommitIndex() != st.GetLastIndex() {
				return false, fmt.Sprintf("%s: applied %d, commit %d, last %d", n.ID, st.GetAppliedIndex(), st.GetCommitIndex(), st.GetLastIndex())
			}
			if i == 0 {
				last, term = st.GetLastIndex(), st.GetTerm()
			} else if st.GetLastIndex() != last || st.GetTerm() != term {
				return false, fmt.Sprintf("%s at index %d term %d, %s at index %d term %d", c.nodes[0].ID, last, term, n.ID, st.GetLastIndex(), st.GetTerm())
			}
		}
		return true, ""
	})
}

// poll calls cond every pollEvery until it holds, ctx ends, or timeout
// passes; the error carries cond's last reason.
func poll(ctx context.Context, timeout time.Duration, cond func() (bool, string)) error {
	deadline := time.Now().Add(timeout)
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		ok, why := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster: not reached after %v: %s", timeout, why)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: %w (last: %s)", ctx.Err(), why)
		case <-t.C:
		}
	}
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
