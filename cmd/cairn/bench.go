package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-db/cairn/api"
	pb "github.com/cairn-db/cairn/api/cairnpb"
)

func init() { extraCommands = append(extraCommands, newBenchCmd) }

// benchConfig is one load run against a running cluster.
type benchConfig struct {
	Workload     string // write, read, commit
	Clients      int
	Total        int // operations (write, read) or commits (commit)
	ValueSize    int
	Keys         int
	Consistency  string
	OpsPerCommit int
	Warmup       time.Duration
	SharedClient bool
	Preload      bool
	Seed         uint64
}

// benchResult is what a run measured; its JSON form is for scripts.
type benchResult struct {
	Workload      string      `json:"workload"`
	Clients       int         `json:"clients"`
	Total         int         `json:"total"`
	ValueSize     int         `json:"value_size"`
	Keys          int         `json:"keys"`
	Consistency   string      `json:"consistency,omitempty"`
	OpsPerCommit  int         `json:"ops_per_commit,omitempty"`
	SharedClient  bool        `json:"shared_client"`
	OK            int         `json:"ok"`
	Errors        int         `json:"errors"`
	FirstError    string      `json:"first_error,omitempty"`
	ElapsedSec    float64     `json:"elapsed_s"`
	OpsPerSec     float64     `json:"ops_per_sec"`
	UpdatesPerSec float64     `json:"updates_per_sec,omitempty"`
	LatencyMs     latencySumm `json:"latency_ms"`
}

type latencySumm struct {
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure throughput and latency against a running cluster (see also: bench restart, bench checkpoint)",
	}
	cmd.AddCommand(newBenchLoadCmd("write"), newBenchLoadCmd("read"), newBenchLoadCmd("commit"), newBenchRestartCmd(), newBenchCheckpointCmd())
	return cmd
}

