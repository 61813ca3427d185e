package main

// The process harness shared by the chaos and fencing tests: building the
// binaries, a three-node cluster of `cairn serve` processes on free ports,
// operator child processes, and condition polling. Every process it starts
// it ends itself, by its own handle.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	pb "github.com/cairn-db/cairn/api/cairnpb"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if builds.dir != "" {
		_ = os.RemoveAll(builds.dir)
	}
	os.Exit(code)
}

// builds holds the binaries, built once per test binary unless given.
var builds struct {
	dir                  string
	cairnOnce, clickOnce sync.Once
	cairn, clickcount    string
	cairnErr, clickErr   error
	dirOnce              sync.Once
	dirErr               error
}

func buildDir() (string, error) {
	builds.dirOnce.Do(func() { builds.dir, builds.dirErr = os.MkdirTemp("", "clickcount-bin-") })
	return builds.dir, builds.dirErr
}

func goBuild(out, pkg string, tags string) error {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("the tests build binaries and need the go tool on PATH: %w", err)
	}
	args := []string{"build", "-o", out}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	cmd := exec.Command(goTool, append(args, pkg)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// cairnBinary returns the cairn binary: -chaos.cairn, else built from ./cmd/cairn.
func cairnBinary(t *testing.T) string {
	t.Helper()
	builds.cairnOnce.Do(func() {
		if *flagCairnBin != "" {
			builds.cairn = *flagCairnBin
			return
		}
		dir, err := buildDir()
		if err != nil {
			builds.cairnErr = err
			return
		}
		builds.cairn = filepath.Join(dir, "cairn")
		builds.cairnErr = goBuild(builds.cairn, "github.com/cairn-db/cairn/cmd/cairn", *flagCairnTags)
	})
	if builds.cairnErr != nil {
		t.Fatalf("cairn binary: %v", builds.cairnErr)
	}
	return builds.cairn
}

// clickcountBinary returns the operator binary: -chaos.clickcount, else built from this package.
func clickcountBinary(t *testing.T) string {
	t.Helper()
	builds.clickOnce.Do(func() {
		if *flagClickBin != "" {
			builds.clickcount = *flagClickBin
			return
		}
		dir, err := buildDir()
		if err != nil {
			builds.clickErr = err
			return
		}
		builds.clickcount = filepath.Join(dir, "clickcount")
		builds.clickErr = goBuild(builds.clickcount, "github.com/cairn-db/cairn/examples/clickcount", "")
	})
	if builds.clickErr != nil {
		t.Fatalf("clickcount binary: %v", builds.clickErr)
	}
	return builds.clickcount
}

// proc is a child process started by a test.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited and was reaped
	err  error         // Wait's result, set before done closes
}

// startProc starts bin with args; stdout and stderr go to files in dir
// named after name (appended to, so restarts keep one log).
func startProc(dir, name, bin string, args, env []string) (*proc, error) {
	open := func(suffix string) (*os.File, error) {
		return os.OpenFile(filepath.Join(dir, name+suffix), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	}
	stdout, err := open(".out")
	if err != nil {
		return nil, err
	}
	stderr, err := open(".err")
	if err != nil {
		_ = stdout.Close()
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		_, _ = stdout.Close(), stderr.Close()
		return nil, err
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_, _ = stdout.Close(), stderr.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL to this process (by its handle) and reaps it.
func (p *proc) kill() {
	if !p.exited() {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}

// wait waits for the process to exit by itself and returns its exit code.
func (p *proc) wait(ctx context.Context) (int, error) {
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), nil
	case <-ctx.Done():
		return -1, fmt.Errorf("%s (pid %d) still running: %w", p.name, p.pid(), ctx.Err())
	}
}

// freeAddrs returns n distinct free 127.0.0.1 ports: listen on :0, close,
// reuse. All are held open together so they differ.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		defer l.Close()
		addrs = append(addrs, l.Addr().String())
	}
	return addrs
}

// procNode is one cluster member; its data dir and addresses survive restarts.
type procNode struct {
	id, dataDir, raftAddr, grpcAddr string
	proc                            *proc
	starts                          int
}

