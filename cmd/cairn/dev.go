package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-db/cairn/api"
)

func init() { extraCommands = append(extraCommands, newDevCmd) }

// devConfig is what `cairn dev` runs.
type devConfig struct {
	Nodes       int
	Dir         string
	Bin         string
	PortBase    int
	ServeFlags  []string
	StopTimeout time.Duration
}

// devLayout is recorded in DIR/cluster.json, so that a later run on the same
// directory starts the same cluster (or refuses clearly).
type devLayout struct {
	Nodes    int `json:"nodes"`
	PortBase int `json:"port_base"`
}

func newDevCmd() *cobra.Command {
	cfg := devConfig{Nodes: 3, Dir: ".cairn-dev", PortBase: 7100, StopTimeout: 30 * time.Second}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a local development cluster of \"cairn serve\" processes",
		Long: `Run a local cluster of separate "cairn serve" processes on 127.0.0.1. Node i
(n1, n2, ...) serves gRPC on port 7100+i, raft on 7200+i and HTTP (/metrics,
/readyz, /debug/pprof) on 7300+i; its data lives in DIR/n<i> and its log in
DIR/n<i>.log. Waits until every node is ready, then runs until Ctrl-C or
SIGTERM, which it forwards to the nodes, waiting for them to stop cleanly (a
second Ctrl-C kills them). Running it again on the same --dir restarts the
same cluster with its data.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Bin == "" {
				exe, err := os.Executable()
				if err != nil {
					return fmt.Errorf("dev: finding the cairn binary: %w (use --bin)", err)
				}
				cfg.Bin = exe
			}
			return runDev(cmd.Context(), cfg, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "number of nodes (1-99)")
	f.StringVar(&cfg.Dir, "dir", cfg.Dir, "directory for the nodes' data and logs")
	f.StringVar(&cfg.Bin, "bin", "", "cairn binary to run the nodes with (default: this one)")
	f.StringArrayVar(&cfg.ServeFlags, "serve-flag", nil, "extra flag for every \"cairn serve\", repeatable (e.g. --serve-flag=--unsafe-no-fsync)")
	f.DurationVar(&cfg.StopTimeout, "stop-timeout", cfg.StopTimeout, "how long to wait for the nodes to stop before killing them")
	f.IntVar(&cfg.PortBase, "port-base", cfg.PortBase, "gRPC ports are BASE+i, raft BASE+100+i, HTTP BASE+200+i")
	_ = f.MarkHidden("port-base")
	return cmd
}

// devNode is one child process.
type devNode struct {
	id, grpc, raft, http string
	dir, log             string
	cmd                  *exec.Cmd
	done                 chan struct{} // closed when the process has exited
	err                  error         // its exit status, valid after done
}

func (n *devNode) exited() bool {
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

func runDev(ctx context.Context, cfg devConfig, out io.Writer) error {
	if cfg.Nodes < 1 || cfg.Nodes > 99 {
		return fmt.Errorf("dev: --nodes must be 1-99, got %d", cfg.Nodes)
	}
	if cfg.PortBase < 1 || cfg.PortBase+299 > 65535 {
		return fmt.Errorf("dev: --port-base %d out of range", cfg.PortBase)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	if err := checkDevLayout(cfg); err != nil {
		return err
	}
	nodes := make([]*devNode, cfg.Nodes)
	var peers, eps []string
	for i := range nodes {
		n := &devNode{id: fmt.Sprintf("n%d", i+1), done: make(chan struct{})}
		n.grpc = "127.0.0.1:" + strconv.Itoa(cfg.PortBase+i+1)
		n.raft = "127.0.0.1:" + strconv.Itoa(cfg.PortBase+100+i+1)
		n.http = "127.0.0.1:" + strconv.Itoa(cfg.PortBase+200+i+1)
		n.dir = filepath.Join(cfg.Dir, n.id)
		n.log = filepath.Join(cfg.Dir, n.id+".log")
		nodes[i] = n
		peers = append(peers, n.id+"="+n.raft)
		eps = append(eps, n.grpc)
	}
	if err := checkDevPorts(nodes); err != nil {
		return err
	}
	fresh := true
	if _, err := os.Stat(nodes[0].dir); err == nil {
		fresh = false
	}
	for _, n := range nodes {
		if err := startDevNode(n, cfg, strings.Join(peers, ",")); err != nil {
			stopDevNodes(nodes, cfg.StopTimeout, out)
			return err
		}
	}
	if fresh {
		fmt.Fprintf(out, "cairn dev: started a new %d-node cluster in %s\n", cfg.Nodes, cfg.Dir)
	} else {
		fmt.Fprintf(out, "cairn dev: restarted the %d-node cluster in %s with its data\n", cfg.Nodes, cfg.Dir)
	}
	for _, n := range nodes {
		fmt.Fprintf(out, "  %-3s grpc %s  raft %s  http http://%s  pid %d  log %s\n", n.id, n.grpc, n.raft, n.http, n.cmd.Process.Pid, n.log)
	}
	fmt.Fprintln(out, "waiting for a leader...")
	leader, err := waitDevReady(ctx, nodes, eps, out)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			err = nil // interrupted before ready: just stop
		}
		return errors.Join(err, stopDevNodes(nodes, cfg.StopTimeout, out))
	}
	fmt.Fprintf(out, "ready: leader %s\n", leader)
	hint := "cairn"
	if strings.Join(eps, ",") != strings.Join(api.DefaultEndpoints, ",") {
		hint = "cairn --endpoints " + strings.Join(eps, ",")
	}
	fmt.Fprintf(out, "try in another terminal:  %s put hello world && %s get hello && %s cluster status\n", hint, hint, hint)
	fmt.Fprintln(out, "Ctrl-C stops the cluster.")

	// Run until interrupted; report nodes that die on their own.
	exits := make(chan *devNode, len(nodes))
	for _, n := range nodes {
		go func() { <-n.done; exits <- n }()
	}
	running := len(nodes)
	for running > 0 {
		select {
		case <-ctx.Done():
			return stopDevNodes(nodes, cfg.StopTimeout, out)
		case n := <-exits:
			running--
			fmt.Fprintf(out, "cairn dev: %s exited on its own: %v (see %s)\n%s", n.id, exitDesc(n.err), n.log, logTail(n.log, 5))
		}
	}
	return errors.New("dev: every node has exited")
}

// checkDevLayout records the layout of a new directory, or checks that a
// reused one was made with the same node count and ports: raft remembers
// its peers' addresses, so a different layout cannot start.
func checkDevLayout(cfg devConfig) error {
	path := filepath.Join(cfg.Dir, "cluster.json")
	want := devLayout{Nodes: cfg.Nodes, PortBase: cfg.PortBase}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		b, _ = json.Marshal(want)
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("dev: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("dev: %w", err)
	}
	var got devLayout
	if err := json.Unmarshal(b, &got); err != nil {
		return fmt.Errorf("dev: %s: %w", path, err)
	}
	if got != want {
		return fmt.Errorf("dev: %s holds a cluster of %d nodes on port base %d; run with --nodes %d (and the same ports) or use another --dir",
			cfg.Dir, got.Nodes, got.PortBase, got.Nodes)
	}
	return nil
}

// checkDevPorts fails clearly when a port the cluster needs is taken.
func checkDevPorts(nodes []*devNode) error {
	var errs []error
	for _, n := range nodes {
		for _, p := range []struct{ what, addr string }{{"gRPC", n.grpc}, {"raft", n.raft}, {"HTTP", n.http}} {
			ln, err := net.Listen("tcp", p.addr)
			if err != nil {
				errs = append(errs, fmt.Errorf("dev: %s %s port %s is already in use (another cairn dev or serve running?): %w", n.id, p.what, p.addr, err))
				continue
			}
			_ = ln.Close()
		}
	}
	return errors.Join(errs...)
}

func startDevNode(n *devNode, cfg devConfig, bootstrap string) error {
	lf, err := os.OpenFile(n.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	defer lf.Close() // the child holds its own descriptor
	args := []string{"serve", "--node-id", n.id, "--data-dir", n.dir, "--grpc-addr", n.grpc,
		"--raft-addr", n.raft, "--http-addr", n.http, "--bootstrap", bootstrap}
	args = append(args, cfg.ServeFlags...)
	fmt.Fprintf(lf, "=== cairn dev %s: %s %s\n", time.Now().Format(time.RFC3339), cfg.Bin, strings.Join(args, " "))
	c := exec.Command(cfg.Bin, args...)
	c.Stdout, c.Stderr = lf, lf
	detach(c)
	if err := c.Start(); err != nil {
		return fmt.Errorf("dev: starting %s: %w", n.id, err)
	}
	n.cmd = c
	go func() { n.err = c.Wait(); close(n.done) }()
	return nil
}

// waitDevReady polls every node's /readyz until all are ready, and returns
// the leader's id. It fails when a node exits first.
func waitDevReady(ctx context.Context, nodes []*devNode, eps []string, out io.Writer) (string, error) {
	hc := &http.Client{Timeout: time.Second}
	ready := func(n *devNode) (bool, string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.http+"/readyz", nil)
		resp, err := hc.Do(req)
		if err != nil {
			return false, "not answering yet"
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		return resp.StatusCode == http.StatusOK, strings.TrimSpace(string(b))
	}
	start := time.Now()
	nextNote := start.Add(10 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, n := range nodes {
			if n.exited() {
				return "", fmt.Errorf("dev: %s exited while starting: %v (see %s)\n%s", n.id, exitDesc(n.err), n.log, logTail(n.log, 10))
			}
		}
		all, notes := true, []string(nil)
		for _, n := range nodes {
			if ok, why := ready(n); !ok {
				all = false
				notes = append(notes, n.id+": "+why)
			}
		}
		if all {
			return devLeader(ctx, eps), nil
		}
		if time.Now().After(nextNote) {
			fmt.Fprintf(out, "still waiting after %s: %s\n", time.Since(start).Round(time.Second), strings.Join(notes, "; "))
			nextNote = time.Now().Add(10 * time.Second)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-tick.C:
		}
	}
}

func devLeader(ctx context.Context, eps []string) string {
	c, err := api.NewClient(api.DefaultClientConfig(eps...))
	if err != nil {
		return "?"
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil {
		return "?"
	}
	for _, n := range st.GetNodes() {
		if n.GetRole() == "leader" {
			return fmt.Sprintf("%s (%s)", n.GetId(), n.GetGrpcAddress())
		}
	}
	return st.GetLeaderId()
}

// stopDevNodes sends SIGTERM to every running node and waits for all to
// exit, killing them after timeout or on a second signal. It fails when a
// node did not stop cleanly.
func stopDevNodes(nodes []*devNode, timeout time.Duration, out io.Writer) error {
	again := make(chan os.Signal, 1)
	signal.Notify(again, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(again)
	fmt.Fprintln(out, "stopping the nodes...")
	for _, n := range nodes {
		if n.cmd != nil && !n.exited() {
			_ = n.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	killed := map[*devNode]bool{}
	kill := func() {
		for _, n := range nodes {
			if n.cmd != nil && !n.exited() {
				killed[n] = true
				_ = n.cmd.Process.Kill()
			}
		}
	}
	for _, n := range nodes {
		if n.cmd == nil {
			continue
		}
		select {
		case <-n.done:
		case <-deadline.C:
			fmt.Fprintf(out, "nodes still running after %s: killing them\n", timeout)
			kill()
			<-n.done
		case <-again:
			fmt.Fprintln(out, "second signal: killing the nodes")
			kill()
			<-n.done
		}
	}
	var errs []error
	for _, n := range nodes {
		if n.cmd == nil {
			continue
		}
		if killed[n] || n.err != nil {
			errs = append(errs, fmt.Errorf("dev: %s did not stop cleanly: %v (see %s)", n.id, exitDesc(n.err), n.log))
		}
	}
	if len(errs) == 0 {
		fmt.Fprintln(out, "all nodes stopped")
	}
	return errors.Join(errs...)
}

func exitDesc(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// logTail returns the last n lines of a log file, indented.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var sb strings.Builder
	for _, l := range lines {
		sb.WriteString("    | ")
		sb.Write(l)
		sb.WriteByte('\n')
	}
	return sb.String()
}
