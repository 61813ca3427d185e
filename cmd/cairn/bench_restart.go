package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cairn-db/cairn/api"
	pb "github.com/cairn-db/cairn/api/cairnpb"
)

// restartConfig is one restart-to-ready measurement.
type restartConfig struct {
	Size       int64 // bytes of values to load
	ValueSize  int
	BatchBytes int
	Loaders    int
	Restarts   int
	Churn      int    // single-key Puts after the load, then a checkpoint on every node
	Nodes      int    // 1: a single-node cluster; 3: restart a follower of three
	Kill       bool   // SIGKILL instead of SIGTERM before each restart
	Dir        string // kept afterwards; "" uses a temporary one
	Bin        string
	ServeFlags []string
}

// restartResult is what `bench restart` measured.
type restartResult struct {
	SizeBytes     int64     `json:"size_bytes"`
	Nodes         int       `json:"nodes"`
	ValueSize     int       `json:"value_size"`
	Keys          int64     `json:"keys"`
	LoadSec       float64   `json:"load_s"`
	LoadMBps      float64   `json:"load_mb_per_s"`
	ChurnPuts     int       `json:"churn_puts"`
	DataDirBytes  int64     `json:"data_dir_bytes"`       // the restarted node's, before its first restart
	DataDirAfter  int64     `json:"data_dir_after_bytes"` // and after its last
	Stop          string    `json:"stop"`                 // sigterm or sigkill
	StaleReadSec  []float64 `json:"stale_read_s"`         // process start to a stale read returning the latest value
	ReadyzSec     []float64 `json:"readyz_s"`             // process start to /readyz OK (leader known, caught up)
	LinearReadSec []float64 `json:"linear_read_s"`        // process start to a linearizable read of the latest value
	StopSec       []float64 `json:"stop_s"`               // signal to exit, per stop
}

