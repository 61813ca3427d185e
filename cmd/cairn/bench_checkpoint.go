package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-db/cairn/api"
)

// ckptBenchConfig is one `cairn bench checkpoint` run.
type ckptBenchConfig struct {
	// CreateOn is where the write load's checkpoints are taken: "leader"
	// or "follower" (one of the two, the same each time).
	CreateOn      string
	Sizes         []int64
	ValueSize     int
	BatchBytes    int
	Loaders       int
	WarmCreates   int
	WriteClients  int
	WriteRate     float64 // Puts/s of the whole write load, paced; 0: as fast as the clients go
	WriteDuration time.Duration
	CreateEvery   time.Duration
	Churn         float64
	TrailingLogs  int
	SkipCatchUp   bool
	Dir           string
	Keep          bool
	Bin           string
	ServeFlags    []string
	Trace         string
}

type ckptSizeResult struct {
	TargetBytes     int64   `json:"target_bytes"`
	Keys            int64   `json:"keys"`
	StateBytes      int64   `json:"state_bytes"`
	Files           int     `json:"files"`
	ColdLatencySec  float64 `json:"cold_create_s"`   // first checkpoint after the load: every file new (hashed)
	ColdDurationSec float64 `json:"cold_duration_s"` // server side: Snapshot to manifest written
	ColdNewBytes    int64   `json:"cold_new_bytes"`
	WarmLatencySec  float64 `json:"warm_create_s"` // median of checkpoints after a few writes
	WarmDurationSec float64 `json:"warm_duration_s"`
	WarmNewBytes    int64   `json:"warm_new_bytes"`
}

type ckptLoadResult struct {
	CreateOn         string    `json:"create_on"` // the node the checkpoints were taken on, and its role
	Clients          int       `json:"clients"`
	RatePerSec       float64   `json:"rate_per_s,omitempty"` // the paced load's target (0: closed loop)
	DurationSec      float64   `json:"duration_s"`
	Creates          int       `json:"creates"`
	CreateLatencySec []float64 `json:"create_s"`
	// CreateCPUSec is the CPU time the creating node's process used during
	// each call (all its threads, so serving the write load meanwhile too;
	// Linux only). NodeCPURate is that process's CPU per second of the
	// load away from the calls, so CreateCPUSec[i] - NodeCPURate*call_i is
	// what the create added: CreateExtraCPUSec, its median.
	CreateCPUSec      []float64 `json:"create_cpu_s,omitempty"`
	NodeCPURate       float64   `json:"node_cpu_rate,omitempty"`
	CreateExtraCPUSec float64   `json:"create_extra_cpu_s,omitempty"`
	BaselineOpsSec    float64   `json:"baseline_ops_per_s"` // more than 1 s away from any create
	DuringOpsSec      float64   `json:"during_ops_per_s"`   // while a create call ran
	AfterOpsSec       float64   `json:"after_ops_per_s"`    // the 500 ms after each create
	LossPct           float64   `json:"loss_pct"`           // during vs baseline
	AfterLossPct      float64   `json:"after_loss_pct"`
	OverallLossPct    float64   `json:"overall_loss_pct"` // the create and the 500 ms after, together
	// AroundOpsSec is the mean throughput in 50 ms bins from 200 ms
	// before to 1 s after the start of a create.
	AroundOpsSec []float64 `json:"around_ops_per_s"`
	// CPUIdlePct and CPUStealPct: the machine's CPU time during the load
	// that was idle (or waiting for I/O) and stolen by the hypervisor
	// (/proc/stat; nil where there is none).
	CPUIdlePct  *float64 `json:"cpu_idle_pct,omitempty"`
	CPUStealPct *float64 `json:"cpu_steal_pct,omitempty"`
	// RunLossPct: the whole run (after 1 s of warm-up) versus the baseline
	// rate, i.e. what a checkpoint every CreateEvery costs a benchmark.
	RunLossPct float64 `json:"run_loss_pct"`
	// MeanPauseSec is the mean time the leader's state machine was paused
	// per checkpoint (cairn_checkpoint_pause_seconds).
	MeanPauseSec float64 `json:"mean_pause_s"`
	// LostSec and LostWithAfterSec are the Puts lost per create, in
	// seconds of the baseline rate (lost Puts / baseline ops/s), while the
	// call runs and over the call plus the 500 ms after. Unlike the
	// percentages they do not shrink when a create takes longer for the
	// same cost (e.g. work spread out or deferred within the window).
	LostSec          float64 `json:"lost_s_per_create"`
	LostWithAfterSec float64 `json:"lost_s_per_create_with_after"`
	// MedianLossPct and MedianLostSec are the median over creates of each
	// call's own loss (percent, and seconds at the baseline rate). The
	// totals above are dominated by the longest calls: on a shared machine
	// one create caught in a host stall of seconds (no Put completes
	// anywhere) outweighs ten ordinary ones.
	MedianLossPct float64 `json:"median_loss_pct"`
	MedianLostSec float64 `json:"median_lost_s"`
	// ControlMedianLossPct and ControlMedianLostSec are the same medians
	// over control windows: one per create, as long as its call, midway
	// to the next create (or to the end of the run), where no create runs.
	// They are the measure's noise floor: what a window that short shows
	// by chance on this machine (0 on a perfectly steady load).
	Controls             int     `json:"controls"`
	ControlMedianLossPct float64 `json:"control_median_loss_pct"`
	ControlMedianLostSec float64 `json:"control_median_lost_s"`
	// PairedLossPct compares the creates that have a control window with
	// their controls, pooled: 1 - (Puts in those calls) / (Puts in their
	// controls), windows of equal length. Unlike the medians it is not
	// biased by the skew of short-window rates (when Puts complete in
	// bursts, most short windows fall below the mean rate).
	PairedLossPct float64 `json:"paired_loss_pct"`
	// SecondPairedLossPct is what a throughput meter with one-second
	// resolution shows: Puts in the second from each create's start
	// against the second starting midway to the next create (or to the
	// run's end), pooled over the SecondPairs creates with room for both.
	// Unlike the windows above it also counts what a create costs in the
	// moments after its call returns.
	SecondPairs         int     `json:"second_pairs"`
	SecondPairedLossPct float64 `json:"second_paired_loss_pct"`
}

