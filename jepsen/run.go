package jepsen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/jepsen/client"
	"github.com/cairn-db/cairn/jepsen/cluster"
	"github.com/cairn-db/cairn/jepsen/nemesis"
	"github.com/cairn-db/cairn/jepsen/netfault"
	"github.com/cairn-db/cairn/jepsen/raftlog"
	"github.com/cairn-db/cairn/jepsen/report"
	"github.com/cairn-db/cairn/jepsen/traffic"
	"github.com/cairn-db/cairn/jepsen/validate"
	"github.com/cairn-db/cairn/linearizability"
)

// Exit codes of a run.
const (
	ExitValid     = 0 // the history was checked and is valid
	ExitAnomaly   = 1 // an anomaly was found
	ExitCannotRun = 2 // the run could not be made or checked (Reason says why)
)

// Anomaly types the harness adds to the checkers'.
const (
	CheckerProcess = "process"
	CheckerLive    = "liveness"

	AnomalyUnexpectedExit linearizability.AnomalyType = "unexpected-exit"
	AnomalyNoRecovery     linearizability.AnomalyType = "no-recovery"
)

// Result is what a run concluded.
type Result struct {
	ExitCode int
	Reason   string
	Dir      string
	Summary  *report.Summary
}

// Run performs one run: build or take the binary, start the cluster, drive
// the workload under the nemesis schedule, heal, wait for recovery, do the
// final reads, stop the nodes, resolve unknown outcomes from their raft
// logs, check, and write the report into cfg.Out. Faults are healed and
// rules removed on every path out, including ctx cancellation and panics.
func Run(ctx context.Context, cfg Config) *Result {
	r := &runner{cfg: cfg, logw: cfg.Log}
	if r.logw == nil {
		r.logw = io.Discard
	}
	return r.run(ctx)
}

type runner struct {
	cfg  Config
	logw io.Writer
	out  string
	bin  string

	cl      *cluster.Cluster
	cg      *cluster.Cgroups
	net     *netfault.Net
	env     *nemesis.Env
	nemeses []nemesis.Nemesis
	sum     report.Summary

	mu       sync.Mutex
	exits    []cluster.Exit
	stopping bool

	cleanOnce sync.Once
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.logw, "%s jepsen: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func (r *runner) run(ctx context.Context) (res *Result) {
	cfg := r.cfg
	start := time.Now()
	r.sum = report.Summary{Workload: cfg.Workload, Seed: cfg.Seed, Nodes: cfg.Nodes, Clients: cfg.Clients, Rate: cfg.Rate,
		Duration: cfg.Duration.String(), Faults: cfg.Faults, TLS: cfg.TLS, StartedAt: start, Command: cfg.Command(cfg.Out + "-rerun"),
		Timeline: []nemesis.Event{}, Anomalies: []linearizability.Anomaly{}}
	cannot := func(format string, args ...any) *Result {
		reason := fmt.Sprintf(format, args...)
		r.logf("cannot run: %s", reason)
		r.cleanup()
		r.sum.Verdict, r.sum.ExitCode, r.sum.Reason, r.sum.Elapsed = "error", ExitCannotRun, reason, time.Since(start).Round(time.Millisecond).String()
		if r.out != "" {
			_ = report.WriteJSON(filepath.Join(r.out, "summary.json"), &r.sum)
		}
		return &Result{ExitCode: ExitCannotRun, Reason: reason, Dir: r.out, Summary: &r.sum}
	}
	defer func() {
		if p := recover(); p != nil {
			res = cannot("panic: %v\n%s", p, debug.Stack())
		}
	}()
	defer r.cleanup()

	if err := cfg.Validate(); err != nil {
		return cannot("invalid configuration: %v", err)
	}
	if err := r.prepareOut(); err != nil {
		return cannot("output directory: %v", err)
	}
	names, _ := nemesis.Expand(cfg.Nemesis)
	if err := r.binary(ctx); err != nil {
		return cannot("%v", err)
	}
	r.sum.Binary, r.sum.ServeArgs = r.bin, cfg.serveArgs()
	if err := r.setupCluster(names); err != nil {
		return cannot("%v", err)
	}
	if err := r.chooseNemeses(names); err != nil {
		return cannot("%v", err)
	}
	r.logf("seed %d, %s workload, %d nodes, nemeses %v; artifacts in %s", cfg.Seed, cfg.Workload, cfg.Nodes, r.sum.Nemeses, r.out)
	sctx, scancel := context.WithTimeout(ctx, 60*time.Second)
	err := r.cl.Start(sctx)
	scancel()
	if err != nil {
		return cannot("cluster did not start: %v (see %s/nodes/*/node.log)", err, r.out)
	}
	r.logf("cluster up: %v", r.cl.Endpoints())

	recs, err := r.drive(ctx)
	if err != nil {
		return cannot("%v", err)
	}
	if ctx.Err() != nil {
		return cannot("interrupted")
	}
	return r.analyse(ctx, recs, start)
}

