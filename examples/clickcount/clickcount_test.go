package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/internal/testcluster"
)

func TestGenerateIsAFunctionOfItsConfig(t *testing.T) {
	gen := func(g genConfig) string {
		var b bytes.Buffer
		if err := generate(&b, g); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	for _, dist := range []string{"zipf", "uniform"} {
		g := genConfig{Lines: 5000, Keys: 300, Seed: 42, Dist: dist}
		a, b := gen(g), gen(g)
		if a != b {
			t.Fatalf("%s: same config, different inputs", dist)
		}
		lines := strings.Split(strings.TrimSuffix(a, "\n"), "\n")
		if len(lines) != 5000 {
			t.Fatalf("%s: %d lines, want 5000", dist, len(lines))
		}
		keys := map[string]bool{}
		for _, l := range lines {
			if len(l) != len("u000") || l[0] != 'u' {
				t.Fatalf("%s: bad key %q", dist, l)
			}
			keys[l] = true
		}
		if len(keys) < 100 || len(keys) > 300 {
			t.Fatalf("%s: %d distinct keys over 300 possible", dist, len(keys))
		}
		g.Seed++
		if gen(g) == a {
			t.Fatalf("%s: another seed gave the same input", dist)
		}
	}
}

// runCmd runs the program in process and returns its exit code and output.
func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code := run(ctx, args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func lastJSON(t *testing.T, out string, v any) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), v); err != nil {
		t.Fatalf("last line is not JSON: %v\n%s", err, out)
	}
}

// TestOperatorResumesAndVerifyCatchesMismatches runs the operator in
// process over a growing input (as if its source were a log being
// appended to), checks that each run resumes where the last one committed,
// and then tampers with the counters to prove --verify notices.
func TestOperatorResumesAndVerifyCatchesMismatches(t *testing.T) {
	tc := testcluster.Start(t, 3, nil)
	endpoints := strings.Join(tc.Endpoints(), ",")
	dir := t.TempDir()
	full := filepath.Join(dir, "full.txt")
	if err := writeInput(full, genConfig{Lines: 20_000, Keys: 300, Seed: 3, Dist: "uniform"}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(full)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	// The same source grows: 7,777 lines with two empty ones, then all of it.
	input := filepath.Join(dir, "clicks.txt")
	part := strings.Join(lines[:3000], "") + "\n" + strings.Join(lines[3000:7775], "") + "\n"
	if err := os.WriteFile(input, []byte(part), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--input", input, "--producer", "counter", "--batch", "700", "--endpoints", endpoints}

	code, out, errOut := runCmd(t, args...)
	if code != exitOK {
		t.Fatalf("first run: exit %d\n%s%s", code, out, errOut)
	}
	var s summary
	lastJSON(t, out, &s)
	if s.ResumedFrom != 0 || s.Offset != 7777 || s.Lines != 7777 || s.Skipped != 2 || s.Commits != 12 || s.Epoch != 1 {
		t.Fatalf("first run: want 7777 lines (2 empty) in 12 commits of 700, got %+v", s)
	}

	// The source grew: the next run starts where the first committed.
	full2 := part + strings.Join(lines[7775:], "")
	if err := os.WriteFile(input, []byte(full2), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCmd(t, args...)
	if code != exitOK {
		t.Fatalf("second run: exit %d\n%s%s", code, out, errOut)
	}
	lastJSON(t, out, &s)
	if s.ResumedFrom != 7777 || s.Offset != 20_002 || s.Lines != 20_002-7777 || s.Epoch != 2 {
		t.Fatalf("second run: want a resume at 7777 up to 20002, got %+v", s)
	}
	// Nothing new: a third run commits nothing.
	code, out, _ = runCmd(t, args...)
	lastJSON(t, out, &s)
	if code != exitOK || s.Commits != 0 || s.ResumedFrom != 20_002 {
		t.Fatalf("third run: exit %d, %+v", code, s)
	}

	verifyArgs := []string{"--verify", "--input", input, "--producer", "counter", "--endpoints", endpoints}
	var rep verifyReport
	code, out, errOut = runCmd(t, verifyArgs...)
	lastJSON(t, out, &rep)
	if code != exitOK || !rep.OK() || rep.WantTotal != 20_000 || rep.Lines != 20_002 || rep.Offset != 20_002 {
		t.Fatalf("verify after the runs: exit %d\n%s%s", code, out, errOut)
	}

	// A shorter input than the committed offset is not the same input.
	if err := os.WriteFile(input, []byte(part), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCmd(t, args...)
	if code != exitFailed || !strings.Contains(errOut, "not the same input?") {
		t.Fatalf("truncated input: exit %d, stderr %q", code, errOut)
	}
	if err := os.WriteFile(input, []byte(full2), 0o644); err != nil {
		t.Fatal(err)
	}

	// Tamper: one click lost on u042, two duplicated on u007, a counter the
	// input never mentions, and a counter holding bytes.
	cl := tc.Client()
	ctx := context.Background()
	if _, err := cl.Batch(ctx, api.AddOp([]byte("clicks/u042"), -1), api.AddOp([]byte("clicks/u007"), 2),
		api.AddOp([]byte("clicks/ghost"), 1), api.PutOp([]byte("clicks/junk"), []byte("x"))); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCmd(t, verifyArgs...)
	rep = verifyReport{}
	lastJSON(t, out, &rep)
	if code != exitFailed || rep.OK() {
		t.Fatalf("verify after tampering: exit %d, want %d\n%s", code, exitFailed, out)
	}
	if rep.Lost != 1 || rep.LostKeys != 1 || rep.Duplicated != 3 || rep.DupKeys != 2 || len(rep.NotInts) != 1 || len(rep.Examples) != 3 {
		t.Fatalf("verify after tampering: want 1 lost on u042, 3 duplicated on u007 and ghost, 1 non-integer; got %+v", rep)
	}
	if !strings.Contains(out, "u042: want") || !strings.Contains(out, "MISMATCH") {
		t.Fatalf("verify output does not name the mismatch:\n%s", out)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--input", "x"}, // no producer
		{"--input", "x", "--producer", "p", "--batch", "0"},
		{"--gen", "10"}, // no --out
		{"--gen", "10", "--out", "x", "--dist", "pareto"},
		{"--input", "x", "--producer", "p", "stray"},
	} {
		if code, _, _ := runCmd(t, args...); code != exitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, exitUsage)
		}
	}
}

// A wrong --input fails before registering the producer: registering would
// fence a running instance of it.
func TestMissingInputFailsBeforeRegistering(t *testing.T) {
	c, err := api.NewClient(api.DefaultClientConfig("127.0.0.1:1")) // nothing there: registering would fail otherwise
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sum, err := operate(context.Background(), c, operatorConfig{Input: filepath.Join(t.TempDir(), "missing.txt"),
		Source: "s", Producer: "p", Prefix: "clicks/", Batch: 10, Log: io.Discard})
	if !errors.Is(err, fs.ErrNotExist) || sum != nil {
		t.Fatalf("operate on a missing input: summary %v, err %v; want no summary and a not-exist error, before any call", sum, err)
	}
	if st := c.Stats(); st.Calls != 0 {
		t.Fatalf("%d calls made before the input was opened", st.Calls)
	}
}
