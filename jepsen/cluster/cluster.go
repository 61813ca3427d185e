// Package cluster runs a cairn cluster as real `cairn serve` processes for
// the Jepsen-style harness: start, stop, kill -9, SIGSTOP/SIGCONT, wipe and
// re-join, and waiting on readiness, leadership and log convergence.
//
// Node i (1-based) listens on its own loopback address 127.0.0.(IPBase+i)
// for raft, gRPC and HTTP, on ports chosen free at start. Data lives in
// Dir/n<i>/data and the process output in Dir/n<i>/node.log (appended
// across restarts). Nodes run in their own process group (a Ctrl-C in the
// terminal reaches only the harness, which then heals and stops them) and
// die with the harness (Pdeathsig).
package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/cairn-db/cairn/internal/testcerts"
	"github.com/cairn-db/cairn/internal/tlsconf"
)

// Config describes the cluster to run.
type Config struct {
	Bin   string // cairn binary
	Dir   string // nodes live in Dir/n<i>
	Nodes int
	// IPBase: node i listens on 127.0.0.(IPBase+i). Default 10.
	IPBase int
	// Env is added to every node's environment (e.g. CAIRN_FAULTS=...).
	Env []string
	// ServeArgs are extra `cairn serve` flags (timeouts, snapshot threshold).
	ServeArgs []string
	// Cgroups, if set, starts every node in its own cgroup v2 group so that
	// packet filters can match its traffic.
	Cgroups *Cgroups
	// Logf receives progress lines (may be nil).
	Logf func(format string, args ...any)
	// OnExit is called when a node exits without being asked to (a crash).
	OnExit func(Exit)
	// ReadyTimeout bounds waiting for a started node to become ready.
	ReadyTimeout time.Duration
	// TLS runs the nodes with TLS between members and client certificates
	// required (a throwaway CA in Dir/tls); ClientTLS is what clients use.
	TLS bool
}

// Exit describes a process exit the harness did not ask for.
type Exit struct {
	Node   string
	PID    int
	Status string
	Time   time.Time
}

// State is a node's process state as the harness knows it.
type State string

const (
	StateNew     State = "new"
	StateRunning State = "running"
	StatePaused  State = "paused"
	StateKilled  State = "killed"  // kill -9 by the harness
	StateStopped State = "stopped" // SIGTERM by the harness
	StateExited  State = "exited"  // exited on its own (crash)
	StateRemoved State = "removed" // removed from the raft configuration and wiped
)

// Node is one cairn process.
type Node struct {
	ID       string
	Index    int // 1-based
	IP       string
	RaftAddr string
	GRPCAddr string
	HTTPAddr string
	Dir      string // Dir/n<i>
	DataDir  string // Dir/n<i>/data
	LogPath  string // Dir/n<i>/node.log

	mu     sync.Mutex
	cmd    *exec.Cmd
	state  State
	pid    int
	expect bool // the harness asked the process to exit
	exited chan struct{}
	// needsJoin: the node was wiped and has not been confirmed a member
	// again; it can only come back through Join.
	needsJoin bool
}

// NeedsJoin reports whether the node was wiped and must re-join.
func (n *Node) NeedsJoin() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.needsJoin
}

// MarkJoined records that the node is a member again.
func (n *Node) MarkJoined() {
	n.mu.Lock()
	n.needsJoin = false
	n.mu.Unlock()
}

// State returns the node's process state.
func (n *Node) State() State {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.state
}

// PID returns the current process id (0 if none).
func (n *Node) PID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pid
}

func (n *Node) String() string { return n.ID }

// Cluster is a set of nodes.
type Cluster struct {
	cfg       Config
	nodes     []*Node
	st        *statusClient
	tlsArgs   []string    // serve flags with Config.TLS
	clientTLS *tls.Config // nil without Config.TLS
}