// prepareOut creates the output directory, removing the artifacts of an
// earlier run there (and nothing else).
func (r *runner) prepareOut() error {
	out, err := filepath.Abs(r.cfg.Out)
	if err != nil {
		return err
	}
	r.out = out
	for _, a := range []string{"nodes", "porcupine", "bin", "summary.json", "history.jsonl", "history.checked.jsonl",
		"latency.svg", "throughput.svg", "index.html"} {
		if err := os.RemoveAll(filepath.Join(out, a)); err != nil {
			return err
		}
	}
	return os.MkdirAll(filepath.Join(out, "nodes"), 0o755)
}

func (r *runner) binary(ctx context.Context) error {
	if r.cfg.Bin != "" {
		b, err := filepath.Abs(r.cfg.Bin)
		if err != nil {
			return err
		}
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("--bin: %w", err)
		}
		r.bin = b
		return nil
	}
	dir := r.cfg.ModuleDir
	if dir == "" {
		var err error
		if dir, err = FindModule(""); err != nil {
			return fmt.Errorf("cannot build cairn: %w", err)
		}
	}
	r.bin = filepath.Join(r.out, "bin", "cairn")
	tags := ""
	if r.cfg.Faults != "" {
		tags = " -tags faultybuild"
	}
	r.logf("building %s (go build%s ./cmd/cairn)", r.bin, tags)
	if err := Build(ctx, dir, r.bin, r.cfg.Faults != ""); err != nil {
		return fmt.Errorf("cannot build cairn: %w", err)
	}
	return nil
}

func needsNet(names []string) bool {
	for _, n := range names {
		if strings.HasPrefix(n, "partition") || n == "netem" || n == "snapshot" {
			return true
		}
	}
	return false
}

// setupCluster allocates the nodes and, when a network nemesis is wanted
// and possible, their cgroups and the iptables chain.
func (r *runner) setupCluster(names []string) error {
	runID := fmt.Sprintf("%06x", (uint64(time.Now().UnixNano())^uint64(os.Getpid())<<20)&0xffffff)
	var netErr error
	if needsNet(names) {
		if netErr = netfault.Probe(); netErr == nil {
			cg, err := cluster.NewCgroups(runID)
			if err != nil {
				netErr = fmt.Errorf("cannot tell node traffic apart: %w", err)
			} else {
				r.cg = cg
			}
		}
	}
	env := []string{}
	if r.cfg.Faults != "" {
		env = append(env, "CAIRN_FAULTS="+r.cfg.Faults)
	}
	cl, err := cluster.New(cluster.Config{Bin: r.bin, Dir: filepath.Join(r.out, "nodes"), Nodes: r.cfg.Nodes,
		Env: env, ServeArgs: r.cfg.serveArgs(), Cgroups: r.cg, Logf: r.logf, OnExit: r.onExit, TLS: r.cfg.TLS})
	if err != nil {
		return err
	}
	r.cl = cl
	var latencyErr error = errors.New("no packet filtering")
	if r.cg != nil {
		var eps []netfault.Endpoint
		for _, n := range cl.Nodes() {
			eps = append(eps, netfault.Endpoint{ID: n.ID, IP: n.IP, Cgroup: r.cg.Path(n.ID)})
		}
		if r.net, err = netfault.New(runID, eps, nil); err != nil {
			netErr, r.net = err, nil
		} else {
			latencyErr = netfault.LatencyProbe(nil)
		}
	}
	admin, err := api.NewClient(adminConfig(cl.Endpoints(), cl.ClientTLS()))
	if err != nil {
		return err
	}
	r.env = &nemesis.Env{Cluster: cl, Net: r.net, NetErr: netErr, LatencyErr: latencyErr, Admin: admin,
		TrailingLogs: r.cfg.trailingLogs(), Logf: r.logf}
	return nil
}