// procCluster is a cluster of `cairn serve` processes.
type procCluster struct {
	t      *testing.T
	bin    string
	dir    string
	args   []string // extra serve flags
	env    []string
	nodes  []*procNode
	client *api.Client
}

// startProcCluster starts n `cairn serve` processes bootstrapped together and
// waits until they all serve with one leader.
func startProcCluster(ctx context.Context, t *testing.T, bin, dir string, n int, args, env []string) *procCluster {
	t.Helper()
	addrs := freeAddrs(t, 2*n)
	c := &procCluster{t: t, bin: bin, dir: dir, args: args, env: env}
	var boot, endpoints []string
	for i := range n {
		nd := &procNode{id: fmt.Sprintf("n%d", i+1), dataDir: filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
			raftAddr: addrs[2*i], grpcAddr: addrs[2*i+1]}
		c.nodes = append(c.nodes, nd)
		boot = append(boot, nd.id+"="+nd.raftAddr)
		endpoints = append(endpoints, nd.grpcAddr)
	}
	c.args = append(c.args, "--bootstrap", strings.Join(boot, ","))
	cfg := api.DefaultClientConfig(endpoints...)
	cfg.RetryBudget = 10 * time.Second
	var err error
	if c.client, err = api.NewClient(cfg); err != nil {
		t.Fatalf("client: %v", err)
	}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			if nd.proc != nil {
				nd.proc.kill()
			}
		}
		_ = c.client.Close()
	})
	for _, nd := range c.nodes {
		c.start(nd)
	}
	if err := c.waitHealthy(ctx); err != nil {
		c.dumpLogs()
		t.Fatalf("cluster did not come up: %v", err)
	}
	return c
}

func (c *procCluster) endpoints() string {
	var out []string
	for _, nd := range c.nodes {
		out = append(out, nd.grpcAddr)
	}
	return strings.Join(out, ",")
}

// start (re)starts nd on its data dir and addresses.
func (c *procCluster) start(nd *procNode) {
	c.t.Helper()
	args := append([]string{"serve", "--node-id", nd.id, "--data-dir", nd.dataDir, "--raft-addr", nd.raftAddr,
		"--grpc-addr", nd.grpcAddr, "--http-addr", "", "--log-level", "warn"}, c.args...)
	p, err := startProc(c.dir, nd.id, c.bin, args, c.env)
	if err != nil {
		c.t.Fatalf("start %s: %v", nd.id, err)
	}
	nd.proc = p
	nd.starts++
}

func (c *procCluster) node(id string) *procNode {
	for _, nd := range c.nodes {
		if nd.id == id {
			return nd
		}
	}
	return nil
}

// status asks the cluster for every member's status, bounded by a short timeout.
func (c *procCluster) status(ctx context.Context) (*pb.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return c.client.Status(ctx)
}