// New allocates addresses and directories; nothing is started.
func New(cfg Config) (*Cluster, error) {
	if cfg.Nodes < 1 {
		return nil, errors.New("cluster: need at least one node")
	}
	if cfg.Bin == "" {
		return nil, errors.New("cluster: no cairn binary")
	}
	if cfg.IPBase == 0 {
		cfg.IPBase = 10
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 30 * time.Second
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	c := &Cluster{cfg: cfg}
	for i := 1; i <= cfg.Nodes; i++ {
		ip := NodeIP(cfg.IPBase, i)
		if err := LoopbackUsable(ip); err != nil {
			return nil, fmt.Errorf("cluster: node addresses: %w", err)
		}
		ports, err := freePorts(ip, 3)
		if err != nil {
			return nil, fmt.Errorf("cluster: free ports on %s: %w", ip, err)
		}
		id := fmt.Sprintf("n%d", i)
		dir := filepath.Join(cfg.Dir, id)
		n := &Node{ID: id, Index: i, IP: ip,
			RaftAddr: net.JoinHostPort(ip, strconv.Itoa(ports[0])),
			GRPCAddr: net.JoinHostPort(ip, strconv.Itoa(ports[1])),
			HTTPAddr: net.JoinHostPort(ip, strconv.Itoa(ports[2])),
			Dir:      dir, DataDir: filepath.Join(dir, "data"), LogPath: filepath.Join(dir, "node.log"),
			state: StateNew}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	if cfg.TLS {
		if err := c.makeCerts(); err != nil {
			return nil, fmt.Errorf("cluster: TLS certificates: %w", err)
		}
	}
	c.st = newStatusClient(c.clientTLS)
	return c, nil
}

// makeCerts writes a CA, one certificate for every node (valid for every
// node's IP) and a client certificate into Dir/tls.
func (c *Cluster) makeCerts() error {
	dir := filepath.Join(c.cfg.Dir, "tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ca, err := testcerts.NewCA(dir, "jepsen")
	if err != nil {
		return err
	}
	var ips []string
	for _, n := range c.nodes {
		ips = append(ips, n.IP)
	}
	node, err := ca.Issue("node", ips...)
	if err != nil {
		return err
	}
	client, err := ca.Issue("client")
	if err != nil {
		return err
	}
	c.tlsArgs = []string{"--tls-ca", ca.CAFile, "--tls-cert", node.CertFile, "--tls-key", node.KeyFile, "--tls-client-auth"}
	c.clientTLS, err = tlsconf.Client(ca.CAFile, client.CertFile, client.KeyFile)
	return err
}

// ClientTLS is the TLS configuration clients of this cluster use (nil
// without Config.TLS).
func (c *Cluster) ClientTLS() *tls.Config { return c.clientTLS }

// Nodes returns every node, in index order.
func (c *Cluster) Nodes() []*Node { return append([]*Node(nil), c.nodes...) }

// Node returns the node with the given id, or nil.
func (c *Cluster) Node(id string) *Node {
	for _, n := range c.nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// Endpoints returns every node's gRPC address.
func (c *Cluster) Endpoints() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.GRPCAddr
	}
	return out
}

// Bin is the cairn binary the nodes run.
func (c *Cluster) Bin() string { return c.cfg.Bin }

func (c *Cluster) bootstrapList() string {
	s := ""
	for i, n := range c.nodes {
		if i > 0 {
			s += ","
		}
		s += n.ID + "=" + n.RaftAddr
	}
	return s
}

// Start starts every node with the bootstrap list and waits until each is
// ready (a leader is known and it has caught up).
func (c *Cluster) Start(ctx context.Context) error {
	for _, n := range c.nodes {
		if err := c.spawn(n, "--bootstrap", c.bootstrapList()); err != nil {
			return err
		}
	}
	for _, n := range c.nodes {
		if err := c.WaitReady(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

// spawn starts n's process with extra serve flags.
func (c *Cluster) spawn(n *Node, extra ...string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch n.state {
	case StateRunning, StatePaused:
		return fmt.Errorf("cluster: %s is already running (pid %d)", n.ID, n.pid)
	}
	if err := os.MkdirAll(n.DataDir, 0o755); err != nil {
		return err
	}
	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	args := []string{"serve", "--node-id", n.ID, "--data-dir", n.DataDir,
		"--raft-addr", n.RaftAddr, "--grpc-addr", n.GRPCAddr, "--http-addr", n.HTTPAddr}
	args = append(args, extra...)
	args = append(args, c.tlsArgs...)
	args = append(args, c.cfg.ServeArgs...)
	cmd := exec.Command(c.cfg.Bin, args...)
	cmd.Env = append(os.Environ(), c.cfg.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	var cg *os.File
	if c.cfg.Cgroups != nil {
		if cg, err = c.cfg.Cgroups.Open(n.ID); err != nil {
			logf.Close()
			return err
		}
		defer cg.Close()
	}
	if cmd.SysProcAttr, err = procAttr(cg); err != nil {
		logf.Close()
		return err
	}
	fmt.Fprintf(logf, "=== jepsen %s: %s %q\n", time.Now().UTC().Format(time.RFC3339Nano), c.cfg.Bin, args)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("cluster: start %s: %w", n.ID, err)
	}
	n.cmd, n.pid, n.state, n.expect = cmd, cmd.Process.Pid, StateRunning, false
	exited := make(chan struct{})
	n.exited = exited
	c.cfg.Logf("started %s (pid %d) %v", n.ID, n.pid, extra)
	go func() {
		err := cmd.Wait()
		logf.Close()
		n.mu.Lock()
		expected := n.expect
		if n.cmd == cmd && !expected {
			n.state = StateExited
		}
		pid := n.pid
		n.mu.Unlock()
		close(exited)
		if !expected && c.cfg.OnExit != nil {
			status := "exit 0"
			if err != nil {
				status = err.Error()
			}
			c.cfg.OnExit(Exit{Node: n.ID, PID: pid, Status: status, Time: time.Now()})
		}
	}()
	return nil
}

// ExpectExit says whether n's process may exit on its own without that
// being an anomaly: a node removed from the cluster exits by itself.
func (c *Cluster) ExpectExit(n *Node, on bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil && n.state == StateRunning {
		n.expect = on
	}
}

// signal sends sig to n's process after setting its expected state.
func (n *Node) signal(sig os.Signal, next State, expectExit bool) (chan struct{}, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || (n.state != StateRunning && n.state != StatePaused) {
		return nil, fmt.Errorf("cluster: %s is not running (%s)", n.ID, n.state)
	}
	if n.expect && expectExit {
		select {
		case <-n.exited: // it exited on its own, as expected (ExpectExit)
			n.state = next
			return n.exited, nil
		default:
		}
	}
	if expectExit {
		n.expect = true
		if n.state == StatePaused && sig != os.Kill {
			// A stopped process cannot handle SIGTERM until continued.
			_ = n.cmd.Process.Signal(sigCont)
		}
	}
	if err := n.cmd.Process.Signal(sig); err != nil {
		return nil, fmt.Errorf("cluster: signal %v to %s: %w", sig, n.ID, err)
	}
	n.state = next
	return n.exited, nil
}

// Kill sends SIGKILL and waits for the process to be gone.
func (c *Cluster) Kill(n *Node) error {
	done, err := n.signal(os.Kill, StateKilled, true)
	if err != nil {
		return err
	}
	select {
	case <-done:
		c.cfg.Logf("killed %s", n.ID)
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("cluster: %s did not die after SIGKILL", n.ID)
	}
}

// Stop asks the node to shut down (SIGTERM) and kills it if it has not
// exited after grace.
func (c *Cluster) Stop(n *Node, grace time.Duration) error {
	done, err := n.signal(syscall.SIGTERM, StateStopped, true)
	if err != nil {
		return err
	}
	select {
	case <-done:
		c.cfg.Logf("stopped %s", n.ID)
		return nil
	case <-time.After(grace):
	}
	// SIGQUIT makes the Go runtime dump every goroutine into node.log
	// and exit: the dump shows where the shutdown hung.
	c.cfg.Logf("%s did not stop within %v: SIGQUIT (goroutine dump in %s)", n.ID, grace, n.LogPath)
	n.mu.Lock()
	if n.cmd != nil {
		_ = n.cmd.Process.Signal(syscall.SIGQUIT)
	}
	n.mu.Unlock()
	select {
	case <-done:
		return fmt.Errorf("cluster: %s did not shut down within %v after SIGTERM (goroutine dump in %s)", n.ID, grace, n.LogPath)
	case <-time.After(5 * time.Second):
	}
	n.mu.Lock()
	if n.cmd != nil {
		_ = n.cmd.Process.Kill()
	}
	n.mu.Unlock()
	select {
	case <-done:
		return fmt.Errorf("cluster: %s did not shut down within %v after SIGTERM; killed", n.ID, grace)
	case <-time.After(10 * time.Second):
		return fmt.Errorf("cluster: %s did not die after SIGKILL", n.ID)
	}
}

// Pause stops the process (SIGSTOP): it keeps its sockets but answers nothing.
func (c *Cluster) Pause(n *Node) error {
	if n.State() != StateRunning {
		return fmt.Errorf("cluster: %s is not running (%s)", n.ID, n.State())
	}
	_, err := n.signal(sigStop, StatePaused, false)
	if err == nil {
		c.cfg.Logf("paused %s", n.ID)
	}
	return err
}

// Resume continues a paused process (SIGCONT).
func (c *Cluster) Resume(n *Node) error {
	if n.State() != StatePaused {
		return nil
	}
	_, err := n.signal(sigCont, StateRunning, false)
	if err == nil {
		c.cfg.Logf("resumed %s", n.ID)
	}
	return err
}

// Restart starts a node that was killed or stopped, on its existing data.
// It is started without --bootstrap, so a node without raft state could
// never form a cluster of its own; a wiped node must use Join.
func (c *Cluster) Restart(n *Node) error {
	if n.NeedsJoin() {
		return fmt.Errorf("cluster: %s was wiped: it must re-join", n.ID)
	}
	return c.spawn(n)
}

// Wipe deletes a stopped node's data and marks it removed.
func (c *Cluster) Wipe(n *Node) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.state == StateRunning || n.state == StatePaused {
		return fmt.Errorf("cluster: cannot wipe running node %s", n.ID)
	}
	if err := os.RemoveAll(n.DataDir); err != nil {
		return err
	}
	n.state, n.needsJoin = StateRemoved, true
	return nil
}

// Join starts a wiped node empty, asking the member at via (a gRPC
// address) to add it back as a voter.
func (c *Cluster) Join(n *Node, via string) error {
	return c.spawn(n, "--join", via)
}

// Live reports whether n is running or paused (it has a process).
func (n *Node) Live() bool {
	s := n.State()
	return s == StateRunning || s == StatePaused
}

// StopAll continues paused nodes and stops every live node.
func (c *Cluster) StopAll(grace time.Duration) error {
	var wg sync.WaitGroup
	errs := make([]error, len(c.nodes))
	for i, n := range c.nodes {
		if !n.Live() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.Stop(n, grace)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// KillAll kills every live node at once (used on abort).
func (c *Cluster) KillAll() {
	for _, n := range c.nodes {
		if n.Live() {
			_ = c.Kill(n)
		}
	}
}

// Close releases client connections.
func (c *Cluster) Close() { c.st.close() }