func adminConfig(eps []string, tlsCfg *tls.Config) api.ClientConfig {
	c := api.DefaultClientConfig(eps...)
	c.TLS = tlsCfg
	c.AttemptTimeout, c.RetryBudget = 2*time.Second, 10*time.Second
	c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	return c
}

// chooseNemeses keeps the available nemeses; an unavailable one the user
// asked for by name stops the run.
func (r *runner) chooseNemeses(names []string) error {
	cat := nemesis.Catalogue()
	r.sum.Nemeses = []string{}
	for _, name := range names {
		n := cat[name]
		if ok, why := n.Available(r.env); !ok {
			if r.cfg.NemesisExplicit {
				return fmt.Errorf("nemesis %s unavailable: %s", name, why)
			}
			r.sum.Skipped = append(r.sum.Skipped, report.Skipped{Name: name, Reason: why})
			r.logf("skipping nemesis %s: %s", name, why)
			continue
		}
		r.nemeses = append(r.nemeses, n)
		r.sum.Nemeses = append(r.sum.Nemeses, name)
	}
	return nil
}

func (r *runner) onExit(e cluster.Exit) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopping {
		return
	}
	r.exits = append(r.exits, e)
	r.logf("UNEXPECTED EXIT of %s (pid %d): %s", e.Node, e.PID, e.Status)
}

// drive runs the workload and the nemesis schedule for the duration,
// heals, waits for recovery and does the final reads. It returns the
// recorded history.
func (r *runner) drive(ctx context.Context) ([]client.Record, error) {
	cfg := r.cfg
	hf, err := os.Create(filepath.Join(r.out, "history.jsonl"))
	if err != nil {
		return nil, err
	}
	defer hf.Close()
	rec := client.NewRecorder(hf)
	var nodes []client.Node
	var ids []string
	for _, n := range r.cl.Nodes() {
		nodes = append(nodes, client.Node{ID: n.ID, Addr: n.GRPCAddr})
		ids = append(ids, n.ID)
	}
	pool, err := client.NewPool(rec, nodes, cfg.OpTimeout, r.cl.ClientTLS())
	if err != nil {
		return nil, err
	}
	pool.LeaseReads = cfg.LeaseReads
	defer pool.Close()
	tcfg := cfg.traffic()
	w, err := traffic.New(tcfg, ids)
	if err != nil {
		return nil, err
	}
	var clients []*client.Client
	for i := 0; i <= cfg.Clients; i++ { // the last one does setup and the final reads
		c, err := pool.NewClient(i, traffic.ClientRand(cfg.Seed, i))
		if err != nil {
			return nil, err
		}
		defer c.Close()
		clients = append(clients, c)
	}
	if err := w.Setup(clients[cfg.Clients]); err != nil {
		return nil, err
	}
	mon := r.cl.StartMonitor(rec.Now, 100*time.Millisecond)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var trafficErr, nemesisErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		trafficErr = traffic.Run(ctx, w, clients[:cfg.Clients], tcfg, stop)
	}()
	go func() {
		defer wg.Done()
		defer func() {
			if p := recover(); p != nil {
				nemesisErr = fmt.Errorf("nemesis panicked: %v", p)
			}
		}()
		sched := nemesis.Schedule{Seed: cfg.Seed, Quiet: cfg.Quiet, Hold: cfg.Hold, HealTimeout: cfg.RecoveryTimeout}
		r.sum.Timeline = append(r.sum.Timeline, nemesis.Run(ctx, r.env, r.nemeses, sched, rec.Now, stop)...)
	}()
	t := time.NewTimer(cfg.Duration)
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	t.Stop()
	close(stop)
	wg.Wait()
	r.sum.RunEnd = rec.Now()
	if err := errors.Join(trafficErr, nemesisErr); err != nil {
		mon.Stop()
		return nil, err
	}
	if ctx.Err() != nil {
		mon.Stop()
		return rec.Records(), nil
	}
	r.logf("traffic stopped after %v: %d operations; healing", cfg.Duration, len(rec.Records()))

	hctx := context.WithoutCancel(ctx)
	herr := nemesis.HealAll(hctx, r.env, r.nemeses, cfg.RecoveryTimeout)
	r.sum.HealedAt = rec.Now()
	if herr != nil {
		r.sum.RecoveryError = herr.Error()
		r.logf("cluster did not recover: %v", herr)
	} else {
		r.sum.RecoveredAt = rec.Now()
		r.logf("cluster healthy again after %.1fs", float64(r.sum.RecoveredAt-r.sum.RunEnd)/1e9)
	}
	final := clients[cfg.Clients]
	final.SetFinal(true)
	if err := w.Final(final, time.Now().Add(cfg.RecoveryTimeout)); err != nil {
		r.sum.Warnings = append(r.sum.Warnings, "final reads: "+err.Error())
		r.logf("final reads: %v", err)
	}
	if err := r.cl.WaitConverged(hctx, 30*time.Second); err != nil {
		r.sum.Warnings = append(r.sum.Warnings, "logs did not converge before stop: "+err.Error())
	}
	r.sum.Installs = r.installs(hctx)
	r.sum.Leaders = mon.Stop()
	r.sum.LeaderChanges = cluster.Changes(r.sum.Leaders)
	r.sum.Elections = elections(r.sum.Leaders)
	if err := rec.Err(); err != nil {
		return nil, fmt.Errorf("writing history: %w", err)
	}
	return rec.Records(), nil
}

