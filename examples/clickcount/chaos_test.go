package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The chaos test's size and faults. The defaults keep `go test ./...`
// around a minute on two cores; chaos.sh runs the full size with the same
// code.
var (
	flagCairnBin    = flag.String("chaos.cairn", "", "cairn binary to run (default: built from ./cmd/cairn)")
	flagCairnTags   = flag.String("chaos.cairn-tags", "", "build tags for the cairn binary (faultybuild plants bugs: see internal/faulty)")
	flagFaults      = flag.String("chaos.faults", "", "CAIRN_FAULTS for the nodes (needs a faultybuild binary), e.g. skip-dedup")
	flagClickBin    = flag.String("chaos.clickcount", "", "clickcount binary to run (default: built from this package)")
	flagLines       = flag.Int64("chaos.lines", 200_000, "input lines")
	flagKeys        = flag.Int("chaos.keys", 2_000, "distinct keys in the input")
	flagBatch       = flag.Int("chaos.batch", 500, "operator --batch")
	flagSeed        = flag.Uint64("chaos.seed", 0, "seed of the input and the kill schedule (0: from the clock; logged)")
	flagOpKills     = flag.Int("chaos.operator-kills", 3, "SIGKILLs of the operator")
	flagLeaderKills = flag.Int("chaos.leader-kills", 2, "SIGKILLs of the cluster leader")
	flagRaftTimeout = flag.Duration("chaos.raft-timeout", 500*time.Millisecond, "raft heartbeat and election timeout of the nodes")
	flagTimeout     = flag.Duration("chaos.timeout", 5*time.Minute, "give up on the run after this long")
	flagWorkdir     = flag.String("chaos.workdir", "", "keep the run's files (input, data dirs, logs) in this directory (default: a temp dir removed after the test)")
	flagReport      = flag.String("chaos.report", "", "write the run's result as JSON to this file")
)

// chaosEvent is one planned fault, fired once the operator's committed
// offset reaches At.
type chaosEvent struct {
	At        int64  `json:"at"`
	Kind      string `json:"kind"`           // "operator" or "leader"
	Offset    int64  `json:"offset"`         // committed offset seen when it fired
	Node      string `json:"node,omitempty"` // the leader killed
	Pid       int    `json:"pid"`            // the process killed
	ElapsedMs int64  `json:"elapsed_ms"`     // since the operator first started
}

// chaosSchedule places the kills at seeded offsets in [5%, 75%] of the
// input, in order. The operator's final run must live through a leader
// kill (its client stats, printed at exit, then show the retries), so the
// last event is always a leader kill.
func chaosSchedule(seed uint64, lines int64, opKills, leaderKills int) []chaosEvent {
	r := rand.New(rand.NewPCG(seed, 0x6b696c6c))
	lo, hi := lines*5/100, lines*75/100
	var ev []chaosEvent
	for i := range opKills + leaderKills {
		kind := "operator"
		if i >= opKills {
			kind = "leader"
		}
		ev = append(ev, chaosEvent{At: lo + r.Int64N(hi-lo+1), Kind: kind})
	}
	slices.SortStableFunc(ev, func(a, b chaosEvent) int { return int(a.At - b.At) })
	if n := len(ev); n > 0 && ev[n-1].Kind == "operator" && leaderKills > 0 {
		for i := n - 2; i >= 0; i-- {
			if ev[i].Kind == "leader" {
				ev[i].Kind, ev[n-1].Kind = "operator", "leader"
				break
			}
		}
	}
	return ev
}

// chaosResult is what a run measured (written by -chaos.report).
type chaosResult struct {
	Seed          uint64       `json:"seed"`
	Lines         int64        `json:"lines"`
	Keys          int          `json:"keys"`
	Batch         int          `json:"batch"`
	Events        []chaosEvent `json:"events"`
	OperatorRuns  int          `json:"operator_runs"`
	OperatorSecs  float64      `json:"operator_secs"` // first start to the final exit
	Final         *summary     `json:"final"`         // the last operator run's summary
	Lost          int64        `json:"lost"`
	Duplicated    int64        `json:"duplicated"`
	VerifyExit    int          `json:"verify_exit"`
	ClusterFaults string       `json:"cluster_faults,omitempty"`
}

