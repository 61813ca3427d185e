// Command compare runs the same workloads against a three-node cairn
// cluster and a three-member etcd cluster on loopback, alternating systems
// round by round, and prints one table of medians with the ratio. bench/
// compare.sh builds everything it needs and calls it; see
// docs/benchmarks.md for what the rows mean.
//
// With --variant it instead compares cairn builds or flag sets against
// each other (before/after figures for an optimisation).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type config struct {
	quick     bool
	rounds    int
	scale     float64
	workDir   string
	keep      bool
	etcdBin   string // directory with etcd, etcdctl, benchmark
	cairnBin  string
	loadgen   string
	variants  []string
	withEtcd  bool
	only      string
	doc       string
	command   string
	cairnFlag []string
	jsonOut   string
	note      string
	noWAL     bool
	extras    extras
	// cairnVersion describes the cairn build (commit, uncommitted
	// changes), noted by compare.sh when it built it: the shared working
	// tree can move on during a run.
	cairnVersion string
	loadStart    string // load average when the run started
}

// extras are the optional cairn-only rows.
type extras struct {
	checkpoint, restart bool
	checkpointSizes     string
	restartSize         string
	ckpt                *checkpointResult
	rst                 *restartResult
}

func main() {
	var c config
	var variants, cairnFlags multiFlag
	flag.BoolVar(&c.quick, "quick", false, "small totals and one round (CI smoke run; asserts no timing)")
	flag.IntVar(&c.rounds, "rounds", 0, "rounds per workload, systems alternating (default 3, 1 with --quick)")
	flag.Float64Var(&c.scale, "scale", 1, "multiply every workload's total")
	flag.StringVar(&c.workDir, "workdir", "", "directory for data and logs (default: a new temp dir)")
	flag.BoolVar(&c.keep, "keep", false, "keep the work directory")
	flag.StringVar(&c.etcdBin, "etcd-bin", "bench/.cache/bin", "directory holding etcd, etcdctl and benchmark")
	flag.StringVar(&c.cairnBin, "cairn", "bench/.cache/bin/cairn", "cairn binary")
	flag.StringVar(&c.loadgen, "loadgen", "bench/.cache/bin/loadgen", "loadgen binary")
	flag.Var(&variants, "variant", "compare cairn variants instead of etcd vs cairn: NAME=BIN[@FLAG,FLAG...] (repeatable)")
	flag.Var(&cairnFlags, "cairn-flag", "extra flag for every cairn serve (repeatable)")
	flag.BoolVar(&c.withEtcd, "with-etcd", false, "with --variant: also run etcd")
	flag.StringVar(&c.only, "only", "", "run only workloads whose id matches this regexp")
	flag.StringVar(&c.doc, "doc", "", "splice the table into this markdown file between the compare markers")
	flag.StringVar(&c.command, "command", "", "the command line to record in the document")
	flag.StringVar(&c.jsonOut, "json", "", "write every run's result to this file")
	flag.StringVar(&c.note, "note", "", "free text recorded under the table")
	flag.StringVar(&c.cairnVersion, "cairn-version", "", "what the cairn binary was built from (default: git rev-parse at the end of the run)")
	flag.BoolVar(&c.noWAL, "no-wal", false, "leave out the third column (cairn with the opt-in --log-store=wal)")
	flag.BoolVar(&c.extras.checkpoint, "checkpoint", false, "also measure checkpoint creation and follower catch-up (cairn bench checkpoint; minutes)")
	flag.StringVar(&c.extras.checkpointSizes, "checkpoint-sizes", "100MiB,1GiB", "state sizes for --checkpoint")
	flag.BoolVar(&c.extras.restart, "restart", false, "also measure restart-to-ready (cairn bench restart; minutes)")
	flag.StringVar(&c.extras.restartSize, "restart-size", "1GiB", "state size for --restart")
	flag.Parse()
	c.variants, c.cairnFlag = variants, cairnFlags
	if c.rounds == 0 {
		c.rounds = 3
		if c.quick {
			c.rounds = 1
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// system is one cluster under test.
type system struct {
	name    string
	kind    string // "etcd" or "cairn"
	bin     string
	flags   []string
	procs   []*proc
	clients []string // client endpoints host:port
	http    []string // cairn: HTTP addresses
}

func run(ctx context.Context, c config) error {
	var err error
	if c.workDir == "" {
		if c.workDir, err = os.MkdirTemp("", "cairn-compare-"); err != nil {
			return err
		}
	}
	if !c.keep {
		defer os.RemoveAll(c.workDir)
	}
	logf("work directory %s", c.workDir)
	c.loadStart = loadAverage()
	logf("load average %s", c.loadStart)

	var systems []*system
	if len(c.variants) == 0 || c.withEtcd {
		systems = append(systems, &system{name: "etcd", kind: "etcd", bin: filepath.Join(c.etcdBin, "etcd")})
	}
	if len(c.variants) == 0 {
		systems = append(systems, &system{name: "cairn", kind: "cairn", bin: c.cairnBin, flags: c.cairnFlag})
		if !c.noWAL {
			systems = append(systems, &system{name: "cairn-wal", kind: "cairn", bin: c.cairnBin,
				flags: append(append([]string(nil), c.cairnFlag...), "--log-store=wal")})
		}
	}
	for _, v := range c.variants {
		name, spec, ok := strings.Cut(v, "=")
		if !ok {
			return fmt.Errorf("--variant %q: want NAME=BIN[@FLAGS]", v)
		}
		bin, fl, _ := strings.Cut(spec, "@")
		s := &system{name: name, kind: "cairn", bin: bin, flags: append([]string(nil), c.cairnFlag...)}
		if fl != "" {
			s.flags = append(s.flags, strings.Split(fl, ",")...)
		}
		systems = append(systems, s)
	}
	defer func() {
		for _, s := range systems {
			s.stop()
		}
	}()

	// The disk's fsync cost, measured where the data lives.
	fsync, err := runLoadgen(ctx, c.loadgen, "fsync", []string{"--dir", c.workDir, "--total", strconv.Itoa(scaled(c, 2000, 200))})
	if err != nil {
		return fmt.Errorf("fsync measurement: %w", err)
	}
	logf("fsync: p50 %.3fms p99 %.3fms (%.0f/s)", fsync.P50Ms, fsync.P99Ms, fsync.OpsPerSec)

	for _, s := range systems {
		if err := s.start(ctx, c.workDir); err != nil {
			return fmt.Errorf("starting %s: %w", s.name, err)
		}
		logf("%s ready: %s", s.name, strings.Join(s.clients, ","))
	}

	wls := workloads(c)
	var results []runResult
	var reruns []string
	for _, w := range wls {
		if c.only != "" && !regexp.MustCompile(c.only).MatchString(w.id) {
			continue
		}
		if w.prepare != nil {
			for _, s := range systems {
				if err := w.prepare(ctx, c, s); err != nil {
					return fmt.Errorf("%s: preparing %s: %w", w.id, s.name, err)
				}
			}
		}
		for r := 0; r < c.rounds; r++ {
			// Rotate the order every round so that neither system always
			// runs first (or right after the other's background work).
			order := slices.Clone(systems)
			if r%2 == 1 {
				slices.Reverse(order)
			}
			for _, s := range order {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if s.kind == "etcd" && w.etcdArgs == nil {
					continue
				}
				// A round in which requests failed is not a measurement
				// of the system at work: it is discarded and run again,
				// at most twice (on this shared machine a stall of the
				// host can cost a leader its lease; the rerun counts in
				// the document). Errors again: the comparison fails.
				var res *Result
				for try := 0; ; try++ {
					var err error
					res, err = w.run(ctx, c, s)
					if err != nil {
						return fmt.Errorf("%s on %s: %w", w.id, s.name, err)
					}
					logf("%-10s %-8s round %d: %10.0f/s p50 %7.2fms p99 %7.2fms CPU/unit server %6.1fµs client %6.1fµs settle %.1fs errors %d",
						w.id, s.name, r+1, w.rate(res), res.P50Ms, res.P99Ms, w.perUnit(res, res.ServerCPUSec), w.perUnit(res, res.ClientCPUSec), res.SettleSec, res.Errors)
					if res.Errors == 0 {
						break
					}
					if try == maxReruns {
						return fmt.Errorf("%s on %s: %d errors, first: %s", w.id, s.name, res.Errors, res.FirstErr)
					}
					reruns = append(reruns, fmt.Sprintf("%s on %s, round %d (%d errors, first: %s)", w.id, s.name, r+1, res.Errors, res.FirstErr))
					logf("%-10s %-8s round %d: discarded (%d errors), running it again", w.id, s.name, r+1, res.Errors)
				}
				results = append(results, runResult{Workload: w.id, System: s.name, Round: r + 1, Result: *res})
			}
		}
	}
	if c.jsonOut != "" {
		b, _ := json.MarshalIndent(results, "", " ")
		if err := os.WriteFile(c.jsonOut, b, 0o644); err != nil {
			return err
		}
	}
	// The optional rows start their own clusters: stop ours first.
	for _, s := range systems {
		s.stop()
	}
	if c.extras.checkpoint {
		logf("checkpoint creation and catch-up (cairn bench checkpoint --sizes %s)", c.extras.checkpointSizes)
		c.extras.ckpt = &checkpointResult{}
		if err := runJSON(ctx, c.cairnBin, c.extras.ckpt, "bench", "checkpoint", "--sizes", c.extras.checkpointSizes,
			"--write-duration", "0", "-o", "json"); err != nil {
			return fmt.Errorf("cairn bench checkpoint: %w", err)
		}
	}
	if c.extras.restart {
		logf("restart to ready (cairn bench restart --size %s)", c.extras.restartSize)
		c.extras.rst = &restartResult{}
		if err := runJSON(ctx, c.cairnBin, c.extras.rst, "bench", "restart", "--size", c.extras.restartSize, "-o", "json"); err != nil {
			return fmt.Errorf("cairn bench restart: %w", err)
		}
	}
	md := render(c, systems, wls, results, fsync, reruns)
	fmt.Println(md)
	if c.doc != "" {
		if err := splice(c.doc, md); err != nil {
			return err
		}
		logf("wrote %s", c.doc)
	}
	return nil
}

func scaled(c config, full, quick int) int {
	n := full
	if c.quick {
		n = quick
	}
	return max(1, int(float64(n)*c.scale))
}

// workload is one row of the table.
type workload struct {
	id, title string
	unit      string // "ops/s" or "updates/s"
	target    string
	ratio     float64 // target ratio cairn/etcd (0: none)
	absTarget float64 // target absolute rate for cairn (0: none)
	p99Target bool    // cairn p99 must be <= etcd p99
	prepare   func(ctx context.Context, c config, s *system) error
	etcdArgs  func(c config) []string
	cairnArgs func(c config) []string
	perReq    float64 // updates per request (commits, txns)
	etcdPer   float64
}

func (w workload) rate(r *Result) float64 {
	if r.UpdatesPerSec > 0 {
		return r.UpdatesPerSec
	}
	return r.OpsPerSec
}

// run runs the workload once and records the CPU time the system's three
// server processes used meanwhile: on a shared machine, CPU per request is
// steadier than the rate.
func (w workload) run(ctx context.Context, c config, s *system) (*Result, error) {
	before := s.cpuTime()
	r, err := w.run1(ctx, c, s)
	if err != nil {
		return nil, err
	}
	// Background work a run leaves behind (compactions, flushes) belongs
	// to it: wait until the servers are quiet before the next run starts,
	// and count that CPU too.
	r.SettleSec = s.settle(ctx).Seconds()
	r.ServerCPUSec = (s.cpuTime() - before).Seconds()
	return r, nil
}

// settle waits (at most a minute) until the system's processes use less
// than a fifth of a core, and returns how long that took.
func (s *system) settle(ctx context.Context) time.Duration {
	start := time.Now()
	const window = 500 * time.Millisecond
	for time.Since(start) < time.Minute && ctx.Err() == nil {
		c0 := s.cpuTime()
		time.Sleep(window)
		if s.cpuTime()-c0 < window/5 {
			break
		}
	}
	return time.Since(start)
}

func (w workload) run1(ctx context.Context, c config, s *system) (*Result, error) {
	if s.kind == "etcd" {
		if w.etcdArgs == nil {
			return &Result{}, nil
		}
		args := append([]string{"--endpoints", strings.Join(s.clients, ","), "--target-leader", "--precise"}, w.etcdArgs(c)...)
		r, err := runEtcdBenchmark(ctx, filepath.Join(c.etcdBin, "benchmark"), args)
		if err != nil {
			return nil, err
		}
		if w.etcdPer > 0 {
			r.UpdatesPerSec = r.OpsPerSec * w.etcdPer
		}
		return r, nil
	}
	args := append(w.cairnArgs(c), "--endpoints", strings.Join(s.clients, ","))
	return runLoadgen(ctx, c.loadgen, args[0], args[1:])
}

// conns gives the connection count for c requesters, the same for both
// systems: one connection per 8 requesters.
func conns(clients int) int { return max(1, clients/8) }

const (
	keySize = 16
	valSize = 128
	// commitOps is the number of state updates per cairn producer commit;
	// etcdTxnOps is etcd's default --max-txn-ops, the most one Txn may hold.
	commitOps  = 1000
	etcdTxnOps = 128
	readKey    = "compare-read-key"
	// maxReruns is how often a round whose requests failed is run again.
	maxReruns = 2
)

func workloads(c config) []workload {
	var out []workload
	putTarget := map[int]string{1: ">= 1.2x etcd", 64: ">= 1.5x etcd, p99 <= etcd"}
	putRatio := map[int]float64{1: 1.2, 64: 1.5}
	for _, n := range []int{1, 16, 64, 256} {
		total := map[int]int{1: 3000, 16: 20000, 64: 40000, 256: 60000}[n]
		total = scaled(c, total, total/20)
		common := []string{"--clients", strconv.Itoa(n), "--conns", strconv.Itoa(conns(n))}
		putArgs := []string{"--key-size", strconv.Itoa(keySize), "--val-size", strconv.Itoa(valSize), "--total", strconv.Itoa(total),
			"--sequential-keys", "--key-space-size", strconv.Itoa(total)}
		out = append(out, workload{
			id: fmt.Sprintf("put-%d", n), title: fmt.Sprintf("durable put, %d client%s", n, plural(n)), unit: "ops/s",
			target: putTarget[n], ratio: putRatio[n], p99Target: n == 64,
			etcdArgs:  func(config) []string { return append(append(slices.Clone(common), "put"), putArgs...) },
			cairnArgs: func(config) []string { return append(append([]string{"put"}, common...), putArgs...) },
		})
	}
	for _, cons := range []string{"l", "s"} {
		total := scaled(c, 100000, 5000)
		common := []string{"--clients", "64", "--conns", strconv.Itoa(conns(64)), "--total", strconv.Itoa(total)}
		title := "linearizable read, 64 clients"
		target, ratio := ">= 1.0x etcd", 1.0
		if cons == "s" {
			title, target, ratio = "serializable (stale) read, 64 clients", "", 0
		}
		out = append(out, workload{
			id: "get-" + cons, title: title, unit: "ops/s", target: target, ratio: ratio,
			prepare:   prepareReadKey,
			etcdArgs:  func(config) []string { return append(slices.Clone(common), "range", readKey, "--consistency", cons) },
			cairnArgs: func(config) []string { return append([]string{"range", readKey, "--consistency", cons}, common...) },
		})
	}
	{
		commits := scaled(c, 600, 30)
		txns := scaled(c, 3000, 150)
		const clients = 16
		common := []string{"--clients", strconv.Itoa(clients), "--conns", strconv.Itoa(conns(clients)),
			"--key-size", strconv.Itoa(keySize), "--val-size", strconv.Itoa(valSize), "--key-space-size", "1000000"}
		out = append(out, workload{
			id: "commit", title: fmt.Sprintf("batched producer commits, %d producers (etcd: Txn of %d puts)", clients, etcdTxnOps),
			unit: "updates/s", target: ">= 300,000 updates/s", absTarget: 300000, etcdPer: etcdTxnOps,
			etcdArgs: func(config) []string {
				return append(append(slices.Clone(common), "txn-put", "--txn-ops", strconv.Itoa(etcdTxnOps)), "--total", strconv.Itoa(txns))
			},
			cairnArgs: func(config) []string {
				return append(append([]string{"commit"}, common...), "--ops-per-commit", strconv.Itoa(commitOps), "--total", strconv.Itoa(commits))
			},
		})
	}
	{
		commits := scaled(c, 300, 20)
		const clients = 16
		out = append(out, workload{
			id: "commit-add", title: fmt.Sprintf("producer commits of counter increments, %d producers (cairn only)", clients),
			unit: "updates/s", target: ">= 300,000 updates/s", absTarget: 300000,
			cairnArgs: func(config) []string {
				return []string{"commit", "--op", "add", "--clients", strconv.Itoa(clients), "--conns", strconv.Itoa(conns(clients)),
					"--key-size", strconv.Itoa(keySize), "--key-space-size", "10000", "--ops-per-commit", strconv.Itoa(commitOps),
					"--total", strconv.Itoa(commits)}
			},
		})
	}
	return out
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// prepareReadKey writes the key the read workloads read (loadgen writes it
// itself for cairn).
func prepareReadKey(ctx context.Context, c config, s *system) error {
	if s.kind != "etcd" {
		return nil
	}
	val := strings.Repeat("v", valSize)
	cmd := exec.CommandContext(ctx, filepath.Join(c.etcdBin, "etcdctl"), "--endpoints", strings.Join(s.clients, ","), "put", readKey, val)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("etcdctl put: %w: %s", err, out)
	}
	return nil
}

// Result mirrors loadgen's JSON.
type Result struct {
	Workload      string  `json:"workload"`
	Clients       int     `json:"clients"`
	Conns         int     `json:"conns"`
	Total         int     `json:"total"`
	OK            int     `json:"ok"`
	Errors        int     `json:"errors"`
	FirstErr      string  `json:"first_error,omitempty"`
	Seconds       float64 `json:"seconds"`
	OpsPerSec     float64 `json:"ops_per_sec"`
	UpdatesPerSec float64 `json:"updates_per_sec,omitempty"`
	P50Ms         float64 `json:"p50_ms"`
	P90Ms         float64 `json:"p90_ms"`
	P99Ms         float64 `json:"p99_ms"`
	P999Ms        float64 `json:"p999_ms"`
	MeanMs        float64 `json:"mean_ms"`
	// ServerCPUSec is user+system CPU of the three server processes during
	// the run; ClientCPUSec that of the load generator.
	ServerCPUSec float64 `json:"server_cpu_s"`
	ClientCPUSec float64 `json:"client_cpu_s"`
	// SettleSec is how long the servers stayed busy after the run.
	SettleSec float64 `json:"settle_s"`
}

// perUnit is cpuSec (r.ServerCPUSec or r.ClientCPUSec) in microseconds per
// counted unit (request or update).
func (w workload) perUnit(r *Result, cpuSec float64) float64 {
	units := w.rate(r) * r.Seconds
	if units <= 0 {
		return 0
	}
	return cpuSec * 1e6 / units
}

type runResult struct {
	Workload string `json:"workload"`
	System   string `json:"system"`
	Round    int    `json:"round"`
	Result
}

func runLoadgen(ctx context.Context, bin, mode string, args []string) (*Result, error) {
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, append([]string{mode}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("loadgen %s: %w: %s", mode, err, errb.String())
	}
	var r Result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return nil, fmt.Errorf("loadgen output: %w", err)
	}
	r.ClientCPUSec = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	return &r, nil
}

var (
	reqsRe  = regexp.MustCompile(`Requests/sec:\s+([0-9.e+]+)`)
	pctRe   = regexp.MustCompile(`(?m)^\s*([0-9.]+)% in ([0-9.e+-]+) secs`)
	totalRe = regexp.MustCompile(`Total:\s+([0-9.e+]+) secs`)
	errRe   = regexp.MustCompile(`(?m)^Error distribution:\s*\n\s*\[(\d+)\]\s+(.*)$`)
)

// runEtcdBenchmark runs etcd's benchmark tool and parses its summary.
func runEtcdBenchmark(ctx context.Context, bin string, args []string) (*Result, error) {
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("benchmark: %w: %s %s", err, out.String(), errb.String())
	}
	s := out.String()
	m := reqsRe.FindStringSubmatch(s)
	if m == nil {
		return nil, fmt.Errorf("benchmark output has no Requests/sec: %s", s)
	}
	r := &Result{ClientCPUSec: (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()}
	r.OpsPerSec, _ = strconv.ParseFloat(m[1], 64)
	if m := totalRe.FindStringSubmatch(s); m != nil {
		r.Seconds, _ = strconv.ParseFloat(m[1], 64)
	}
	for _, m := range pctRe.FindAllStringSubmatch(s, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		switch m[1] {
		case "50":
			r.P50Ms = v * 1000
		case "90":
			r.P90Ms = v * 1000
		case "99":
			r.P99Ms = v * 1000
		case "99.9":
			r.P999Ms = v * 1000
		}
	}
	if m := errRe.FindStringSubmatch(s); m != nil {
		r.Errors, _ = strconv.Atoi(m[1])
		r.FirstErr = m[2]
	}
	return r, nil
}

// ---- clusters ----

type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

func startProc(dir, logName, bin string, args ...string) (*proc, error) {
	lf, err := os.Create(filepath.Join(dir, logName))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{}), log: lf}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.log.Close()
}