// installs counts every node's checkpoint installs over the run: from
// node.log (all its processes) and from the metrics of its last process,
// with the kills mid-install the snapshot nemesis verified.
func (r *runner) installs(ctx context.Context) map[string]report.NodeInstalls {
	out := map[string]report.NodeInstalls{}
	for _, n := range r.cl.Nodes() {
		var ni report.NodeInstalls
		if l, err := n.InstallLog(0); err != nil {
			ni.Error = err.Error()
		} else {
			ni.Log = l
		}
		mctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		if m, err := r.cl.InstallMetrics(mctx, n); err != nil {
			ni.Error = strings.TrimPrefix(ni.Error+"; metrics: "+err.Error(), "; ")
		} else {
			ni.Final = &m
		}
		cancel()
		out[n.ID] = ni
	}
	for _, e := range r.sum.Timeline {
		if f := e.Snapshot; f != nil {
			ni := out[f.Victim]
			ni.Faults++
			if f.KilledMidInstall {
				ni.KilledMidInstall++
			}
			out[f.Victim] = ni
		}
	}
	return out
}

func elections(s []cluster.LeaderSample) int {
	terms := map[uint64]bool{}
	for _, x := range s {
		if x.Leader != "" {
			terms[x.Term] = true
		}
	}
	return max(len(terms)-1, 0)
}