// TestChaos is the exactly-once acceptance test: the operator counts an
// input on a three-process cluster while the test SIGKILLs the operator
// (and restarts it) and SIGKILLs the leader (and restarts it on its data
// dir); afterwards every counter must equal the key's exact count in the
// input, and the operator's client must have retried.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes and takes about a minute")
	}
	ctx, cancel := context.WithTimeout(context.Background(), *flagTimeout)
	defer cancel()
	cairn, clickcount := cairnBinary(t), clickcountBinary(t)

	seed := *flagSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (-chaos.seed=%d repeats the input and the kill schedule)", seed, seed)
	dir := *flagWorkdir
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	res := &chaosResult{Seed: seed, Lines: *flagLines, Keys: *flagKeys, Batch: *flagBatch, ClusterFaults: *flagFaults}
	res.Events = chaosSchedule(seed, *flagLines, *flagOpKills, *flagLeaderKills)

	input := filepath.Join(dir, "clicks.txt")
	if err := writeInput(input, genConfig{Lines: *flagLines, Keys: *flagKeys, Seed: seed, Dist: "zipf"}); err != nil {
		t.Fatal(err)
	}
	rt := flagRaftTimeout.String()
	serveArgs := []string{"--heartbeat-timeout", rt, "--election-timeout", rt, "--leader-lease-timeout", (*flagRaftTimeout / 2).String()}
	var env []string
	if *flagFaults != "" {
		env = append(env, "CAIRN_FAULTS="+*flagFaults)
	}
	cl := startProcCluster(ctx, t, cairn, dir, 3, serveArgs, env)
	failed := true
	defer func() {
		if failed {
			cl.dumpLogs()
			t.Logf("run files in %s (keep them with -chaos.workdir)", dir)
		}
	}()

	const producer, source = "clickcount", "clicks.txt"
	opArgs := []string{"--input", input, "--producer", producer, "--batch", fmt.Sprint(*flagBatch),
		"--endpoints", cl.endpoints(), "--retry-budget", "2m"}
	startOp := func() *proc {
		res.OperatorRuns++
		p, err := startProc(dir, fmt.Sprintf("operator-%d", res.OperatorRuns), clickcount, opArgs, nil)
		if err != nil {
			t.Fatalf("start operator: %v", err)
		}
		t.Cleanup(p.kill)
		return p
	}
	began := time.Now()
	op := startOp()
	for i := range res.Events {
		ev := &res.Events[i]
		if ev.Kind == "leader" {
			// Never take a second node down: wait until the last restart caught up.
			if err := cl.waitHealthy(ctx); err != nil {
				t.Fatalf("before leader kill %d: cluster not healthy: %v", i, err)
			}
		}
		err := poll(ctx, 5*time.Millisecond, func() (bool, error) {
			if op.exited() {
				return false, fmt.Errorf("operator run %d exited with code %d before kill point %d (offset %d); "+
					"stderr:\n%s", res.OperatorRuns, op.cmd.ProcessState.ExitCode(), ev.At, ev.Offset,
					tail(filepath.Join(dir, op.name+".err"), 20))
			}
			off, err := committedOffset(ctx, cl.client, producer, source)
			if err != nil {
				return false, nil // the cluster is electing; keep polling
			}
			ev.Offset = off
			return off >= ev.At, nil
		})
		if err != nil {
			t.Fatalf("waiting for offset %d: %v", ev.At, err)
		}
		ev.ElapsedMs = time.Since(began).Milliseconds()
		switch ev.Kind {
		case "operator":
			ev.Pid = op.pid()
			op.kill()
			op = startOp()
		case "leader":
			nd, pid, err := cl.killLeader(ctx)
			if err != nil {
				t.Fatal(err)
			}
			ev.Node, ev.Pid = nd.id, pid
		}
		who := ev.Kind
		if ev.Node != "" {
			who += " " + ev.Node
		}
		t.Logf("killed %s (pid %d) at committed offset %d", who, ev.Pid, ev.Offset)
	}
	code, err := op.wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res.OperatorSecs = time.Since(began).Seconds()
	if code != exitOK {
		t.Fatalf("final operator run exited with %d; stderr:\n%s", code, tail(filepath.Join(dir, op.name+".err"), 20))
	}
	if res.Final, err = operatorSummary(dir, op.name); err != nil {
		t.Fatal(err)
	}

	res.Lost, res.Duplicated, _ = exactCounts(ctx, t, cl.client, input, "clicks/")
	vp, err := startProc(dir, "verify", clickcount, []string{"--verify", "--input", input, "--producer", producer, "--endpoints", cl.endpoints()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.VerifyExit, err = vp.wait(ctx); err != nil {
		t.Fatal(err)
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	t.Logf("result:\n%s", b)
	if *flagReport != "" {
		if err := os.WriteFile(*flagReport, append(b, '\n'), 0o644); err != nil {
			t.Error(err)
		}
	}

	if res.Lost != 0 || res.Duplicated != 0 {
		_, _, ex := exactCounts(ctx, t, cl.client, input, "clicks/")
		t.Errorf("counters differ from the input: %d clicks lost, %d duplicated; e.g. %s", res.Lost, res.Duplicated, strings.Join(ex, "; "))
	}
	if res.VerifyExit != exitOK {
		t.Errorf("clickcount --verify exited %d:\n%s", res.VerifyExit, tail(filepath.Join(dir, "verify.out"), 30))
	}
	if res.Final.Offset != *flagLines {
		t.Errorf("final run ended at offset %d, want %d", res.Final.Offset, *flagLines)
	}
	if res.Final.Retries == 0 {
		t.Errorf("the final operator run lived through a leader kill but its client shows no retries: %+v", res.Final)
	}
	failed = t.Failed()
}

func TestChaosSchedule(t *testing.T) {
	for seed := range uint64(200) {
		ev := chaosSchedule(seed, 1000, 3, 2)
		if len(ev) != 5 {
			t.Fatalf("seed %d: %d events", seed, len(ev))
		}
		kinds := map[string]int{}
		for i, e := range ev {
			kinds[e.Kind]++
			if e.At < 50 || e.At > 750 || (i > 0 && e.At < ev[i-1].At) {
				t.Fatalf("seed %d: events out of range or order: %+v", seed, ev)
			}
		}
		if kinds["operator"] != 3 || kinds["leader"] != 2 || ev[4].Kind != "leader" {
			t.Fatalf("seed %d: want 3 operator kills then a leader kill last: %+v", seed, ev)
		}
	}
	if !slices.Equal(chaosSchedule(7, 1000, 3, 2), chaosSchedule(7, 1000, 3, 2)) {
		t.Fatal("schedule is not a function of the seed")
	}
}
