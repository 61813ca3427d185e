package main

// `cairn jepsen run` and `cairn jepsen clean`: the Jepsen-style fault
// injection harness (package jepsen) on real cairn processes.

import (
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cairn-db/cairn/jepsen"
	"github.com/cairn-db/cairn/jepsen/nemesis"
	"github.com/cairn-db/cairn/jepsen/report"
)

func init() { extraCommands = append(extraCommands, newJepsenCmd) }

func newJepsenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "jepsen",
		Short: "Fault-injection runs against a local cluster, checked for linearizability",
	}
	cmd.AddCommand(newJepsenRunCmd(), newJepsenCleanCmd())
	return cmd
}

func newJepsenRunCmd() *cobra.Command {
	cfg := jepsen.DefaultConfig()
	var quietLog bool
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run a workload under faults on a fresh local cluster and check the history",
		Long: `Start a fresh cluster of real 'cairn serve' processes (node i on 127.0.0.(10+i),
data in OUT/nodes), drive a workload at --rate with a seeded RNG while a seeded
schedule injects faults, heal everything, wait for recovery, do final reads,
stop the nodes, resolve unknown outcomes from their raft logs, check the
history (porcupine and invariant checkers) and write OUT/index.html.

Exit status: 0 valid, 1 anomaly found, 2 could not run or could not decide
(the reason is printed on stderr). The same --seed reproduces the schedule.

Nemeses (--nemesis, comma-separated): ` + strings.Join(nemesis.Names(), ", ") + `.
partition and netem need root and iptables; without --nemesis they are
skipped when unavailable, when named explicitly the run stops with status 2.
snapshot makes a follower install a checkpoint and kills it mid-install
(cut off by a partition with root, by kill -9 without); it runs the nodes
with --trailing-logs 64.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.NemesisExplicit = cmd.Flags().Changed("nemesis")
			if !cmd.Flags().Changed("seed") {
				cfg.Seed = rand.Uint64() >> 16
			}
			if !cmd.Flags().Changed("out") {
				cfg.Out = filepath.Join("jepsen-out", fmt.Sprintf("%s-seed%d", cfg.Workload, cfg.Seed))
			}
			if !quietLog {
				cfg.Log = cmd.ErrOrStderr()
			}
			res := jepsen.Run(cmd.Context(), cfg)
			printJepsenResult(cmd.OutOrStdout(), cfg, res)
			switch res.ExitCode {
			case jepsen.ExitValid:
				return nil
			case jepsen.ExitAnomaly:
				return &exitError{code: 1, msg: fmt.Sprintf("cairn jepsen: anomaly found (%s); see %s", res.Reason, filepath.Join(res.Dir, "index.html"))}
			}
			return &exitError{code: 2, msg: "cairn jepsen: could not run: " + res.Reason}
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "cluster size")
	f.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long to drive traffic and faults")
	f.StringVar(&cfg.Workload, "workload", cfg.Workload, "register, counter, bank or window")
	f.StringVar(&cfg.Nemesis, "nemesis", cfg.Nemesis, "faults to inject, comma-separated (none for none)")
	f.Float64Var(&cfg.Rate, "rate", cfg.Rate, "operations per second, all clients together")
	f.IntVar(&cfg.Clients, "clients", cfg.Clients, "concurrent logical clients")
	f.Uint64Var(&cfg.Seed, "seed", 0, "seed of the workload and fault schedule (default: random, printed)")
	f.StringVar(&cfg.Out, "out", "", "artifacts directory (default jepsen-out/<workload>-seed<seed>)")
	f.StringVar(&cfg.Bin, "bin", "", "cairn binary to test (default: go build ./cmd/cairn, with -tags faultybuild when --faults is set)")
	f.BoolVar(&cfg.TLS, "tls", false, "run the nodes with TLS between members and client certificates required (a throwaway CA in the artifacts directory); the harness's clients use TLS too")
	f.StringVar(&cfg.Faults, "faults", "", "planted bugs to switch on (needs a faultybuild binary): skip-dedup, stale-read, ack-before-commit")
	f.DurationVar(&cfg.OpTimeout, "op-timeout", cfg.OpTimeout, "client timeout of one operation")
	f.DurationVar(&cfg.Quiet, "fault-interval", cfg.Quiet, "mean pause between two faults (drawn from [½, 1½]×)")
	f.DurationVar(&cfg.Hold, "fault-duration", cfg.Hold, "mean length of a fault (drawn from [½, 1½]×)")
	f.DurationVar(&cfg.RecoveryTimeout, "recovery-timeout", cfg.RecoveryTimeout, "time allowed to recover after healing, and for the final reads")
	f.DurationVar(&cfg.CheckTimeout, "check-timeout", cfg.CheckTimeout, "time allowed to the linearizability checker")
	f.IntVar(&cfg.Keys, "keys", cfg.Keys, "register and window: number of keys")
	f.IntVar(&cfg.Accounts, "accounts", cfg.Accounts, "bank: number of accounts")
	f.Float64Var(&cfg.Redeliver, "redeliver", cfg.Redeliver, "counter and window: probability of re-sending an acknowledged commit (a lost reply)")
	f.Float64Var(&cfg.LeaseReads, "lease-reads", cfg.LeaseReads, "register, counter and bank: share of reads sent as lease reads instead of linearizable ones (both are checked as linearizable; final reads are linearizable)")
	f.Float64Var(&cfg.Restart, "restart", cfg.Restart, "counter and window: probability of a producer restart (new epoch) after an operation")
	f.StringArrayVar(&cfg.ServeArgs, "serve-arg", nil, "extra flag for every 'cairn serve' (repeatable)")
	f.BoolVarP(&quietLog, "quiet", "q", false, "do not print progress on stderr")
	return cmd
}

// printInstalls prints the snapshot faults and every node's installs.
func printInstalls(w io.Writer, s *report.Summary) {
	faults, mid := 0, 0
	for _, e := range s.Timeline {
		if e.Snapshot != nil {
			faults++
			if e.Snapshot.KilledMidInstall {
				mid++
			}
		}
	}
	installs := 0
	var per []string
	for _, id := range slices.Sorted(maps.Keys(s.Installs)) {
		n := s.Installs[id]
		installs += n.Log.Installs
		per = append(per, fmt.Sprintf("%s %d (%d failed, %d by delta, %d files fetched, %d reused)", id, n.Log.Installs, n.Log.Failed, n.Log.Deltas, n.Log.FilesFetched, n.Log.FilesReused))
	}
	if faults == 0 && installs == 0 {
		return
	}
	fmt.Fprintf(w, "  snapshots:  %d snapshot faults, %d killed mid-install (verified); installs: %s\n", faults, mid, strings.Join(per, ", "))
}

func printJepsenResult(w io.Writer, cfg jepsen.Config, res *jepsen.Result) {
	s := res.Summary
	verdict := map[int]string{jepsen.ExitValid: "VALID", jepsen.ExitAnomaly: "ANOMALY"}[res.ExitCode]
	if verdict == "" {
		verdict = "NOT VALIDATED"
	}
	tls := ""
	if cfg.TLS {
		tls = ", TLS"
	}
	fmt.Fprintf(w, "cairn jepsen: %s — %s workload, seed %d, %s, %d nodes%s\n", verdict, cfg.Workload, cfg.Seed, cfg.Duration, cfg.Nodes, tls)
	if s != nil {
		fmt.Fprintf(w, "  nemeses:    %v", s.Nemeses)
		for _, sk := range s.Skipped {
			fmt.Fprintf(w, "; skipped %s (%s)", sk.Name, sk.Reason)
		}
		fmt.Fprintf(w, "\n  faults:     %d injected, %d leader changes, %d elections\n", len(s.Timeline), s.LeaderChanges, s.Elections)
		fmt.Fprintf(w, "  operations: %d (%d ok, %d failed, %d unknown); unknowns resolved from the raft log: %d committed, %d absent; unresolved %d\n",
			s.Ops.Total, s.Ops.OK, s.Ops.Fail, s.Ops.Unknown, s.Resolved.Committed, s.Resolved.Absent, s.Resolved.Unresolved)
		printInstalls(w, s)
		fmt.Fprintf(w, "  latency:    p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", s.Latency.P50, s.Latency.P99, s.Latency.Max)
		if len(s.Anomalies) > 0 {
			counts := map[string]int{}
			var types []string
			for _, a := range s.Anomalies {
				t := a.Checker + "/" + string(a.Type)
				if counts[t] == 0 {
					types = append(types, t)
				}
				counts[t]++
			}
			fmt.Fprintf(w, "  anomalies:  %d:", len(s.Anomalies))
			for _, t := range types {
				fmt.Fprintf(w, " %d %s", counts[t], t)
			}
			fmt.Fprintln(w)
		}
		for i, a := range s.Anomalies {
			if i == 10 {
				fmt.Fprintf(w, "  … %d more anomalies in summary.json\n", len(s.Anomalies)-10)
				break
			}
			fmt.Fprintf(w, "  ANOMALY     %s\n", a)
		}
	}
	if res.Reason != "" {
		fmt.Fprintf(w, "  reason:     %s\n", res.Reason)
	}
	if res.Dir != "" {
		if _, err := os.Stat(filepath.Join(res.Dir, "index.html")); err == nil {
			fmt.Fprintf(w, "  report:     %s\n", filepath.Join(res.Dir, "index.html"))
		} else if _, err := os.Stat(filepath.Join(res.Dir, "summary.json")); err == nil {
			fmt.Fprintf(w, "  summary:    %s\n", filepath.Join(res.Dir, "summary.json"))
		}
	}
	fmt.Fprintf(w, "  rerun:      %s\n", cfg.Command(cfg.Out+"-rerun"))
}

func newJepsenCleanCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "clean",
		Short: "Remove iptables chains, qdiscs, cgroups and node processes left by crashed runs (root)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if os.Geteuid() != 0 {
				return fmt.Errorf("jepsen clean needs root (iptables, tc, cgroups)")
			}
			done, err := jepsen.Clean()
			for _, d := range done {
				fmt.Fprintln(cmd.OutOrStdout(), d)
			}
			if len(done) == 0 && err == nil {
				fmt.Fprintln(cmd.OutOrStdout(), "nothing to clean")
			}
			return err
		},
	}
}
