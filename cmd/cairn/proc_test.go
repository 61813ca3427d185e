package main

// Test harness for the multi-process tests: the cairn binary built once per
// test run, and clusters of `cairn serve` processes on free ports.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cairn-db/cairn/api"
	pb "github.com/cairn-db/cairn/api/cairnpb"
)

// cairnBin is the binary under test, built by TestMain. CAIRN_TEST_TAGS
// adds build tags: with faultybuild and CAIRN_FAULTS=ack-before-commit the
// failover test must fail (lost acknowledged writes), which shows it can.
var cairnBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cairn-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cairnBin = filepath.Join(dir, "cairn")
	args := []string{"build", "-o", cairnBin}
	if tags := os.Getenv("CAIRN_TEST_TAGS"); tags != "" {
		args = append(args, "-tags", tags)
	}
	if out, err := exec.Command("go", append(args, ".")...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// procNode is one `cairn serve` process slot; its ports and data dir
// survive restarts.
type procNode struct {
	id, grpc, raft, http string
	dir, log             string
	cmd                  *exec.Cmd
	done                 chan struct{}
}

func (n *procNode) running() bool {
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// procCluster is a cluster of `cairn serve` processes.
type procCluster struct {
	t         *testing.T
	nodes     []*procNode
	bootstrap string
	extra     []string // extra serve flags
}

// startProcCluster starts n nodes bootstrapped together on free ports. It
// does not wait for a leader.
func startProcCluster(t *testing.T, n int, extra ...string) *procCluster {
	t.Helper()
	ports, err := freePorts(3 * n)
	if err != nil {
		t.Fatal(err)
	}
	c := &procCluster{t: t, extra: extra}
	dir := t.TempDir()
	var peers []string
	for i := range n {
		nd := &procNode{id: fmt.Sprintf("n%d", i+1), grpc: ports[3*i], raft: ports[3*i+1], http: ports[3*i+2]}
		nd.dir, nd.log = filepath.Join(dir, nd.id), filepath.Join(dir, nd.id+".log")
		c.nodes = append(c.nodes, nd)
		peers = append(peers, nd.id+"="+nd.raft)
	}
	c.bootstrap = strings.Join(peers, ",")
	t.Cleanup(c.stopAll)
	t.Cleanup(func() {
		if t.Failed() {
			for _, nd := range c.nodes {
				t.Logf("--- %s log (last lines):\n%s", nd.id, logTail(nd.log, 40))
			}
		}
	})
	for _, nd := range c.nodes {
		c.start(nd, "--bootstrap", c.bootstrap)
	}
	return c
}

// start runs the node's process on its ports and data dir.
func (c *procCluster) start(n *procNode, args ...string) {
	c.t.Helper()
	lf, err := os.OpenFile(n.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	defer lf.Close()
	all := append([]string{"serve", "--node-id", n.id, "--data-dir", n.dir, "--grpc-addr", n.grpc,
		"--raft-addr", n.raft, "--http-addr", n.http}, args...)
	all = append(all, c.extra...)
	cmd := exec.Command(cairnBin, all...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", n.id, err)
	}
	n.cmd, n.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(n.done) }()
}

// kill SIGKILLs the node and waits until it is gone.
func (c *procCluster) kill(n *procNode) {
	c.t.Helper()
	if err := n.cmd.Process.Kill(); err != nil {
		c.t.Fatalf("kill %s: %v", n.id, err)
	}
	<-n.done
}

// stopAll stops every running node with SIGTERM, killing stragglers.
func (c *procCluster) stopAll() {
	for _, n := range c.nodes {
		if n.running() {
			_ = n.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.After(15 * time.Second)
	for _, n := range c.nodes {
		if n.cmd == nil {
			continue
		}
		select {
		case <-n.done:
		case <-deadline:
			c.t.Errorf("%s did not stop within 15s of SIGTERM; killing it", n.id)
			for _, m := range c.nodes {
				if m.running() {
					_ = m.cmd.Process.Kill()
				}
			}
			<-n.done
		}
	}
}

func (c *procCluster) endpoints() []string {
	var eps []string
	for _, n := range c.nodes {
		eps = append(eps, n.grpc)
	}
	return eps
}

// client returns a Go client for the whole cluster, closed at cleanup.
func (c *procCluster) client() *api.Client {
	c.t.Helper()
	cfg := api.DefaultClientConfig(c.endpoints()...)
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cl, err := api.NewClient(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

func (c *procCluster) byPID(pid int64) *procNode {
	for _, n := range c.nodes {
		if n.running() && int64(n.cmd.Process.Pid) == pid {
			return n
		}
	}
	return nil
}

// waitLeader polls Status until one running node reports itself leader and
// ready, and returns that node.
func (c *procCluster) waitLeader(ctx context.Context, cl *api.Client) *procNode {
	c.t.Helper()
	var last string
	for {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := cl.Status(sctx)
		cancel()
		if err == nil {
			for _, ns := range st.GetNodes() {
				if ns.GetRole() == "leader" && ns.GetReady() {
					if n := c.byPID(ns.GetPid()); n != nil {
						return n
					}
					last = fmt.Sprintf("leader pid %d is not a running node of this cluster", ns.GetPid())
				}
			}
			if last == "" {
				last = fmt.Sprintf("no ready leader in %v", st.GetNodes())
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			c.t.Fatalf("no leader: %s", last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// nodeConn is a gRPC connection to exactly one node (no leader discovery).
func nodeConn(t *testing.T, n *procNode) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(n.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// localStatus asks one node for its own status.
func localStatus(ctx context.Context, cc *grpc.ClientConn) (*pb.NodeStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := pb.NewClusterClient(cc).Status(ctx, &pb.StatusRequest{Local: true})
	if err != nil {
		return nil, err
	}
	if len(st.GetNodes()) != 1 {
		return nil, fmt.Errorf("local status has %d nodes", len(st.GetNodes()))
	}
	return st.GetNodes()[0], nil
}

// runCLI runs the cairn binary and returns stdout, stderr and the exit code.
func runCLI(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, cairnBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("cairn %s: %v", strings.Join(args, " "), err)
	}
	return o.String(), e.String(), code
}