// waitHealthy waits until every member runs and answers, there is exactly
// one leader, and every member applied what the leader had committed when
// all were first seen up: the cluster can lose any one node again.
func (c *procCluster) waitHealthy(ctx context.Context) error {
	var target uint64
	var last string
	err := poll(ctx, 20*time.Millisecond, func() (bool, error) {
		for _, nd := range c.nodes {
			if nd.proc.exited() {
				return false, fmt.Errorf("%s exited: %v", nd.id, nd.proc.err)
			}
		}
		st, err := c.status(ctx)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		leaders, up := 0, 0
		var commit uint64
		for _, ns := range st.GetNodes() {
			switch ns.GetRole() {
			case "leader":
				leaders++
				up++
				commit = ns.GetCommitIndex()
			case "follower":
				up++
			}
		}
		if up != len(c.nodes) || leaders != 1 {
			last = fmt.Sprintf("%d of %d members up, %d leaders: %v", up, len(c.nodes), leaders, st.GetNodes())
			return false, nil
		}
		if target == 0 {
			target = commit
		}
		for _, ns := range st.GetNodes() {
			if ns.GetAppliedIndex() < target {
				last = fmt.Sprintf("%s applied %d < %d", ns.GetId(), ns.GetAppliedIndex(), target)
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("%w (last: %s)", err, last)
	}
	return nil
}

// killLeader finds the leader through the client's Status (role and pid),
// SIGKILLs that process and restarts it on its data dir. It returns the
// node and the pid it killed.
func (c *procCluster) killLeader(ctx context.Context) (*procNode, int, error) {
	var leader *pb.NodeStatus
	err := poll(ctx, 20*time.Millisecond, func() (bool, error) {
		st, err := c.status(ctx)
		if err != nil {
			return false, nil
		}
		for _, ns := range st.GetNodes() {
			if ns.GetRole() == "leader" {
				leader = ns
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("no leader to kill: %w", err)
	}
	nd := c.node(leader.GetId())
	if nd == nil || nd.proc.pid() != int(leader.GetPid()) {
		return nil, 0, fmt.Errorf("status names leader %s pid %d, which is not a process this test started", leader.GetId(), leader.GetPid())
	}
	pid := nd.proc.pid()
	nd.proc.kill()
	c.start(nd)
	return nd, pid, nil
}

// dumpLogs logs the tail of every node's log.
func (c *procCluster) dumpLogs() {
	for _, nd := range c.nodes {
		c.t.Logf("--- %s log (tail) ---\n%s", nd.id, tail(filepath.Join(c.dir, nd.id+".err"), 30))
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// poll calls cond every interval until it returns true or an error, or ctx ends.
func poll(ctx context.Context, interval time.Duration, cond func() (bool, error)) error {
	tk := time.NewTicker(interval)
	defer tk.Stop()
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tk.C:
		}
	}
}

// committedOffset reads the producer's committed offset for source (0
// before it first registered).
func committedOffset(ctx context.Context, c *api.Client, producer, source string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := c.GetOffsets(ctx, producer)
	if errors.Is(err, api.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	for _, o := range resp.GetOffsets() {
		if o.GetSource() == source {
			return o.GetOffset(), nil
		}
	}
	return 0, nil
}

// operatorSummary parses the JSON summary the operator prints as its last
// stdout line.
func operatorSummary(dir, name string) (*summary, error) {
	last, err := lastLine(filepath.Join(dir, name+".out"))
	if err != nil {
		return nil, err
	}
	var s summary
	if err := json.Unmarshal([]byte(last), &s); err != nil {
		return nil, fmt.Errorf("%s: last stdout line is not a summary: %q: %w", name, last, err)
	}
	return &s, nil
}

func lastLine(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var last string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			last = l
		}
	}
	return last, sc.Err()
}

// exactCounts checks every counter under prefix against the input, with
// its own reading of both (independent of the verify mode under test):
// it returns the clicks lost and duplicated.
func exactCounts(ctx context.Context, t *testing.T, c *api.Client, input, prefix string) (lost, dup int64, examples []string) {
	t.Helper()
	f, err := os.Open(input)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k := sc.Text(); k != "" {
			want[prefix+k]++
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	var start []byte
	for {
		kvs, next, err := c.Scan(ctx, api.ScanOptions{Prefix: []byte(prefix), Start: start, Limit: 1000})
		if err != nil {
			t.Fatalf("scan: %v", err)
		}
		for _, kv := range kvs {
			if !kv.Value.IsInt {
				t.Fatalf("%s holds bytes %q, not a counter", kv.Key, kv.Value.Bytes)
			}
			got[string(kv.Key)] = kv.Value.Int
		}
		if next == nil {
			break
		}
		start = next
	}
	note := func(k string) {
		if len(examples) < 10 {
			examples = append(examples, fmt.Sprintf("%s want %d got %d", k, want[k], got[k]))
		}
	}
	for k, w := range want {
		switch g := got[k]; {
		case g < w:
			lost += w - g
			note(k)
		case g > w:
			dup += g - w
			note(k)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok && g != 0 {
			if g > 0 {
				dup += g
			} else {
				lost -= g
			}
			note(k)
		}
	}
	return lost, dup, examples
}