func newBenchLoadCmd(workload string) *cobra.Command {
	cfg := benchConfig{Workload: workload, Clients: 16, Total: 50000, ValueSize: 128, Keys: 100000,
		Consistency: "linearizable", OpsPerCommit: 1000, Warmup: 2 * time.Second, Preload: true}
	var output string
	short := map[string]string{
		"write":  "Single-key Puts of random keys",
		"read":   "Gets of random keys (preloaded first)",
		"commit": "Exactly-once producer commits of --ops-per-commit AddOps each",
	}[workload]
	cmd := &cobra.Command{
		Use:   workload,
		Short: short,
		Long: short + `. --clients goroutines share --total operations
(for commit: --total commits) after a --warmup of the same load that is not
measured. Prints throughput, p50/p99/p99.9 latency (exact, from every recorded
call) and errors; -o json for scripts. The goroutines share one client (one
connection per node) unless --client-per-worker: sharing measured faster on
the 2-core machine of docs/benchmarks.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if cfg.Clients < 1 || cfg.Total < 1 || cfg.Keys < 1 || cfg.ValueSize < 0 || cfg.OpsPerCommit < 1 {
				return errors.New("bench: --clients, --total, --keys and --ops-per-commit must be >= 1")
			}
			if _, err := parseConsistency(cfg.Consistency); err != nil {
				return err
			}
			if cfg.Seed == 0 {
				cfg.Seed = uint64(time.Now().UnixNano())
			}
			res, err := runBench(cmd, cfg, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), res)
			}
			printBench(cmd.OutOrStdout(), res)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Clients, "clients", cfg.Clients, "concurrent client goroutines")
	if workload == "commit" {
		cfg.Total = 1000
		f.IntVar(&cfg.Total, "total", cfg.Total, "commits to measure in total (each of --ops-per-commit updates)")
		f.IntVar(&cfg.OpsPerCommit, "ops-per-commit", cfg.OpsPerCommit, "AddOps per commit")
	} else {
		f.IntVar(&cfg.Total, "total", cfg.Total, "operations to measure in total")
	}
	if workload != "commit" {
		f.IntVar(&cfg.ValueSize, "value-size", cfg.ValueSize, "bytes per value")
	}
	f.IntVar(&cfg.Keys, "keys", cfg.Keys, "size of the random key space")
	if workload == "read" {
		f.StringVar(&cfg.Consistency, "consistency", cfg.Consistency, "linearizable, lease or stale")
		f.BoolVar(&cfg.Preload, "preload", cfg.Preload, "write every key of the key space before reading")
	}
	f.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "unmeasured load before the run (0: none)")
	var perWorker bool
	f.BoolVar(&perWorker, "client-per-worker", false, "give every goroutine its own client (own connections) instead of sharing one")
	cmd.PreRun = func(*cobra.Command, []string) { cfg.SharedClient = !perWorker }
	f.Uint64Var(&cfg.Seed, "seed", 0, "random seed (0: from the clock)")
	outputFlag(cmd, &output)
	return cmd
}

// benchWorker is one client goroutine's state.
type benchWorker struct {
	id    int
	c     *api.Client
	rng   *rand.Rand
	value []byte
	prod  *api.Producer
	seq   int64
	lat   []time.Duration
	errs  int
	first error
}

// benchKey names key i of a workload's key space. Commit adds to integers,
// so it has its own keys: the others hold bytes.
func benchKey(workload string, i int) []byte {
	if workload == "commit" {
		return fmt.Appendf(nil, "bench/counter/%08d", i)
	}
	return fmt.Appendf(nil, "bench/%08d", i)
}

func runBench(cmd *cobra.Command, cfg benchConfig, log io.Writer) (*benchResult, error) {
	ctx := cmd.Context()
	cons, _ := parseConsistency(cfg.Consistency)
	var clients []*api.Client
	defer func() {
		for _, c := range clients {
			_ = c.Close()
		}
	}()
	workers := make([]*benchWorker, cfg.Clients)
	for i := range workers {
		if i == 0 || !cfg.SharedClient {
			c, err := newClient(cmd)
			if err != nil {
				return nil, err
			}
			clients = append(clients, c)
		}
		w := &benchWorker{id: i, c: clients[len(clients)-1], rng: rand.New(rand.NewPCG(cfg.Seed, uint64(i)))}
		w.value = make([]byte, cfg.ValueSize)
		for j := range w.value {
			w.value[j] = byte(w.rng.Uint32())
		}
		workers[i] = w
	}
	keys := make([][]byte, cfg.Keys)
	for i := range keys {
		keys[i] = benchKey(cfg.Workload, i)
	}
	if cfg.Workload == "read" && cfg.Preload {
		fmt.Fprintf(log, "preloading %d keys of %d bytes...\n", cfg.Keys, cfg.ValueSize)
		if err := benchPreload(ctx, clients, keys, workers[0].value); err != nil {
			return nil, clientErr(cmd, "bench: preload", err)
		}
	}
	if cfg.Workload == "commit" {
		tag := fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano())
		for _, w := range workers {
			p, err := w.c.RegisterProducer(ctx, fmt.Sprintf("bench-%s-%d", tag, w.id), api.ProducerOptions{MaxOps: cfg.OpsPerCommit})
			if err != nil {
				return nil, clientErr(cmd, "bench: register producer", err)
			}
			w.prod = p
		}
	}
	op := func(ctx context.Context, w *benchWorker) error {
		switch cfg.Workload {
		case "write":
			_, err := w.c.Put(ctx, keys[w.rng.IntN(len(keys))], w.value)
			return err
		case "read":
			_, _, err := w.c.Get(ctx, keys[w.rng.IntN(len(keys))], api.WithConsistency(cons))
			return err
		default:
			ops := make([]*pb.Op, cfg.OpsPerCommit)
			for i := range ops {
				ops[i] = api.AddOp(keys[w.rng.IntN(len(keys))], 1)
			}
			w.seq++
			_, err := w.prod.Commit(ctx, ops, map[string]int64{fmt.Sprintf("bench-source-%d", w.id): w.seq})
			return err
		}
	}
	if cfg.Warmup > 0 {
		fmt.Fprintf(log, "warming up for %s...\n", cfg.Warmup)
		wctx, cancel := context.WithTimeout(ctx, cfg.Warmup)
		runWorkers(wctx, workers, math.MaxInt, op)
		cancel()
		for _, w := range workers {
			w.lat, w.errs, w.first = w.lat[:0], 0, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	elapsed := runWorkers(ctx, workers, cfg.Total, op)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res := &benchResult{Workload: cfg.Workload, Clients: cfg.Clients, Total: cfg.Total, ValueSize: cfg.ValueSize,
		Keys: cfg.Keys, SharedClient: cfg.SharedClient, ElapsedSec: elapsed.Seconds()}
	switch cfg.Workload {
	case "read":
		res.Consistency = cfg.Consistency
	case "commit":
		res.OpsPerCommit, res.ValueSize = cfg.OpsPerCommit, 0
	}
	var all []time.Duration
	for _, w := range workers {
		all = append(all, w.lat...)
		res.Errors += w.errs
		if w.first != nil && res.FirstError == "" {
			res.FirstError = w.first.Error()
		}
	}
	res.OK = len(all)
	res.OpsPerSec = float64(res.OK) / elapsed.Seconds()
	if cfg.Workload == "commit" {
		res.UpdatesPerSec = res.OpsPerSec * float64(cfg.OpsPerCommit)
	}
	res.LatencyMs = summarize(all)
	return res, nil
}

// runWorkers runs op on every worker until total ops were started or ctx
// ends, recording each successful op's latency; it returns the wall time.
func runWorkers(ctx context.Context, workers []*benchWorker, total int, op func(context.Context, *benchWorker) error) time.Duration {
	var started atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && started.Add(1) <= int64(total) {
				t0 := time.Now()
				err := op(ctx, w)
				d := time.Since(t0)
				switch {
				case err == nil:
					w.lat = append(w.lat, d)
				case ctx.Err() != nil:
					// the run ended (warm-up over or interrupted): not an error
				default:
					w.errs++
					if w.first == nil {
						w.first = err
					}
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start)
}

// summarize returns exact percentiles of the recorded latencies.
func summarize(d []time.Duration) latencySumm {
	if len(d) == 0 {
		return latencySumm{}
	}
	slices.Sort(d)
	ms := func(x time.Duration) float64 { return float64(x) / float64(time.Millisecond) }
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	return latencySumm{P50: ms(percentile(d, 0.50)), P99: ms(percentile(d, 0.99)), P999: ms(percentile(d, 0.999)),
		Max: ms(d[len(d)-1]), Mean: ms(sum / time.Duration(len(d)))}
}

// percentile returns the nearest-rank q-quantile of sorted d.
func percentile(d []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(d)))) - 1
	return d[max(0, min(i, len(d)-1))]
}

// benchPreload writes every key with value, in batches of about 2 MiB.
func benchPreload(ctx context.Context, clients []*api.Client, keys [][]byte, value []byte) error {
	per := max(1, min(1000, (2<<20)/(len(value)+32)))
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, min(8, max(len(clients), 4)))
	for g := range errs {
		c := clients[g%len(clients)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				lo := int(next.Add(int64(per))) - per
				if lo >= len(keys) || ctx.Err() != nil {
					return
				}
				hi := min(lo+per, len(keys))
				ops := make([]*pb.Op, 0, hi-lo)
				for _, k := range keys[lo:hi] {
					ops = append(ops, api.PutOp(k, value))
				}
				if _, err := c.Batch(ctx, ops...); err != nil {
					errs[g] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func printBench(w io.Writer, r *benchResult) {
	who := "one client per goroutine"
	if r.SharedClient {
		who = "one shared client"
	}
	switch r.Workload {
	case "commit":
		fmt.Fprintf(w, "commit: %d clients, %d commits of %d AddOps over %d keys (%s)\n", r.Clients, r.Total, r.OpsPerCommit, r.Keys, who)
		fmt.Fprintf(w, "  throughput  %.0f commits/s = %.0f state updates/s\n", r.OpsPerSec, r.UpdatesPerSec)
	case "read":
		fmt.Fprintf(w, "read: %d clients, %d %s Gets over %d keys of %d bytes (%s)\n", r.Clients, r.Total, r.Consistency, r.Keys, r.ValueSize, who)
		fmt.Fprintf(w, "  throughput  %.0f ops/s\n", r.OpsPerSec)
	default:
		fmt.Fprintf(w, "write: %d clients, %d Puts of %d-byte values over %d keys (%s)\n", r.Clients, r.Total, r.ValueSize, r.Keys, who)
		fmt.Fprintf(w, "  throughput  %.0f ops/s\n", r.OpsPerSec)
	}
	l := r.LatencyMs
	fmt.Fprintf(w, "  latency     p50 %.2fms  p99 %.2fms  p99.9 %.2fms  max %.2fms  mean %.2fms\n", l.P50, l.P99, l.P999, l.Max, l.Mean)
	fmt.Fprintf(w, "  errors      %d", r.Errors)
	if r.FirstError != "" {
		fmt.Fprintf(w, " (first: %s)", r.FirstError)
	}
	fmt.Fprintf(w, "\n  elapsed     %.2fs\n", r.ElapsedSec)
}