// cpuTime sums user and system CPU of the system's processes (Linux).
func (s *system) cpuTime() time.Duration {
	var total time.Duration
	for _, p := range s.procs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
		if err != nil {
			continue
		}
		// Fields after the parenthesised command name; utime and stime are
		// fields 14 and 15 of the line, in clock ticks (USER_HZ = 100).
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(u+st) * 10 * time.Millisecond
	}
	return total
}

func (s *system) stop() {
	for _, p := range s.procs {
		p.stop()
	}
	s.procs = nil
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

func (s *system) start(ctx context.Context, root string) error {
	dir := filepath.Join(root, s.name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ports, err := freePorts(9)
	if err != nil {
		return err
	}
	addr := func(p int) string { return fmt.Sprintf("127.0.0.1:%d", p) }
	var health []string
	switch s.kind {
	case "etcd":
		var initial []string
		for i := 0; i < 3; i++ {
			initial = append(initial, fmt.Sprintf("e%d=http://%s", i+1, addr(ports[3+i])))
		}
		for i := 0; i < 3; i++ {
			name := fmt.Sprintf("e%d", i+1)
			cu, pu := "http://"+addr(ports[i]), "http://"+addr(ports[3+i])
			p, err := startProc(dir, name+".log", s.bin, "--name", name, "--data-dir", filepath.Join(dir, name),
				"--listen-client-urls", cu, "--advertise-client-urls", cu, "--listen-peer-urls", pu, "--initial-advertise-peer-urls", pu,
				"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new", "--initial-cluster-token", "compare")
			if err != nil {
				return err
			}
			s.procs = append(s.procs, p)
			s.clients = append(s.clients, addr(ports[i]))
			health = append(health, cu+"/health")
		}
	case "cairn":
		var peers []string
		for i := 0; i < 3; i++ {
			peers = append(peers, fmt.Sprintf("n%d=%s", i+1, addr(ports[3+i])))
		}
		for i := 0; i < 3; i++ {
			name := fmt.Sprintf("n%d", i+1)
			args := []string{"serve", "--node-id", name, "--data-dir", filepath.Join(dir, name),
				"--grpc-addr", addr(ports[i]), "--raft-addr", addr(ports[3+i]), "--http-addr", addr(ports[6+i]),
				"--bootstrap", strings.Join(peers, ",")}
			p, err := startProc(dir, name+".log", s.bin, append(args, s.flags...)...)
			if err != nil {
				return err
			}
			s.procs = append(s.procs, p)
			s.clients = append(s.clients, addr(ports[i]))
			s.http = append(s.http, addr(ports[6+i]))
			health = append(health, "http://"+addr(ports[6+i])+"/readyz")
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, u := range health {
		for {
			if ok, _ := httpOK(ctx, u); ok {
				break
			}
			for _, p := range s.procs {
				select {
				case <-p.done:
					return fmt.Errorf("a %s process exited; see %s", s.name, p.log.Name())
				default:
				}
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("%s not ready after 60s (%s)", s.name, u)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nil
}

func httpOK(ctx context.Context, url string) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return false, string(b)
	}
	// etcd's /health answers 200 with {"health":"false"} while it has no leader.
	if strings.Contains(string(b), `"health":"false"`) {
		return false, string(b)
	}
	return true, string(b)
}

// ---- report ----

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

type summary struct {
	rate, p50, p99, cpu float64
	rates               []float64
	n                   int
}

func summarize(w workload, rs []runResult, sys string) summary {
	var s summary
	var p50s, p99s, cpus []float64
	for _, r := range rs {
		if r.Workload != w.id || r.System != sys || r.OK == 0 && r.OpsPerSec == 0 {
			continue
		}
		rr := r.Result
		s.rates = append(s.rates, w.rate(&rr))
		p50s = append(p50s, r.P50Ms)
		p99s = append(p99s, r.P99Ms)
		cpus = append(cpus, w.perUnit(&rr, rr.ServerCPUSec))
	}
	s.n = len(s.rates)
	s.rate, s.p50, s.p99, s.cpu = median(s.rates), median(p50s), median(p99s), median(cpus)
	return s
}

func render(c config, systems []*system, wls []workload, rs []runResult, fsync *Result, reruns []string) string {
	var b strings.Builder
	now := time.Now().UTC().Format("2006-01-02 15:04 UTC")
	fmt.Fprintf(&b, "Generated by `%s` on %s — do not edit by hand.\n\n", orDefault(c.command, "bench/compare.sh"), now)
	fmt.Fprintf(&b, "- Machine: %s\n", machine(c.loadStart))
	fmt.Fprintf(&b, "- Versions: %s\n", versions(c, systems))
	fmt.Fprintf(&b, "- Method: three nodes of each system on 127.0.0.1, fsync on, default settings; %d round(s) per workload, "+
		"systems alternating (A B, B A, ...); each cell is the median over rounds. Requests go to the leader "+
		"(etcd: `benchmark --target-leader`; cairn: its client follows the leader). Keys %d B, values %d B; "+
		"connections = requesters/8. CPU µs = user+system CPU of the three server processes per request "+
		"(per update in the commit row), from /proc, from the start of a run until the servers are quiet again "+
		"(so deferred work such as compactions counts, and never lands on the other system's run): steadier than rates on a shared machine.\n", c.rounds, keySize, valSize)
	fmt.Fprintf(&b, "- Disk: one %d-byte write + fdatasync takes p50 %.3f ms, p99 %.3f ms (%.0f/s from one thread) "+
		"in the same directory. A cairn write waits for its log append on the leader and then on a follower, one after "+
		"the other (raft-boltdb: 2 fdatasyncs each; raft-wal: 1 fsync each); an etcd write for the WAL on the leader and on a "+
		"follower in parallel (1 fdatasync each).\n", 4096, fsync.P50Ms, fsync.P99Ms, fsync.OpsPerSec)
	if c.quick {
		fmt.Fprintf(&b, "- **--quick run**: totals are tiny; the numbers are a smoke test, not a measurement.\n")
	}
	if len(reruns) > 0 {
		fmt.Fprintf(&b, "- Rounds discarded because requests failed, and run again: %s.\n", strings.Join(reruns, "; "))
	}
	if c.note != "" {
		fmt.Fprintf(&b, "- Note: %s\n", c.note)
	}
	b.WriteString("\n")
	// Header.
	b.WriteString("| workload | unit |")
	for _, s := range systems {
		fmt.Fprintf(&b, " %s rate | %s p50 ms | %s p99 ms | %s CPU µs |", s.name, s.name, s.name, s.name)
	}
	base := systems[0].name
	for _, s := range systems[1:] {
		fmt.Fprintf(&b, " %s / %s |", s.name, base)
	}
	if len(c.variants) == 0 {
		b.WriteString(" target |")
		for _, s := range systems[1:] {
			fmt.Fprintf(&b, " met (%s)? |", s.name)
		}
	}
	b.WriteString("\n|---|---|")
	for range systems {
		b.WriteString("---:|---:|---:|---:|")
	}
	for range systems[1:] {
		b.WriteString("---:|")
	}
	if len(c.variants) == 0 {
		b.WriteString("---|")
		for range systems[1:] {
			b.WriteString("---|")
		}
	}
	b.WriteString("\n")
	var runs strings.Builder
	for _, w := range wls {
		sums := make([]summary, len(systems))
		any := false
		for i, s := range systems {
			sums[i] = summarize(w, rs, s.name)
			any = any || sums[i].n > 0
		}
		if !any {
			continue
		}
		fmt.Fprintf(&b, "| %s | %s |", w.title, w.unit)
		for _, s := range sums {
			if s.n == 0 {
				b.WriteString(" – | – | – | – |")
				continue
			}
			fmt.Fprintf(&b, " %s | %s | %s | %s |", num(s.rate), ms(s.p50), ms(s.p99), cpuStr(s.cpu))
		}
		for _, s := range sums[1:] {
			if sums[0].rate > 0 && s.rate > 0 {
				fmt.Fprintf(&b, " %.2fx |", s.rate/sums[0].rate)
			} else {
				b.WriteString(" – |")
			}
		}
		if len(c.variants) == 0 {
			fmt.Fprintf(&b, " %s |", orDefault(w.target, "–"))
			for _, sm := range sums[1:] {
				met := "–"
				switch {
				case sm.n == 0:
				case w.absTarget > 0:
					met = yesNo(sm.rate >= w.absTarget)
				case w.ratio > 0 && sums[0].rate > 0:
					ok := sm.rate/sums[0].rate >= w.ratio
					if w.p99Target {
						ok = ok && sm.p99 <= sums[0].p99
					}
					met = yesNo(ok)
				}
				fmt.Fprintf(&b, " %s |", met)
			}
		}
		b.WriteString("\n")
		fmt.Fprintf(&runs, "- %s:", w.id)
		for i, s := range systems {
			if sums[i].n > 0 {
				fmt.Fprintf(&runs, " %s %s;", s.name, joinNums(sums[i].rates))
			}
		}
		runs.WriteString("\n")
	}
	if len(c.variants) == 0 {
		for _, r := range extraRows(c, systems) {
			b.WriteString(r + "\n")
		}
	}
	b.WriteString("\nEvery round (rate, in run order):\n\n")
	b.WriteString(runs.String())
	return b.String()
}

func cpuStr(us float64) string {
	if us >= 10 {
		return fmt.Sprintf("%.0f", us)
	}
	return fmt.Sprintf("%.1f", us)
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func joinNums(xs []float64) string {
	var s []string
	for _, x := range xs {
		s = append(s, num(x))
	}
	return strings.Join(s, ", ")
}

func num(x float64) string {
	n := int64(x + 0.5)
	s := strconv.FormatInt(n, 10)
	var out []byte
	for i, ch := range []byte(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, ch)
	}
	return string(out)
}

func ms(x float64) string {
	switch {
	case x >= 100:
		return fmt.Sprintf("%.0f", x)
	case x >= 10:
		return fmt.Sprintf("%.1f", x)
	}
	return fmt.Sprintf("%.2f", x)
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

func machine(loadStart string) string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if m := regexp.MustCompile(`(?m)^model name\s*:\s*(.*)$`).FindSubmatch(b); m != nil {
			model = strings.TrimSpace(string(m[1]))
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if m := regexp.MustCompile(`(?m)^MemTotal:\s*(\d+) kB`).FindSubmatch(b); m != nil {
			kb, _ := strconv.ParseFloat(string(m[1]), 64)
			mem = fmt.Sprintf(", %.1f GiB memory", kb/(1<<20))
		}
	}
	kernel := ""
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = ", Linux " + strings.TrimSpace(string(b))
	}
	load := ""
	if end := loadAverage(); end != "" {
		load = fmt.Sprintf("; load average (1, 5, 15 min) at the start %s, at the end %s (shared machine)", orDefault(loadStart, "?"), end)
	}
	return fmt.Sprintf("%d × %s (nproc %d)%s%s, %s/%s%s", runtime.NumCPU(), model, runtime.NumCPU(), mem, kernel, runtime.GOOS, runtime.GOARCH, load)
}

func versions(c config, systems []*system) string {
	var parts []string
	for _, s := range systems {
		switch s.kind {
		case "etcd":
			out, _ := exec.Command(s.bin, "--version").Output()
			v := strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
			parts = append(parts, fmt.Sprintf("%s (benchmark tool of the same version)", v))
		case "cairn":
			desc := "cairn " + orDefault(c.cairnVersion, gitDescribe())
			if len(s.flags) > 0 {
				desc += " with " + strings.Join(s.flags, " ")
			}
			parts = append(parts, fmt.Sprintf("%s = %s (load from bench/loadgen, cairn's Go client)", s.name, desc))
		}
	}
	parts = append(parts, runtime.Version())
	return strings.Join(parts, "; ")
}

func gitDescribe() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "(unknown commit)"
	}
	v := strings.TrimSpace(string(out))
	if err := exec.Command("git", "diff", "--quiet", "HEAD", "--", "api", "fsm", "raftnode", "internal", "cmd/cairn/serve.go").Run(); err != nil {
		v += "+uncommitted changes"
	}
	return v
}

const (
	markBegin = "<!-- compare.sh:begin -->"
	markEnd   = "<!-- compare.sh:end -->"
)

// splice replaces the text between the markers in path.
func splice(path, md string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	i, j := strings.Index(s, markBegin), strings.Index(s, markEnd)
	if i < 0 || j < i {
		return errors.New(path + ": markers " + markBegin + " / " + markEnd + " not found")
	}
	s = s[:i+len(markBegin)] + "\n" + md + "\n" + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

// ---- optional cairn-only rows (cairn bench checkpoint / restart) ----

// checkpointResult is the part of `cairn bench checkpoint -o json` used here.
type checkpointResult struct {
	Sizes []struct {
		TargetBytes  int64   `json:"target_bytes"`
		StateBytes   int64   `json:"state_bytes"`
		ColdCreateS  float64 `json:"cold_create_s"`
		WarmCreateS  float64 `json:"warm_create_s"`
		WarmNewBytes int64   `json:"warm_new_bytes"`
	} `json:"sizes"`
	CatchUp *struct {
		FirstRaw         map[string]float64 `json:"first"`
		SecondRaw        map[string]float64 `json:"second"`
		FullCatchUpS     float64            `json:"full_catch_up_s"`
		FullBytesFetched int64              `json:"full_bytes_fetched"`
	} `json:"catch_up"`
}

// restartResult is the part of `cairn bench restart -o json` used here.
type restartResult struct {
	SizeBytes  int64     `json:"size_bytes"`
	StaleReadS []float64 `json:"stale_read_s"`
	ReadyzS    []float64 `json:"readyz_s"`
}

func runJSON(ctx context.Context, bin string, out any, args ...string) error {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%w: %s", err, lastLines(stderr.String(), 5))
	}
	return json.Unmarshal(stdout.Bytes(), out)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func mib(b int64) string {
	if b >= 1<<30 {
		return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30))
	}
	return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
}

// extraRows renders the optional rows: a value in seconds in the cairn
// column, or a note that they were not measured.
func extraRows(c config, systems []*system) []string {
	row := func(title, value string) string {
		var b strings.Builder
		fmt.Fprintf(&b, "| %s | s |", title)
		for _, s := range systems {
			if s.name == "cairn" {
				fmt.Fprintf(&b, " %s | | | |", value)
			} else {
				b.WriteString(" – | | | |")
			}
		}
		// None of the other systems' ratio and met? columns, nor the target.
		b.WriteString(strings.Repeat(" – |", 2*len(systems)-1))
		return b.String()
	}
	var rows []string
	if r := c.extras.ckpt; r != nil {
		for _, sz := range r.Sizes {
			rows = append(rows, row(fmt.Sprintf("checkpoint create at %s (first after the load / steady state)", mib(sz.StateBytes)),
				fmt.Sprintf("%.3f / %.3f", sz.ColdCreateS, sz.WarmCreateS)))
		}
		if cu := r.CatchUp; cu != nil {
			rows = append(rows, row(fmt.Sprintf("follower catch-up after its log was truncated: first / second time (shipped %.0f%% / %.0f%% of the state)",
				cu.FirstRaw["shipped_pct_of_state"], cu.SecondRaw["shipped_pct_of_state"]),
				fmt.Sprintf("%.1f / %.1f", cu.FirstRaw["catch_up_s"], cu.SecondRaw["catch_up_s"])))
			rows = append(rows, row(fmt.Sprintf("fresh node catch-up (full transfer of %s)", mib(cu.FullBytesFetched)), fmt.Sprintf("%.1f", cu.FullCatchUpS)))
		}
	} else {
		rows = append(rows, row("checkpoint creation at 100 MiB / 1 GiB, follower catch-up", "not measured here (`--checkpoint`; see Checkpoints below)"))
	}
	if r := c.extras.rst; r != nil {
		rows = append(rows, row(fmt.Sprintf("restart to a stale read / to ready at %s (median of %d)", mib(r.SizeBytes), len(r.ReadyzS)),
			fmt.Sprintf("%.2f / %.2f", median(r.StaleReadS), median(r.ReadyzS))))
	} else {
		rows = append(rows, row("restart to ready", "not measured here (`--restart`; see Restart to ready below)"))
	}
	return rows
}
