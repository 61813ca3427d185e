package jepsen

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-db/cairn/jepsen/nemesis"
	"github.com/cairn-db/cairn/jepsen/traffic"
	"github.com/cairn-db/cairn/linearizability"
)

// DefaultNemesis is the fault list when none is given: everything, with
// the faults that cannot run here (no root for packet filtering) skipped.
const DefaultNemesis = "all"

// Config is one run.
type Config struct {
	Nodes    int
	Duration time.Duration
	Workload string // register, counter, bank, window
	// Nemesis is a comma-separated list of nemeses and aliases (see
	// nemesis.Aliases), "none" for none. NemesisExplicit: the user chose
	// it, so an unavailable nemesis is an error rather than skipped.
	Nemesis         string
	NemesisExplicit bool
	Rate            float64 // operations per second, all clients together
	Clients         int
	Seed            uint64
	Out             string // artifacts directory
	// Bin is the cairn binary to run; empty builds one from ModuleDir
	// (with -tags faultybuild when Faults is set).
	Bin       string
	ModuleDir string
	// Faults lists planted bugs to switch on (CAIRN_FAULTS), e.g. skip-dedup.
	Faults string

	OpTimeout time.Duration // per client operation
	// Quiet and Hold are the mean pause between faults and the mean fault
	// length (--fault-interval, --fault-duration).
	Quiet, Hold     time.Duration
	RecoveryTimeout time.Duration // for the cluster to heal and for final reads
	CheckTimeout    time.Duration // porcupine's budget

	Keys      int     // register keys
	Accounts  int     // bank accounts
	Redeliver float64 // counter: probability of re-sending an acknowledged commit
	// LeaseReads is the share of reads sent as lease reads rather than
	// linearizable ones (register, counter and bank; final reads are
	// always linearizable).
	LeaseReads float64
	Restart    float64 // counter: probability of a producer restart after an operation

	// ServeArgs are added to every node's serve flags (after the harness's).
	ServeArgs []string
	// TLS runs the nodes with TLS between members and client certificates
	// required; the harness's clients use a certificate of the same CA.
	TLS bool
	// Log receives progress lines (nil: discarded).
	Log io.Writer
}

// DefaultConfig returns the defaults of `cairn jepsen run`.
func DefaultConfig() Config {
	t := traffic.DefaultConfig(linearizability.KindRegister)
	return Config{Nodes: 3, Duration: 60 * time.Second, Workload: string(linearizability.KindRegister), Nemesis: DefaultNemesis,
		Rate: t.Rate, Clients: t.Clients, Out: "jepsen-out",
		OpTimeout: 2 * time.Second, Quiet: 3 * time.Second, Hold: 4 * time.Second,
		RecoveryTimeout: 60 * time.Second, CheckTimeout: 5 * time.Minute,
		Keys: t.Keys, Accounts: t.Accounts, Redeliver: t.Redeliver, Restart: t.Restart, LeaseReads: 0.3}
}

// Validate reports an unusable configuration.
func (c Config) Validate() error {
	var errs []error
	if c.Nodes < 1 || c.Nodes > 9 {
		errs = append(errs, fmt.Errorf("--nodes must be 1..9, got %d", c.Nodes))
	}
	if c.Duration <= 0 {
		errs = append(errs, errors.New("--duration must be positive"))
	}
	if c.Out == "" {
		errs = append(errs, errors.New("--out is required"))
	}
	if c.LeaseReads < 0 || c.LeaseReads > 1 {
		errs = append(errs, fmt.Errorf("--lease-reads must be in [0, 1], got %g", c.LeaseReads))
	}
	if _, err := nemesis.Expand(c.Nemesis); err != nil {
		errs = append(errs, err)
	}
	for _, f := range strings.Split(c.Faults, ",") {
		switch strings.TrimSpace(f) {
		case "", "skip-dedup", "stale-read", "ack-before-commit":
		default:
			errs = append(errs, fmt.Errorf("unknown planted bug %q (skip-dedup, stale-read, ack-before-commit)", f))
		}
	}
	if c.OpTimeout <= 0 || c.Quiet <= 0 || c.Hold <= 0 || c.RecoveryTimeout <= 0 || c.CheckTimeout <= 0 {
		errs = append(errs, errors.New("timeouts and fault timings must be positive"))
	}
	if err := c.traffic().Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c Config) traffic() traffic.Config {
	return traffic.Config{Kind: linearizability.Kind(c.Workload), Clients: c.Clients, Rate: c.Rate, Seed: c.Seed,
		Keys: c.Keys, Accounts: c.Accounts, Balance: 100, Redeliver: c.Redeliver, Restart: c.Restart}
}