// ckptSpan is one create call, as offsets from the start of the write load.
type ckptSpan struct{ From, To time.Duration }

// ckptTrace is what --trace writes.
type ckptTrace struct {
	BucketSec float64     `json:"bucket_s"`
	Counts    []int64     `json:"puts"`    // completed Puts per bucket
	Creates   [][]float64 `json:"creates"` // [start, end] of each create call, seconds
}

type ckptCatchUpResult struct {
	ChurnKeys        int64             `json:"churn_keys"`
	First            *ckptCatchUpRound `json:"first"`           // the follower's files are all its own
	Second           *ckptCatchUpRound `json:"second"`          // the same again, after the first install
	FullCatchUpSec   float64           `json:"full_catch_up_s"` // a fresh node added
	FullBytesFetched int64             `json:"full_bytes_fetched"`
	FullInstallSec   float64           `json:"full_install_s"`
	// SameState: at the end, the three voters' state machines, at the same
	// applied index, hold the same keys and values (compared offline).
	SameState bool `json:"same_state"`
}

type ckptCatchUpRound struct {
	StateBytes      int64   `json:"state_bytes"`
	FollowerLast    uint64  `json:"follower_last_index"`
	CheckpointIndex uint64  `json:"checkpoint_index"`
	CatchUpSec      float64 `json:"catch_up_s"` // process start to applied >= the leader's commit index
	BytesFetched    int64   `json:"bytes_fetched"`
	BytesSent       int64   `json:"bytes_sent"` // a delta install's digest of the follower's state
	BytesReused     int64   `json:"bytes_reused"`
	FetchedPct      float64 `json:"fetched_pct_of_state"`
	ShippedPct      float64 `json:"shipped_pct_of_state"` // fetched and sent
	Delta           bool    `json:"delta"`                // the install rebuilt the state from the follower's own
	InstallSec      float64 `json:"install_s"`            // the install itself (fetch, verify, assemble, swap)
}

type ckptBenchResult struct {
	ValueSize int                `json:"value_size"`
	Sizes     []ckptSizeResult   `json:"sizes"`
	Load      *ckptLoadResult    `json:"write_load,omitempty"`
	CatchUp   *ckptCatchUpResult `json:"catch_up,omitempty"`
}

