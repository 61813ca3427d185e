package scenarios

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-db/cairn/jepsen"
	"github.com/cairn-db/cairn/jepsen/netfault"
)

// The scenario tests run real cairn processes. They build two binaries
// once: a normal one and a faultybuild one.
//
//	JEPSEN_SEEDS=1,2,3  seeds to run each scenario with (default: 1)
//	JEPSEN_LONG=1       also run the long scenarios (and the root ones when root)
//	JEPSEN_KEEP=1       keep the artifacts of passing runs too
var bins struct {
	dir, normal, faulty string
	err                 error
}

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "cairn-jepsen-bin-")
		if err != nil {
			bins.err = err
			return m.Run()
		}
		defer os.RemoveAll(dir)
		bins.dir = dir
		mod, err := jepsen.FindModule("")
		if err == nil {
			bins.normal, bins.faulty = filepath.Join(dir, "cairn"), filepath.Join(dir, "cairn-faulty")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			err = errors.Join(jepsen.Build(ctx, mod, bins.normal, false), jepsen.Build(ctx, mod, bins.faulty, true))
		}
		bins.err = err
		return m.Run()
	}()
	os.Exit(code)
}

func seeds(t *testing.T) []uint64 {
	env := os.Getenv("JEPSEN_SEEDS")
	if env == "" {
		return []uint64{1}
	}
	var out []uint64
	for _, f := range strings.Split(env, ",") {
		s, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
		if err != nil {
			t.Fatalf("JEPSEN_SEEDS: %v", err)
		}
		out = append(out, s)
	}
	return out
}

func binFor(t *testing.T, s Scenario) string {
	t.Helper()
	if bins.err != nil {
		t.Fatalf("building cairn: %v", bins.err)
	}
	if s.Faults != "" {
		return bins.faulty
	}
	return bins.normal
}

// outDir is kept when the test fails (failing runs leave their artifacts)
// or JEPSEN_KEEP is set.
func outDir(t *testing.T, name string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cairn-jepsen-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("JEPSEN_KEEP") != "" {
			t.Logf("artifacts kept in %s (open index.html)", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	return dir
}

func skipUnlessRunnable(t *testing.T, s Scenario) {
	t.Helper()
	if s.Long && os.Getenv("JEPSEN_LONG") == "" {
		t.Skip("long scenario: set JEPSEN_LONG=1")
	}
	if s.Root {
		if err := netfault.Probe(); err != nil {
			t.Skipf("needs packet filtering: %v", err)
		}
	}
}

// TestScenarios runs every scenario (through jepsen.Run) and checks its
// exit status. The planted-bug scenarios must be caught on every seed.
func TestScenarios(t *testing.T) {
	for _, s := range All {
		if s.Name == "skip-dedup" {
			continue // run through the command line below
		}
		t.Run(s.Name, func(t *testing.T) {
			skipUnlessRunnable(t, s)
			bin := binFor(t, s)
			for _, seed := range seeds(t) {
				out := outDir(t, fmt.Sprintf("%s-%d", s.Name, seed))
				var log bytes.Buffer
				cfg := s.Config(seed, out, bin)
				cfg.Log = &log
				res := jepsen.Run(context.Background(), cfg)
				if res.ExitCode != s.Expect {
					t.Errorf("seed %d: exit %d (%s), want %d\nrerun: %s\n%s", seed, res.ExitCode, res.Reason, s.Expect,
						cfg.Command(out+"-rerun"), log.String())
					continue
				}
				sum := res.Summary
				if sum.Ops.OK == 0 || len(sum.Timeline) == 0 {
					t.Errorf("seed %d: a run without successful operations or faults proves nothing: %+v, %d faults", seed, sum.Ops, len(sum.Timeline))
				}
				if s.Expect == jepsen.ExitAnomaly && len(sum.Anomalies) == 0 {
					t.Errorf("seed %d: exit 1 without anomalies", seed)
				}
				for _, f := range []string{"index.html", "summary.json", "history.jsonl", "latency.svg", "throughput.svg", "nodes/n1/node.log", "nodes/n1/raft-log.json"} {
					if _, err := os.Stat(filepath.Join(out, f)); err != nil {
						t.Errorf("seed %d: missing artifact: %v", seed, err)
					}
				}
				t.Logf("seed %d: %s, %d ops (%d unknown, %d resolved), %d faults, %d anomalies", seed, sum.Verdict,
					sum.Ops.Total, sum.Ops.Unknown, sum.Resolved.Committed+sum.Resolved.Absent, len(sum.Timeline), len(sum.Anomalies))
			}
		})
	}
}

// TestSkipDedupThroughCommandLine runs the skip-dedup scenario with
// `cairn jepsen run` itself and checks the exit status 1 path.
func TestSkipDedupThroughCommandLine(t *testing.T) {
	s, _ := ByName("skip-dedup")
	bin := binFor(t, s)
	for _, seed := range seeds(t) {
		out := outDir(t, fmt.Sprintf("cli-%d", seed))
		cfg := s.Config(seed, out, bin)
		cmd := exec.Command(bin, append([]string{"jepsen", "run", "-q"}, cfg.Args(out)...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("seed %d: %v, want exit status 1\nstdout:\n%s\nstderr:\n%s", seed, err, stdout.String(), stderr.String())
		}
		for _, want := range []string{"ANOMALY", "exactly-once/duplicate-increment", "rerun:      cairn jepsen run", "--seed " + strconv.FormatUint(seed, 10)} {
			if !strings.Contains(stdout.String(), want) {
				t.Errorf("seed %d: stdout lacks %q:\n%s", seed, want, stdout.String())
			}
		}
		if !strings.Contains(stderr.String(), "anomaly found") {
			t.Errorf("seed %d: stderr lacks the reason: %s", seed, stderr.String())
		}
	}
}

// TestCannotRun checks the exit status 2 path: the reason goes to stderr.
func TestCannotRun(t *testing.T) {
	bin := binFor(t, Scenario{})
	cmd := exec.Command(bin, "jepsen", "run", "-q", "--nemesis", "kill,meteor", "--out", t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(stderr.String(), `unknown nemesis "meteor"`) {
		t.Fatalf("got %v, stderr %q; want exit 2 naming the unknown nemesis", err, stderr.String())
	}
}
