package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

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