func newBenchCheckpointCmd() *cobra.Command {
	cfg := ckptBenchConfig{ValueSize: 1024, BatchBytes: 2 << 20, Loaders: 4, WarmCreates: 3, WriteClients: 16,
		WriteDuration: 60 * time.Second, CreateEvery: 6 * time.Second, Churn: 0.05, TrailingLogs: 10240}
	var sizes, output string
	cmd := &cobra.Command{
		Use:   "checkpoint",
		Short: "Checkpoint creation time and its cost to writes; follower catch-up through incremental checkpoints",
		Long: `Start a three-node cluster of "cairn serve" processes on free ports (raft's own
snapshot triggers off: only the benchmark's checkpoints) and measure:

 1. for each --sizes (loaded cumulatively with random --value-size values in
    batches of --batch-bytes): "cairn checkpoint create" latency on the leader
    for the first checkpoint after the load (every file new: hashed) and,
    median of --warm-creates, after a few more writes (the steady state);
 2. at the largest size, a write load (--write-clients goroutines of 1 KiB
    Puts over the loaded keys) for --write-duration with a checkpoint every
    --create-every: Puts completed while each create call runs versus the
    rate more than a second away from any, and versus a control window of
    the same length midway between creates (the measure's noise floor);
 3. catch-up: stop a follower, overwrite --churn of the keys, write small
    entries and checkpoint until the follower's log position is truncated
    (more than --trailing-logs entries behind), restart it: bytes fetched
    versus the state size, and time to catch up; then the same for a fresh
    empty node added as a non-voter (a full transfer).
The data directory is temporary unless --dir is given.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if cfg.CreateOn != "leader" && cfg.CreateOn != "follower" {
				return fmt.Errorf("--create-on: want leader or follower, got %q", cfg.CreateOn)
			}
			for _, s := range strings.Split(sizes, ",") {
				n, err := parseSize(s)
				if err != nil {
					return fmt.Errorf("--sizes: %w", err)
				}
				cfg.Sizes = append(cfg.Sizes, n)
			}
			slices.Sort(cfg.Sizes)
			if cfg.Bin == "" {
				var err error
				if cfg.Bin, err = os.Executable(); err != nil {
					return fmt.Errorf("bench checkpoint: %w (use --bin)", err)
				}
			}
			res, err := runCkptBench(cmd.Context(), cfg, cmd.ErrOrStderr())
			if res != nil {
				if output == "json" {
					// e.g. a NaN rate (no baseline time between checkpoints)
					if perr := printJSON(cmd.OutOrStdout(), res); perr != nil && err == nil {
						err = fmt.Errorf("bench checkpoint: %w", perr)
					}
				} else {
					printCkptBench(cmd.OutOrStdout(), res)
				}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&sizes, "sizes", "10MiB,100MiB,1GiB", "state sizes to measure checkpoint creation at, comma separated")
	f.IntVar(&cfg.ValueSize, "value-size", cfg.ValueSize, "bytes per value")
	f.IntVar(&cfg.BatchBytes, "batch-bytes", cfg.BatchBytes, "approximate bytes per load batch")
	f.IntVar(&cfg.Loaders, "loaders", cfg.Loaders, "concurrent load batches")
	f.IntVar(&cfg.WarmCreates, "warm-creates", cfg.WarmCreates, "steady-state checkpoints per size")
	f.IntVar(&cfg.WriteClients, "write-clients", cfg.WriteClients, "goroutines of the concurrent write load")
	f.Float64Var(&cfg.WriteRate, "write-rate", 0, "Puts per second of the write load, paced like YCSB's -target: each client follows a schedule and catches up when behind (0: as fast as the clients go)")
	f.DurationVar(&cfg.WriteDuration, "write-duration", cfg.WriteDuration, "length of the write load with periodic checkpoints (0 skips it)")
	f.DurationVar(&cfg.CreateEvery, "create-every", cfg.CreateEvery, "checkpoint interval during the write load")
	f.Float64Var(&cfg.Churn, "churn", cfg.Churn, "fraction of keys overwritten while a follower is down")
	f.IntVar(&cfg.TrailingLogs, "trailing-logs", cfg.TrailingLogs, "the cluster's --trailing-logs")
	f.BoolVar(&cfg.SkipCatchUp, "skip-catch-up", false, "skip the catch-up measurement")
	f.StringVar(&cfg.CreateOn, "create-on", "leader", "where the write load's checkpoints are taken: leader or follower")
	f.StringVar(&cfg.Dir, "dir", "", "data directory (default: a temporary one, removed afterwards)")
	f.BoolVar(&cfg.Keep, "keep", false, "keep the data directory")
	f.StringVar(&cfg.Bin, "bin", "", "cairn binary to run the nodes with (default: this one)")
	f.StringArrayVar(&cfg.ServeFlags, "serve-flag", nil, "extra flag for \"cairn serve\", repeatable")
	f.StringVar(&cfg.Trace, "trace", "", "write the write load's completed Puts per 10 ms and the create calls' times to this JSON file")
	outputFlag(cmd, &output)
	return cmd
}

func ckptKey(i int64) []byte { return fmt.Appendf(nil, "bench/ckpt/%012d", i) }

func runCkptBench(ctx context.Context, cfg ckptBenchConfig, log io.Writer) (*ckptBenchResult, error) {
	if cfg.WriteRate < 0 || math.IsNaN(cfg.WriteRate) || math.IsInf(cfg.WriteRate, 0) {
		return nil, fmt.Errorf("bench checkpoint: --write-rate %v: want Puts per second, 0 or more", cfg.WriteRate)
	}
	dir, removeDir, err := benchDataDir(cfg.Dir, "cairn-bench-checkpoint-", cfg.Keep)
	if err != nil {
		return nil, err
	}
	defer removeDir()
	// n1..n3 the cluster, n4 the fresh node of the catch-up measurement.
	nodes, err := layoutBenchProcs(dir, 4)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, p := range nodes {
			_ = p.stop(syscall.SIGTERM)
		}
	}()
	serveArgs := append([]string{"--snapshot-threshold", "1000000000000", "--trailing-logs", strconv.Itoa(cfg.TrailingLogs)}, cfg.ServeFlags...)
	for _, p := range nodes[:3] {
		if err := p.start(cfg.Bin, append([]string{"--bootstrap", bootstrapList(nodes[:3])}, serveArgs...)...); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(log, "cluster of 3 in %s (logs n*.log)\n", dir)
	ccfg := api.DefaultClientConfig(nodes[0].grpc, nodes[1].grpc, nodes[2].grpc)
	ccfg.RetryBudget = 2 * time.Minute
	c, err := api.NewClient(ccfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := waitUntil(ctx, "a ready leader", 2*time.Minute, func() (bool, error) {
		st, err := c.Status(ctx)
		if err != nil {
			return false, err
		}
		for _, n := range st.GetNodes() {
			if n.GetRole() == "leader" && n.GetReady() {
				return true, nil
			}
		}
		return false, nil
	}); err != nil {
		return nil, err
	}

	res := &ckptBenchResult{ValueSize: cfg.ValueSize}
	// createOn returns a create call on node ("": the leader) that also
	// reports its latency.
	createOn := func(node string) func() (*api.CreatedCheckpoint, time.Duration, error) {
		return func() (*api.CreatedCheckpoint, time.Duration, error) {
			t0 := time.Now()
			cr, err := c.CreateCheckpoint(ctx, node)
			return cr, time.Since(t0), err
		}
	}
	create := createOn("")
	var loaded int64
	for _, size := range cfg.Sizes {
		keys := size / int64(cfg.ValueSize)
		fmt.Fprintf(log, "loading to %s (%d keys)...\n", humanBytes(size), keys)
		t0 := time.Now()
		if err := loadValues(ctx, c, cfg.Loaders, cfg.BatchBytes, cfg.ValueSize, keys-loaded, func(k int64) []byte { return ckptKey(loaded + k) }, nil); err != nil {
			return res, fmt.Errorf("bench checkpoint: load: %w", err)
		}
		fmt.Fprintf(log, "  loaded %s in %s\n", humanBytes((keys-loaded)*int64(cfg.ValueSize)), fmtDuration(time.Since(t0)))
		loaded = keys
		r := ckptSizeResult{TargetBytes: size, Keys: keys}
		cr, lat, err := create()
		if err != nil {
			return res, fmt.Errorf("bench checkpoint: create: %w", err)
		}
		r.StateBytes, r.Files = cr.Checkpoint.StateBytes, cr.Checkpoint.Files
		r.ColdLatencySec, r.ColdDurationSec, r.ColdNewBytes = lat.Seconds(), cr.Checkpoint.Duration.Seconds(), cr.Checkpoint.NewBytes
		var lats, durs, news []float64
		rng := rand.New(rand.NewPCG(1, uint64(size)))
		for range cfg.WarmCreates {
			// A few writes: the steady state has something new each time.
			for range 20 {
				if _, err := c.Put(ctx, ckptKey(rng.Int64N(keys)), randomValue(rng, cfg.ValueSize)); err != nil {
					return res, err
				}
			}
			cr, lat, err := create()
			if err != nil {
				return res, fmt.Errorf("bench checkpoint: create: %w", err)
			}
			lats, durs, news = append(lats, lat.Seconds()), append(durs, cr.Checkpoint.Duration.Seconds()), append(news, float64(cr.Checkpoint.NewBytes))
		}
		r.WarmLatencySec, r.WarmDurationSec, r.WarmNewBytes = median(lats), median(durs), int64(median(news))
		fmt.Fprintf(log, "  checkpoint at %s: first %s (server %s, %s new), steady %s (server %s, %s new)\n", humanBytes(r.StateBytes),
			fmtDuration(lat), fmtDuration(cr.Checkpoint.Duration), humanBytes(r.ColdNewBytes), fmtDuration(seconds(r.WarmLatencySec)),
			fmtDuration(seconds(r.WarmDurationSec)), humanBytes(r.WarmNewBytes))
		res.Sizes = append(res.Sizes, r)
	}

	if cfg.WriteDuration > 0 {
		pace := "as fast as they go"
		if cfg.WriteRate > 0 {
			pace = fmt.Sprintf("paced at %.0f Puts/s", cfg.WriteRate)
		}
		fmt.Fprintf(log, "write load: %d clients (%s) for %s, a checkpoint every %s...\n", cfg.WriteClients, pace, cfg.WriteDuration, cfg.CreateEvery)
		leader, err := benchLeader(ctx, c, nodes)
		if err != nil {
			return res, err
		}
		on, role := leader, "leader"
		if cfg.CreateOn == "follower" {
			for _, p := range nodes[:3] {
				if p != leader {
					on, role = p, "follower"
					break
				}
			}
		}
		const pauseSum, pauseCount = "cairn_checkpoint_pause_seconds_sum", "cairn_checkpoint_pause_seconds_count"
		m0, _ := on.metrics(ctx, pauseSum, pauseCount)
		lr, err := ckptWriteLoad(ctx, c, cfg, loaded, createOn(on.id), on.pid())
		if lr != nil {
			lr.CreateOn = on.id + " (" + role + ")"
			m1, _ := on.metrics(ctx, pauseSum, pauseCount)
			if m1[pauseCount] > m0[pauseCount] {
				lr.MeanPauseSec = (m1[pauseSum] - m0[pauseSum]) / (m1[pauseCount] - m0[pauseCount])
			}
		}
		res.Load = lr
		if err != nil {
			return res, err
		}
	}
	if !cfg.SkipCatchUp {
		cu, err := ckptCatchUp(ctx, c, cfg, nodes, loaded, serveArgs, create, log)
		if err != nil {
			return res, err
		}
		res.CatchUp = cu
		// The follower that caught up must hold exactly the leader's data.
		if cu.SameState, err = benchSameState(ctx, c, nodes[:3], log); err != nil {
			return res, err
		}
		if !cu.SameState {
			return res, errors.New("bench checkpoint: the replicas' states differ after the catch-up")
		}
	}
	return res, nil
}

// benchLeader returns the process of the current leader.
func benchLeader(ctx context.Context, c *api.Client, nodes []*benchProc) (*benchProc, error) {
	st, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	for _, n := range st.GetNodes() {
		for _, p := range nodes {
			if p.id == n.GetId() && n.GetRole() == "leader" {
				return p, nil
			}
		}
	}
	return nil, errors.New("bench checkpoint: no leader")
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// ckptWriteLoad runs Puts for cfg.WriteDuration, creating checkpoints
// every cfg.CreateEvery, and compares throughput around checkpoints with
// throughput away from them.
func ckptWriteLoad(ctx context.Context, c *api.Client, cfg ckptBenchConfig, keys int64,
	create func() (*api.CreatedCheckpoint, time.Duration, error), creatorPID int) (*ckptLoadResult, error) {
	const bucket = 10 * time.Millisecond
	nb := int(cfg.WriteDuration/bucket) + 1
	counts := make([]atomic.Int64, nb)
	cpu0, cpuOK := readCPUTimes()
	node0, nodeOK := procCPU(creatorPID)
	start := time.Now()
	lctx, cancel := context.WithTimeout(ctx, cfg.WriteDuration)
	defer cancel()
	var wg sync.WaitGroup
	var errCount atomic.Int64
	var errMu sync.Mutex
	var errSamples []string
	for g := range cfg.WriteClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			v := randomValue(rng, cfg.ValueSize)
			// A paced client's k-th Put is due at its offset plus k
			// periods; one that fell behind sends at once until it is on
			// schedule again (no Put is skipped).
			var period time.Duration
			due := start
			if cfg.WriteRate > 0 {
				period = time.Duration(float64(cfg.WriteClients) / cfg.WriteRate * float64(time.Second))
				due = start.Add(period * time.Duration(g) / time.Duration(cfg.WriteClients))
			}
			for lctx.Err() == nil {
				if period > 0 {
					if d := time.Until(due); d > 0 {
						select {
						case <-lctx.Done():
							return
						case <-time.After(d):
						}
					}
					due = due.Add(period)
				}
				_, err := c.Put(lctx, ckptKey(rng.Int64N(keys)), v)
				if err != nil {
					// A call cut off by the end of the load is not an error
					// (its own deadline may fire before lctx's).
					if lctx.Err() == nil && time.Since(start) < cfg.WriteDuration-10*time.Millisecond {
						if errCount.Add(1) <= 5 {
							errMu.Lock()
							errSamples = append(errSamples, fmt.Sprintf("%.3fs: %v", time.Since(start).Seconds(), err))
							errMu.Unlock()
						}
					}
					continue
				}
				if b := int(time.Since(start) / bucket); b < nb {
					counts[b].Add(1)
				}
			}
		}()
	}
	var spans []ckptSpan
	var lats, createCPU []float64
	next := cfg.CreateEvery / 2
	for {
		select {
		case <-lctx.Done():
		case <-time.After(time.Until(start.Add(next))):
		}
		if lctx.Err() != nil {
			break
		}
		from := time.Since(start)
		cpuBefore, cpuOK := procCPU(creatorPID)
		_, lat, err := create()
		if err != nil {
			cancel()
			wg.Wait()
			return nil, fmt.Errorf("bench checkpoint: create under load: %w", err)
		}
		spans = append(spans, ckptSpan{from, time.Since(start)})
		lats = append(lats, lat.Seconds())
		if cpuAfter, ok := procCPU(creatorPID); cpuOK && ok {
			createCPU = append(createCPU, (cpuAfter - cpuBefore).Seconds())
		}
		next += cfg.CreateEvery
	}
	wg.Wait()
	cpu1, cpuOK1 := readCPUTimes()
	node1, nodeOK1 := procCPU(creatorPID)
	loadDur := time.Since(start)
	n := make([]int64, nb)
	for i := range counts {
		n[i] = counts[i].Load()
	}
	r := ckptLoss(n, bucket, spans, cfg.WriteDuration)
	r.Clients, r.RatePerSec, r.CreateLatencySec = cfg.WriteClients, cfg.WriteRate, lats
	if len(createCPU) == len(lats) && len(lats) > 0 && nodeOK && nodeOK1 {
		r.CreateCPUSec = createCPU
		var inCalls, callTime float64
		for i := range lats {
			inCalls += createCPU[i]
			callTime += spans[i].To.Seconds() - spans[i].From.Seconds()
		}
		if away := loadDur.Seconds() - callTime; away > 0 {
			r.NodeCPURate = ((node1 - node0).Seconds() - inCalls) / away
			extra := make([]float64, len(lats))
			for i := range lats {
				extra[i] = createCPU[i] - r.NodeCPURate*(spans[i].To.Seconds()-spans[i].From.Seconds())
			}
			r.CreateExtraCPUSec = median(extra)
		}
	}
	if idle, steal, ok := cpuShares(cpu0, cpu1); cpuOK && cpuOK1 && ok {
		r.CPUIdlePct, r.CPUStealPct = &idle, &steal
	}
	if cfg.Trace != "" {
		t := ckptTrace{BucketSec: bucket.Seconds(), Counts: n}
		for _, sp := range spans {
			t.Creates = append(t.Creates, []float64{sp.From.Seconds(), sp.To.Seconds()})
		}
		b, err := json.Marshal(t)
		if err == nil {
			err = os.WriteFile(cfg.Trace, b, 0o644)
		}
		if err != nil {
			return r, fmt.Errorf("bench checkpoint: --trace: %w", err)
		}
	}
	if n := errCount.Load(); n > 0 {
		return r, fmt.Errorf("bench checkpoint: %d write errors under load (first: %s)", n, strings.Join(errSamples, "; "))
	}
	return r, nil
}

// A node's checkpoint install metrics (internal/node/checkpoints.go).
const (
	metricInstalls     = "cairn_checkpoint_installs_total"
	metricBytesFetched = "cairn_checkpoint_install_bytes_fetched_total"
	metricBytesReused  = "cairn_checkpoint_install_bytes_reused_total"
	metricInstallSec   = "cairn_checkpoint_install_duration_seconds_sum"
	metricBytesSent    = "cairn_checkpoint_install_bytes_sent_total"
	metricDelta        = "cairn_checkpoint_delta_installs_total"
)

// ckptCatchUp measures a follower's catch-up through checkpoints twice:
// the first time its files are all its own (built by its own applies,
// which never match the leader's byte for byte), the second time it holds
// what the first install left (the leader's files after a file install,
// its own again after a delta install). Then a fresh node's full transfer.
func ckptCatchUp(ctx context.Context, c *api.Client, cfg ckptBenchConfig, nodes []*benchProc, keys int64, serveArgs []string,
	create func() (*api.CreatedCheckpoint, time.Duration, error), log io.Writer) (*ckptCatchUpResult, error) {
	leader, err := benchLeader(ctx, c, nodes[:3])
	if err != nil {
		return nil, err
	}
	follower := nodes[0]
	if follower == leader {
		follower = nodes[1]
	}
	r := &ckptCatchUpResult{ChurnKeys: int64(cfg.Churn * float64(keys))}
	rng := rand.New(rand.NewPCG(3, 4))
	for round := 1; round <= 2; round++ {
		cu, err := ckptCatchUpOnce(ctx, c, cfg, leader, follower, keys, r.ChurnKeys, rng, serveArgs, create, log)
		if err != nil {
			return r, err
		}
		if round == 1 {
			r.First = cu
		} else {
			r.Second = cu
		}
	}

	// A full transfer: a fresh node, added as a non-voter.
	fresh := nodes[3]
	if err := fresh.start(cfg.Bin, serveArgs...); err != nil {
		return r, err
	}
	ls, err := leader.localStatus(ctx)
	if err != nil {
		return r, err
	}
	target := ls.GetCommitIndex()
	t0 := time.Now()
	if err := c.AddNode(ctx, fresh.id, fresh.raft, fresh.grpc, true); err != nil {
		return r, err
	}
	if err := waitUntil(ctx, fresh.id+" to catch up", 10*time.Minute, func() (bool, error) {
		s, err := fresh.localStatus(ctx)
		return err == nil && s.GetAppliedIndex() >= target, err
	}); err != nil {
		return r, err
	}
	r.FullCatchUpSec = time.Since(t0).Seconds()
	m, err := fresh.metrics(ctx, metricBytesFetched, metricInstallSec)
	if err != nil {
		return r, err
	}
	r.FullBytesFetched, r.FullInstallSec = int64(m[metricBytesFetched]), m[metricInstallSec]
	fmt.Fprintf(log, "  fresh node caught up in %s: fetched %s\n", fmtDuration(time.Since(t0)), humanBytes(r.FullBytesFetched))
	if err := c.RemoveNode(ctx, fresh.id); err != nil {
		return r, err
	}
	return r, nil
}

// ckptCatchUpOnce stops the follower, overwrites churn random keys, writes
// small entries and checkpoints the leader until the follower's position
// is truncated from the log, restarts it and measures its catch-up.
func ckptCatchUpOnce(ctx context.Context, c *api.Client, cfg ckptBenchConfig, leader, follower *benchProc, keys, churn int64,
	rng *rand.Rand, serveArgs []string, create func() (*api.CreatedCheckpoint, time.Duration, error), log io.Writer) (*ckptCatchUpRound, error) {
	fs, err := follower.localStatus(ctx)
	if err != nil {
		return nil, err
	}
	r := &ckptCatchUpRound{FollowerLast: max(fs.GetLastIndex(), fs.GetAppliedIndex())}
	fmt.Fprintf(log, "catch-up: stopping follower %s at index %d\n", follower.id, r.FollowerLast)
	_ = follower.stop(syscall.SIGTERM)
	fmt.Fprintf(log, "  overwriting %d random keys (%.1f%%)...\n", churn, 100*float64(churn)/float64(keys))
	// The keys are drawn here: loadValues calls key from its loaders'
	// goroutines, and rng is not safe for concurrent use.
	picks := make([]int64, churn)
	for i := range picks {
		picks[i] = rng.Int64N(keys)
	}
	if err := loadValues(ctx, c, cfg.Loaders, cfg.BatchBytes, cfg.ValueSize, churn, func(k int64) []byte { return ckptKey(picks[k]) }, nil); err != nil {
		return nil, err
	}
	for {
		ck, _, err := create()
		if err != nil {
			return nil, err
		}
		r.CheckpointIndex, r.StateBytes = ck.Checkpoint.Index, ck.Checkpoint.StateBytes
		if r.CheckpointIndex > r.FollowerLast+uint64(cfg.TrailingLogs)+1 {
			break
		}
		// Small entries until the log behind the follower is truncated
		// (concurrent puts may share entries: loop until it is).
		n := 4 * (int(r.FollowerLast+uint64(cfg.TrailingLogs)+64-r.CheckpointIndex) + 1)
		fmt.Fprintf(log, "  %d small writes to move the log past the follower...\n", n)
		var wg sync.WaitGroup
		var next atomic.Int64
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := next.Add(1); i <= int64(n) && ctx.Err() == nil; i = next.Add(1) {
					_, _ = c.Put(ctx, []byte("bench/ckpt/filler"), []byte(strconv.FormatInt(i, 10)))
				}
			}()
		}
		wg.Wait()
	}
	ls, err := leader.localStatus(ctx)
	if err != nil {
		return nil, err
	}
	target := ls.GetCommitIndex()
	fmt.Fprintf(log, "  restarting %s (checkpoint at %d, %s; leader commit %d)\n", follower.id,
		r.CheckpointIndex, humanBytes(r.StateBytes), target)
	t0 := time.Now()
	if err := follower.start(cfg.Bin, serveArgs...); err != nil {
		return nil, err
	}
	if err := waitUntil(ctx, follower.id+" to catch up", 10*time.Minute, func() (bool, error) {
		s, err := follower.localStatus(ctx)
		return err == nil && s.GetAppliedIndex() >= target, err
	}); err != nil {
		return r, err
	}
	r.CatchUpSec = time.Since(t0).Seconds()
	m, err := follower.metrics(ctx, metricBytesFetched, metricBytesReused, metricInstalls, metricInstallSec, metricBytesSent, metricDelta)
	if err != nil {
		return r, err
	}
	fetched := m[metricBytesFetched]
	if m[metricInstalls] == 0 {
		return r, fmt.Errorf("bench checkpoint: %s caught up without installing a checkpoint (log not truncated?)", follower.id)
	}
	r.BytesFetched, r.BytesReused, r.InstallSec = int64(fetched), int64(m[metricBytesReused]), m[metricInstallSec]
	r.BytesSent, r.Delta = int64(m[metricBytesSent]), m[metricDelta] > 0
	r.FetchedPct = 100 * fetched / float64(r.StateBytes)
	r.ShippedPct = 100 * (fetched + m[metricBytesSent]) / float64(r.StateBytes)
	fmt.Fprintf(log, "  caught up in %s (delta install: %v): fetched %s, sent %s, reused %s (%.1f%% of the state shipped)\n", fmtDuration(time.Since(t0)),
		r.Delta, humanBytes(r.BytesFetched), humanBytes(r.BytesSent), humanBytes(r.BytesReused), r.ShippedPct)
	return r, nil
}

func printCkptBench(w io.Writer, r *ckptBenchResult) {
	fmt.Fprintf(w, "checkpoint creation on the leader of 3 (%d-byte values):\n", r.ValueSize)
	fmt.Fprintf(w, "  %-10s %-8s %-26s %-26s\n", "state", "files", "first after load (server)", "steady state (server, new)")
	for _, s := range r.Sizes {
		fmt.Fprintf(w, "  %-10s %-8d %-26s %-26s\n", humanBytes(s.StateBytes), s.Files,
			fmt.Sprintf("%s (%s)", fmtDuration(seconds(s.ColdLatencySec)), fmtDuration(seconds(s.ColdDurationSec))),
			fmt.Sprintf("%s (%s, %s)", fmtDuration(seconds(s.WarmLatencySec)), fmtDuration(seconds(s.WarmDurationSec)), humanBytes(s.WarmNewBytes)))
	}
	if r.Load != nil {
		printCkptLoad(w, r.Load)
	}
	if cu := r.CatchUp; cu != nil {
		fmt.Fprintf(w, "catch-up of a restarted follower after %d random keys were overwritten and the log truncated past it:\n", cu.ChurnKeys)
		for _, x := range []struct {
			name string
			c    *ckptCatchUpRound
		}{{"first (own files only)", cu.First}, {"second", cu.Second}} {
			if x.c != nil {
				how := "files"
				if x.c.Delta {
					how = "delta"
				}
				fmt.Fprintf(w, "  %-24s caught up in %.1fs (%s install %.1fs), fetched %s + sent %s of %s (%.1f%%), reused %s\n", x.name, x.c.CatchUpSec,
					how, x.c.InstallSec, humanBytes(x.c.BytesFetched), humanBytes(x.c.BytesSent), humanBytes(x.c.StateBytes), x.c.ShippedPct, humanBytes(x.c.BytesReused))
			}
		}
		fmt.Fprintf(w, "  %-24s caught up in %.1fs (install %.1fs), fetched %s\n", "fresh node (full)", cu.FullCatchUpSec, cu.FullInstallSec, humanBytes(cu.FullBytesFetched))
		fmt.Fprintf(w, "  the three voters' states at the end, compared offline: identical %v\n", cu.SameState)
	}
}

// printCkptLoad prints the write load's part of a result.
func printCkptLoad(w io.Writer, l *ckptLoadResult) {
	parts := make([]string, len(l.CreateLatencySec))
	for i, x := range l.CreateLatencySec {
		parts[i] = fmtDuration(seconds(x))
	}
	pace := ""
	if l.RatePerSec > 0 {
		pace = fmt.Sprintf(" paced at %.0f Puts/s", l.RatePerSec)
	}
	fmt.Fprintf(w, "write load (%d clients%s, %.0fs, %d checkpoints on %s: %s)\n", l.Clients, pace, l.DurationSec, l.Creates, l.CreateOn, strings.Join(parts, " "))
	if l.Creates == 0 {
		// e.g. interrupted before the first create: nothing to compare
		fmt.Fprintf(w, "  no checkpoint was taken during the load (%.0f Puts/s)\n", l.BaselineOpsSec)
		return
	}
	if len(l.CreateCPUSec) > 0 {
		fmt.Fprintf(w, "  CPU of %s during each call, median over the creates: %s (all its threads); away from the calls it used %.2f CPU-s/s, so a create added %s (median)\n",
			l.CreateOn, fmtDuration(seconds(median(l.CreateCPUSec))), l.NodeCPURate, fmtDuration(seconds(l.CreateExtraCPUSec)))
	}
	fmt.Fprintf(w, "  state machine paused %s per checkpoint on average; throughput from 200 ms before to 1 s after a create starts, 50 ms bins: %v\n",
		fmtDuration(seconds(l.MeanPauseSec)), l.AroundOpsSec)
	fmt.Fprintf(w, "  throughput away from checkpoints %.0f ops/s; during the create calls %.0f ops/s (loss %.1f%%); in the 500 ms after %.0f ops/s (loss %.1f%%); both together: loss %.1f%%\n",
		l.BaselineOpsSec, l.DuringOpsSec, l.LossPct, l.AfterOpsSec, l.AfterLossPct, l.OverallLossPct)
	lost := func(s float64) string {
		if math.IsNaN(s) {
			return "n/a" // no baseline: no time away from the creates
		}
		return fmtDuration(seconds(s))
	}
	fmt.Fprintf(w, "  Puts lost per create, in time at the baseline rate: %s during the call, %s with the 500 ms after\n",
		lost(l.LostSec), lost(l.LostWithAfterSec))
	fmt.Fprintf(w, "  each call on its own, median over the creates: loss %.1f%% during the call, %s of writes lost\n",
		l.MedianLossPct, lost(l.MedianLostSec))
	if l.Controls > 0 {
		fmt.Fprintf(w, "  control: the same in %d windows as long as the calls, midway between creates (none running): median loss %.1f%%, %s of writes lost (the measure's noise floor)\n",
			l.Controls, l.ControlMedianLossPct, lost(l.ControlMedianLostSec))
		fmt.Fprintf(w, "  creates against their control windows, pooled: %.1f%% fewer Puts while the calls ran\n", l.PairedLossPct)
	}
	if l.SecondPairs > 0 {
		fmt.Fprintf(w, "  the second from each create's start against the second from midway to the next, pooled over %d: %.1f%% fewer Puts (a once-a-second throughput meter)\n",
			l.SecondPairs, l.SecondPairedLossPct)
	}
	fmt.Fprintf(w, "  the whole run with a checkpoint every %s: loss %.1f%%\n", seconds(l.DurationSec/float64(max(1, l.Creates))).Round(time.Second), l.RunLossPct)
	if l.CPUIdlePct != nil && l.CPUStealPct != nil {
		fmt.Fprintf(w, "  the machine's CPU during the load: %.1f%% idle, %.1f%% stolen by the hypervisor (/proc/stat)\n", *l.CPUIdlePct, *l.CPUStealPct)
	}
}