func newBenchRestartCmd() *cobra.Command {
	cfg := restartConfig{ValueSize: 1024, BatchBytes: 2 << 20, Loaders: 4, Restarts: 3, Nodes: 1}
	var size, output string
	cmd := &cobra.Command{
		Use:   "restart",
		Short: "Load one node with --size of state, restart it, and time process start to a stale read of the latest value",
		Long: `Start a single-node cluster (its own "cairn serve" process on free ports),
load --size bytes of values (--value-size each, in batches of about
--batch-bytes), write a last key, stop the node (SIGTERM, or SIGKILL with
--kill) and start it again on the same data, --restarts times. For each
restart it reports the time from process start to (1) a stale read returning
the last value, (2) /readyz answering OK, (3) a linearizable read of the
last value. With --nodes 3 it starts a three-node cluster instead, loads
it, and restarts a follower (a node that is not the leader at the time of
each restart): the times are then of that node rejoining a healthy cluster
(reads and /readyz on the restarted node; the linearizable read is sent to
it and forwarded to the leader). With --churn N, N single-key Puts of
128-byte values follow the load, then a checkpoint on every node: raft
then compacts the load's entries out of the log, as on a node that ran for
a while after a bulk load (the log's trailing 10,240 entries must have
moved past them: 20000 is enough). The data directory is a temporary one,
removed afterwards, unless --dir is given.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			n, err := parseSize(size)
			if err != nil {
				return fmt.Errorf("--size: %w", err)
			}
			cfg.Size = n
			if cfg.ValueSize < 1 || cfg.BatchBytes < cfg.ValueSize || cfg.Loaders < 1 || cfg.Restarts < 1 || cfg.Churn < 0 {
				return errors.New("bench restart: --value-size, --loaders and --restarts must be >= 1 and --batch-bytes >= --value-size")
			}
			if cfg.Nodes != 1 && cfg.Nodes != 3 {
				return errors.New("bench restart: --nodes must be 1 or 3")
			}
			if cfg.Bin == "" {
				if cfg.Bin, err = os.Executable(); err != nil {
					return fmt.Errorf("bench restart: %w (use --bin)", err)
				}
			}
			res, err := runRestartBench(cmd.Context(), cfg, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), res)
			}
			printRestart(cmd.OutOrStdout(), res)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&size, "size", "1GiB", "bytes of values to load (e.g. 1GiB, 200MiB)")
	f.IntVar(&cfg.ValueSize, "value-size", cfg.ValueSize, "bytes per value")
	f.IntVar(&cfg.BatchBytes, "batch-bytes", cfg.BatchBytes, "approximate bytes per load batch")
	f.IntVar(&cfg.Loaders, "loaders", cfg.Loaders, "concurrent load batches")
	f.IntVar(&cfg.Restarts, "restarts", cfg.Restarts, "restarts to measure")
	f.IntVar(&cfg.Churn, "churn", 0, "single-key Puts after the load, then a checkpoint on every node (compacts the load out of the raft log)")
	f.IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "1: restart the node of a single-node cluster; 3: restart a follower of a three-node cluster")
	f.BoolVar(&cfg.Kill, "kill", false, "stop with SIGKILL (crash) instead of SIGTERM")
	f.StringVar(&cfg.Dir, "dir", "", "data directory (default: a temporary one, removed afterwards)")
	f.StringVar(&cfg.Bin, "bin", "", "cairn binary to run the node with (default: this one)")
	f.StringArrayVar(&cfg.ServeFlags, "serve-flag", nil, "extra flag for \"cairn serve\", repeatable")
	outputFlag(cmd, &output)
	return cmd
}

// parseSize parses 123, 10KiB, 200MiB, 1GiB (also KB/MB/GB, as powers of 1000).
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 {
		return 0, fmt.Errorf("%q is not a positive size", s)
	}
	return int64(f * float64(mult)), nil
}

// restartNode is one node of the cluster under test.
type restartNode struct {
	*benchProc
	cfg       restartConfig
	bootstrap string // --bootstrap list
}

func runRestartBench(ctx context.Context, cfg restartConfig, log io.Writer) (*restartResult, error) {
	dir, removeDir, err := benchDataDir(cfg.Dir, "cairn-bench-restart-", false)
	if err != nil {
		return nil, err
	}
	defer removeDir()
	procs, err := layoutBenchProcs(dir, cfg.Nodes)
	if err != nil {
		return nil, err
	}
	nodes := make([]*restartNode, cfg.Nodes)
	var endpoints []string
	for i, p := range procs {
		nodes[i] = &restartNode{benchProc: p, cfg: cfg, bootstrap: bootstrapList(procs)}
		endpoints = append(endpoints, p.grpc)
		defer p.stop(syscall.SIGKILL)
	}
	res := &restartResult{SizeBytes: cfg.Size, Nodes: cfg.Nodes, ValueSize: cfg.ValueSize, Stop: "sigterm"}
	if cfg.Kill {
		res.Stop = "sigkill"
	}
	fmt.Fprintf(log, "starting %d node(s) in %s (logs n*.log)\n", cfg.Nodes, dir)
	for _, n := range nodes {
		if err := n.start(); err != nil {
			return nil, err
		}
	}
	c, err := api.NewClient(api.DefaultClientConfig(endpoints...))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	for _, n := range nodes {
		if err := n.waitReadyz(ctx); err != nil {
			return nil, err
		}
	}

	keys := cfg.Size / int64(cfg.ValueSize)
	res.Keys = keys
	fmt.Fprintf(log, "loading %d keys of %d bytes (%s)...\n", keys, cfg.ValueSize, humanBytes(cfg.Size))
	t0 := time.Now()
	key := func(k int64) []byte { return fmt.Appendf(nil, "bench/restart/%012d", k) }
	if err := loadValues(ctx, c, cfg.Loaders, cfg.BatchBytes, cfg.ValueSize, keys, key, log); err != nil {
		return nil, fmt.Errorf("bench restart: load: %w", err)
	}
	res.LoadSec = time.Since(t0).Seconds()
	res.LoadMBps = float64(cfg.Size) / 1e6 / res.LoadSec
	if cfg.Churn > 0 {
		fmt.Fprintf(log, "churn: %d puts, then a checkpoint on every node...\n", cfg.Churn)
		if err := churn(ctx, c, nodes, cfg.Churn); err != nil {
			return nil, fmt.Errorf("bench restart: churn: %w", err)
		}
		res.ChurnPuts = cfg.Churn
	}

	latestKey := []byte("bench/restart/latest")
	var restarted []*restartNode
	for i := range cfg.Restarts {
		latest := fmt.Appendf(nil, "latest-%d-%d", i, time.Now().UnixNano())
		if _, err := c.Put(ctx, latestKey, latest); err != nil {
			return nil, fmt.Errorf("bench restart: put latest: %w", err)
		}
		n, err := pickRestarted(ctx, c, nodes)
		if err != nil {
			return nil, err
		}
		restarted = append(restarted, n)
		if cfg.Nodes > 1 {
			// Every node has the latest value before the follower stops.
			for _, o := range nodes {
				if err := o.waitStale(ctx, latestKey, latest); err != nil {
					return nil, err
				}
			}
		}
		sig := syscall.SIGTERM
		if cfg.Kill {
			sig = syscall.SIGKILL
		}
		ts := time.Now()
		if err := n.stop(sig); err != nil && !cfg.Kill {
			return nil, err
		}
		res.StopSec = append(res.StopSec, time.Since(ts).Seconds())
		if i == 0 {
			res.DataDirBytes = dirSize(n.dir)
		}
		nc, err := api.NewClient(api.DefaultClientConfig(n.grpc))
		if err != nil {
			return nil, err
		}
		stale, ready, linear, err := n.timeRestart(ctx, nc, latestKey, latest)
		nc.Close()
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(log, "restart %d (%s): stale read %s, /readyz %s, linearizable read %s\n", i+1, n.id, fmtDuration(stale), fmtDuration(ready), fmtDuration(linear))
		res.StaleReadSec = append(res.StaleReadSec, stale.Seconds())
		res.ReadyzSec = append(res.ReadyzSec, ready.Seconds())
		res.LinearReadSec = append(res.LinearReadSec, linear.Seconds())
	}
	for _, n := range nodes {
		if err := n.stop(syscall.SIGTERM); err != nil {
			return nil, err
		}
	}
	if len(restarted) > 0 {
		res.DataDirAfter = dirSize(restarted[len(restarted)-1].dir)
	}
	return res, nil
}

// churn writes n single-key Puts from 4 clients, then takes a checkpoint
// on every node (each compacts its own log).
func churn(ctx context.Context, c *api.Client, nodes []*restartNode, n int) error {
	const workers = 4
	var next atomic.Int64
	errs := make([]error, workers)
	var wg sync.WaitGroup
	val := bytes.Repeat([]byte("c"), 128)
	for w := range workers {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				if _, err := c.Put(ctx, fmt.Appendf(nil, "bench/restart/churn/%08d", i%1000), val); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, nd := range nodes {
		if _, err := c.CreateCheckpoint(ctx, nd.id); err != nil {
			return fmt.Errorf("checkpoint on %s: %w", nd.id, err)
		}
	}
	return nil
}

// pickRestarted returns the node to restart: the only one, or one that is
// not the leader.
func pickRestarted(ctx context.Context, c *api.Client, nodes []*restartNode) (*restartNode, error) {
	if len(nodes) == 1 {
		return nodes[0], nil
	}
	st, err := c.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("bench restart: cluster status: %w", err)
	}
	for _, n := range nodes {
		if n.id != st.GetLeaderId() {
			return n, nil
		}
	}
	return nil, fmt.Errorf("bench restart: no follower (leader %q)", st.GetLeaderId())
}

// waitStale waits until a stale read on n returns want.
func (n *restartNode) waitStale(ctx context.Context, key, want []byte) error {
	c, err := api.NewClient(api.DefaultClientConfig(n.grpc))
	if err != nil {
		return err
	}
	defer c.Close()
	return waitUntil(ctx, n.id+" to apply the latest value", time.Minute, func() (bool, error) {
		v, _, err := c.Get(ctx, key, api.WithConsistency(pb.Consistency_STALE))
		return err == nil && string(v.Bytes) == string(want), err
	})
}

func (n *restartNode) start() error {
	return n.benchProc.start(n.cfg.Bin, append([]string{"--bootstrap", n.bootstrap}, n.cfg.ServeFlags...)...)
}

func (n *restartNode) waitReadyz(ctx context.Context) error {
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.http+"/readyz", nil)
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-n.done:
			return fmt.Errorf("bench restart: node exited (see %s)\n%s", n.log, logTail(n.log, 10))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench restart: node not ready after 2 minutes (see %s)", n.log)
		}
	}
}

// timeRestart starts the node and measures, from just before the process
// starts, when a stale read first returns want, when /readyz first answers
// OK, and when a linearizable read returns want.
func (n *restartNode) timeRestart(ctx context.Context, c *api.Client, key, want []byte) (stale, ready, linear time.Duration, err error) {
	// A connection that retries quickly: the node is not listening yet.
	cc, err := grpc.NewClient(n.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 2 * time.Millisecond, Multiplier: 1.2, MaxDelay: 10 * time.Millisecond}, MinConnectTimeout: time.Second}))
	if err != nil {
		return 0, 0, 0, err
	}
	defer cc.Close()
	cc.Connect()
	kv := pb.NewKVClient(cc)
	t0 := time.Now()
	if err := n.start(); err != nil {
		return 0, 0, 0, err
	}
	deadline := t0.Add(5 * time.Minute)
	for stale == 0 {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := kv.Get(actx, &pb.GetRequest{Key: key, Consistency: pb.Consistency_STALE}, grpc.WaitForReady(true))
		cancel()
		switch {
		case err == nil && string(resp.GetValue().GetBytes()) == string(want):
			stale = time.Since(t0)
		case err == nil:
			return 0, 0, 0, fmt.Errorf("bench restart: stale read after restart returned %q, want %q", resp.GetValue().GetBytes(), want)
		case ctx.Err() != nil:
			return 0, 0, 0, ctx.Err()
		case time.Now().After(deadline):
			return 0, 0, 0, fmt.Errorf("bench restart: no stale read 5 minutes after restart: %w (see %s)", err, n.log)
		}
		select {
		case <-n.done:
			return 0, 0, 0, fmt.Errorf("bench restart: node exited (see %s)\n%s", n.log, logTail(n.log, 10))
		default:
		}
	}
	if err := n.waitReadyz(ctx); err != nil {
		return 0, 0, 0, err
	}
	ready = time.Since(t0)
	v, _, err := c.Get(ctx, key)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("bench restart: linearizable read after restart: %w", err)
	}
	if string(v.Bytes) != string(want) {
		return 0, 0, 0, fmt.Errorf("bench restart: linearizable read after restart returned %q, want %q", v.Bytes, want)
	}
	linear = time.Since(t0)
	return stale, ready, linear, nil
}

// freePorts returns n distinct 127.0.0.1 addresses that were free a moment ago.
func freePorts(n int) ([]string, error) {
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			_ = l.Close()
		}
	}()
	out := make([]string, n)
	for i := range out {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		out[i] = l.Addr().String()
	}
	return out, nil
}

// dirSize is the bytes of the files under dir, each hard-linked file once.
func dirSize(dir string) int64 {
	var total int64
	seen := map[[2]uint64]bool{} // a hard-linked file (checkpoints share Pebble's tables) counts once
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				if dev, ino, ok := fileID(fi); ok {
					id := [2]uint64{dev, ino}
					if seen[id] {
						return nil
					}
					seen[id] = true
				}
				total += fi.Size()
			}
		}
		return nil
	})
	return total
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d B", n)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func printRestart(w io.Writer, r *restartResult) {
	what := "the node of a single-node cluster"
	if r.Nodes > 1 {
		what = fmt.Sprintf("a follower of %d nodes", r.Nodes)
	}
	churn := ""
	if r.ChurnPuts > 0 {
		churn = fmt.Sprintf(", %d puts after it", r.ChurnPuts)
	}
	fmt.Fprintf(w, "restart to ready of %s: %s of state (%d values of %d bytes%s), stop by %s\n",
		what, humanBytes(r.SizeBytes), r.Keys, r.ValueSize, churn, r.Stop)
	fmt.Fprintf(w, "  data dir                    %s before the first restart, %s after the last\n",
		humanBytes(r.DataDirBytes), humanBytes(r.DataDirAfter))
	fmt.Fprintf(w, "  load                        %.1fs (%.1f MB/s)\n", r.LoadSec, r.LoadMBps)
	row := func(name string, xs []float64) {
		parts := make([]string, len(xs))
		for i, x := range xs {
			parts[i] = fmt.Sprintf("%.3fs", x)
		}
		fmt.Fprintf(w, "  %-27s median %.3fs  (runs: %s)\n", name, median(xs), strings.Join(parts, " "))
	}
	row("start -> stale read latest", r.StaleReadSec)
	row("start -> /readyz OK", r.ReadyzSec)
	row("start -> linearizable read", r.LinearReadSec)
	row("stop (signal -> exit)", r.StopSec)
}