// analyse stops the nodes, reads their logs, resolves, checks and reports.
func (r *runner) analyse(ctx context.Context, recs []client.Record, start time.Time) *Result {
	cfg := r.cfg
	r.mu.Lock()
	r.stopping = true
	exits := append([]cluster.Exit(nil), r.exits...)
	r.mu.Unlock()
	if err := r.cl.StopAll(10 * time.Second); err != nil {
		// Not a safety violation, but a node that cannot shut down is a
		// bug worth a look: the goroutine dump is in its node.log.
		r.sum.Warnings = append(r.sum.Warnings, "graceful stop failed: "+err.Error())
		r.logf("graceful stop failed: %v", err)
	}
	dumps, derrs := map[string]*raftlog.Dump{}, map[string]error{}
	lctx := context.WithoutCancel(ctx)
	for _, n := range r.cl.Nodes() {
		d, err := raftlog.Load(lctx, r.bin, n.DataDir)
		if err != nil {
			derrs[n.ID] = err
			continue
		}
		dumps[n.ID] = d
		_ = report.WriteJSON(filepath.Join(n.Dir, "raft-log.json"), d)
	}
	entries, logSum, logAnoms := validate.Merge(dumps, derrs)
	r.sum.Log = logSum
	kind := linearizability.Kind(cfg.Workload)
	h, rstats := validate.Resolve(client.History(recs), kind, entries, logSum.Complete)
	r.sum.Resolved = rstats
	if err := linearizability.WriteFile(filepath.Join(r.out, "history.checked.jsonl"), h); err != nil {
		r.sum.Warnings = append(r.sum.Warnings, "writing checked history: "+err.Error())
	}
	w, _ := traffic.New(cfg.traffic(), nil)
	opts := w.CheckOptions()
	opts.Timeout, opts.VisualizeDir = cfg.CheckTimeout, filepath.Join(r.out, "porcupine")
	r.logf("checking %d records (%d unknowns resolved: %d committed, %d absent)", len(h), rstats.Committed+rstats.Absent, rstats.Committed, rstats.Absent)
	res := linearizability.Check(h, kind, opts)
	r.sum.Check = &res
	r.sum.Count(recs)
	r.sum.Crashes = exits
	anoms := append(append([]linearizability.Anomaly{}, res.Anomalies...), logAnoms...)
	for _, e := range exits {
		anoms = append(anoms, linearizability.Anomaly{Checker: CheckerProcess, Type: AnomalyUnexpectedExit, Occurrences: 1,
			Description: fmt.Sprintf("%s (pid %d) exited without being asked to: %s — see nodes/%s/node.log", e.Node, e.PID, e.Status, e.Node)})
	}
	if r.sum.RecoveryError != "" {
		anoms = append(anoms, linearizability.Anomaly{Checker: CheckerLive, Type: AnomalyNoRecovery, Occurrences: 1,
			Description: "the cluster did not become healthy within " + cfg.RecoveryTimeout.String() + " of healing every fault: " + r.sum.RecoveryError})
	}
	r.sum.Anomalies = anoms
	r.sum.Elapsed = time.Since(start).Round(time.Millisecond).String()
	switch {
	case res.Verdict == linearizability.VerdictInvalid:
		r.sum.Verdict, r.sum.ExitCode, r.sum.Reason = string(res.Verdict), ExitCannotRun, "the history is malformed (a harness bug): "+res.Error
	case len(anoms) > 0:
		r.sum.Verdict, r.sum.ExitCode = string(linearizability.VerdictIllegal), ExitAnomaly
		r.sum.Reason = fmt.Sprintf("%d anomalies found", len(anoms))
	case res.Verdict == linearizability.VerdictUnknown:
		r.sum.Verdict, r.sum.ExitCode, r.sum.Reason = string(res.Verdict), ExitCannotRun, "porcupine ran out of time (--check-timeout): linearizability not established"
	default:
		r.sum.Verdict, r.sum.ExitCode, r.sum.Valid = string(res.Verdict), ExitValid, true
	}
	if err := report.Write(r.out, &r.sum, recs); err != nil {
		r.logf("writing report: %v", err)
		if r.sum.ExitCode == ExitValid {
			r.sum.ExitCode, r.sum.Reason = ExitCannotRun, "writing report: "+err.Error()
		}
	}
	return &Result{ExitCode: r.sum.ExitCode, Reason: r.sum.Reason, Dir: r.out, Summary: &r.sum}
}

// cleanup heals the network, removes the rules, stops every node and
// removes the cgroups. It runs once, on every way out of Run.
func (r *runner) cleanup() {
	r.cleanOnce.Do(func() {
		r.mu.Lock()
		r.stopping = true
		r.mu.Unlock()
		if r.net != nil {
			if err := r.net.Close(); err != nil {
				r.logf("removing iptables rules: %v (run `cairn jepsen clean`)", err)
			}
		}
		if r.cl != nil {
			if err := r.cl.StopAll(10 * time.Second); err != nil {
				r.logf("stopping nodes: %v", err)
			}
			r.cl.Close()
		}
		if r.env != nil && r.env.Admin != nil {
			_ = r.env.Admin.Close()
		}
		if r.cg != nil {
			if err := r.cg.Remove(); err != nil {
				r.logf("removing cgroups: %v (run `cairn jepsen clean`)", err)
			}
		}
	})
}

// Clean removes what crashed runs left behind (iptables chains and jumps,
// the lo qdisc, cgroups and the processes in them) and says what it did.
func Clean() ([]string, error) { return netfault.Clean(nil) }