// SnapshotTrailingLogs is the nodes' --trailing-logs when the snapshot
// nemesis runs: a checkpoint then takes all but this many entries out of
// the log, so a follower cut off for a few seconds must install one.
const SnapshotTrailingLogs = 64

// serveArgs are the flags every node runs with in a jepsen run. The
// snapshot threshold is set so high that raft never compacts the log on
// its own: only the snapshot nemesis does, on the nodes it chooses,
// keeping one node's log whole where it can (the committed log should
// hold every request id to resolve unknown outcomes). With the snapshot
// nemesis the trailing logs are short so that its checkpoints do compact.
// Shorter timeouts make failover quicker than the LAN defaults.
func (c Config) serveArgs() []string {
	args := []string{"--snapshot-threshold", "1000000000000", "--snapshot-interval", "1h",
		"--heartbeat-timeout", "500ms", "--election-timeout", "500ms", "--leader-lease-timeout", "250ms"}
	if c.snapshotNemesis() {
		args = append(args, "--trailing-logs", strconv.Itoa(SnapshotTrailingLogs))
	}
	return append(args, c.ServeArgs...)
}

func (c Config) snapshotNemesis() bool {
	names, _ := nemesis.Expand(c.Nemesis)
	for _, n := range names {
		if n == "snapshot" {
			return true
		}
	}
	return false
}

// trailingLogs is the --trailing-logs the nodes run with (the last one
// given wins, as in flag parsing); 0 when unknown.
func (c Config) trailingLogs() uint64 {
	var v uint64 = 10240 // raftnode's default
	args := c.serveArgs()
	for i, a := range args {
		var s string
		switch {
		case a == "--trailing-logs" && i+1 < len(args):
			s = args[i+1]
		case strings.HasPrefix(a, "--trailing-logs="):
			s = strings.TrimPrefix(a, "--trailing-logs=")
		default:
			continue
		}
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0
		}
		v = n
	}
	return v
}

// Args returns the command-line flags that reproduce this run (its seed,
// schedule and workload), writing into out.
func (c Config) Args(out string) []string {
	d := DefaultConfig()
	args := []string{"--nodes", strconv.Itoa(c.Nodes), "--duration", c.Duration.String(), "--workload", c.Workload,
		"--nemesis", c.Nemesis, "--rate", strconv.FormatFloat(c.Rate, 'g', -1, 64),
		"--clients", strconv.Itoa(c.Clients), "--seed", strconv.FormatUint(c.Seed, 10), "--out", out}
	if c.Faults != "" {
		args = append(args, "--faults", c.Faults)
	}
	if c.Bin != "" {
		args = append(args, "--bin", c.Bin)
	}
	durs := []struct {
		flag   string
		v, def time.Duration
	}{{"--op-timeout", c.OpTimeout, d.OpTimeout}, {"--fault-interval", c.Quiet, d.Quiet}, {"--fault-duration", c.Hold, d.Hold},
		{"--recovery-timeout", c.RecoveryTimeout, d.RecoveryTimeout}, {"--check-timeout", c.CheckTimeout, d.CheckTimeout}}
	for _, x := range durs {
		if x.v != x.def {
			args = append(args, x.flag, x.v.String())
		}
	}
	if c.Keys != d.Keys {
		args = append(args, "--keys", strconv.Itoa(c.Keys))
	}
	if c.Accounts != d.Accounts {
		args = append(args, "--accounts", strconv.Itoa(c.Accounts))
	}
	if c.Redeliver != d.Redeliver {
		args = append(args, "--redeliver", strconv.FormatFloat(c.Redeliver, 'g', -1, 64))
	}
	if c.Restart != d.Restart {
		args = append(args, "--restart", strconv.FormatFloat(c.Restart, 'g', -1, 64))
	}
	for _, a := range c.ServeArgs {
		args = append(args, "--serve-arg", a)
	}
	if c.TLS {
		args = append(args, "--tls")
	}
	return args
}

// Command is the shell command that reruns this run into out.
func (c Config) Command(out string) string {
	parts := []string{"cairn", "jepsen", "run"}
	for _, a := range c.Args(out) {
		parts = append(parts, shellQuote(a))
	}
	return strings.Join(parts, " ")
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '-' || r == '_' || r == '.' || r == '/' || r == ',' || r == ':' || r == '=' ||
			r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
