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
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
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
