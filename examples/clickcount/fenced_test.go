//go:build unix

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/internal/testcluster"
)

// TestFencedInstanceStops runs two operator processes under one producer
// name. The first reads its input from a FIFO, so the test decides when it
// has a next batch to commit: it commits 10 batches, the second instance
// registers (fencing it) and runs to the end, then the first gets its next
// batch. That commit must fail as fenced and change nothing, and the first
// must exit non-zero saying so.
func TestFencedInstanceStops(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	clickcount := clickcountBinary(t)
	tc := testcluster.Start(t, 3, nil)
	cl := tc.Client()
	dir := t.TempDir()

	const producer, source, batch, total = "clicks", "clicks.txt", 100, 3000
	input := filepath.Join(dir, source)
	if err := writeInput(input, genConfig{Lines: total, Keys: 50, Seed: 7, Dist: "uniform"}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(input)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(data), "\n")[:total]
	fifo := filepath.Join(dir, "first.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	common := []string{"--producer", producer, "--source", source, "--batch", fmt.Sprint(batch), "--endpoints", strings.Join(tc.Endpoints(), ",")}

	first, err := startProc(dir, "first", clickcount, append([]string{"--input", fifo}, common...), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(first.kill)
	logs := func() string {
		return fmt.Sprintf("first stderr:\n%s\nfirst stdout:\n%s", tail(filepath.Join(dir, "first.err"), 10), tail(filepath.Join(dir, "first.out"), 10))
	}
	// Opening the write end blocks until the first instance opens its input.
	opened := make(chan *os.File, 1)
	go func() {
		if w, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			opened <- w
		}
	}()
	var w *os.File
	select {
	case w = <-opened:
	case <-first.done:
		t.Fatalf("first instance exited before opening its input\n%s", logs())
	case <-ctx.Done():
		t.Fatalf("first instance never opened its input\n%s", logs())
	}
	defer w.Close()
	feed := func(ls []string) {
		t.Helper()
		if _, err := io.WriteString(w, strings.Join(ls, "")); err != nil {
			t.Fatalf("feed the first instance: %v\n%s", err, logs())
		}
	}

	// The first instance commits 10 batches and waits for more input.
	feed(lines[:1000])
	if err := poll(ctx, 5*time.Millisecond, func() (bool, error) {
		if first.exited() {
			return false, fmt.Errorf("first instance exited early\n%s", logs())
		}
		off, err := committedOffset(ctx, cl, producer, source)
		return off == 1000, err
	}); err != nil {
		t.Fatalf("first instance did not commit offset 1000: %v", err)
	}

	// The second instance registers while the first runs, resumes at its
	// offset and finishes the input.
	second, err := startProc(dir, "second", clickcount, append([]string{"--input", input}, common...), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(second.kill)
	if code, err := second.wait(ctx); err != nil || code != exitOK {
		t.Fatalf("second instance: exit %d, %v; stderr:\n%s", code, err, tail(filepath.Join(dir, "second.err"), 10))
	}
	s2, err := operatorSummary(dir, "second")
	if err != nil {
		t.Fatal(err)
	}
	if s2.Epoch != 2 || s2.ResumedFrom != 1000 || s2.Offset != total || s2.Fenced != 0 {
		t.Fatalf("second instance: want epoch 2 resuming at 1000 and ending at %d, got %+v", total, s2)
	}
	before := clusterState(ctx, t, cl, producer)

	// The first instance's next batch: its commit must be fenced.
	feed(lines[1000 : 1000+batch])
	_ = w.Close()
	code, err := first.wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if code != exitFenced {
		t.Fatalf("first instance: exit %d, want %d (fenced)\n%s", code, exitFenced, logs())
	}
	if msg := tail(filepath.Join(dir, "first.err"), 5); !strings.Contains(msg, "fenced by a newer instance") {
		t.Errorf("first instance's message does not say it was fenced by a newer instance:\n%s", msg)
	}
	s1, err := operatorSummary(dir, "first")
	if err != nil {
		t.Fatal(err)
	}
	if s1.Epoch != 1 || s1.Commits != 10 || s1.Offset != 1000 || s1.Pending != batch || s1.Fenced != 1 {
		t.Errorf("first instance: want epoch 1, 10 commits to offset 1000, %d lines pending, 1 fenced commit; got %+v", batch, s1)
	}

	after := clusterState(ctx, t, cl, producer)
	if !reflect.DeepEqual(before, after) {
		t.Errorf("the fenced commit changed the cluster:\nbefore %+v\nafter  %+v", before, after)
	}
	if lost, dup, ex := exactCounts(ctx, t, cl, input, "clicks/"); lost != 0 || dup != 0 {
		t.Errorf("counters differ from the input: %d lost, %d duplicated; e.g. %s", lost, dup, strings.Join(ex, "; "))
	}
}

// state is what a commit could change: every counter and the producer's
// session record.
type state struct {
	Counters                map[string]int64
	Epoch, LastSeq, LastIdx uint64
	Offsets                 map[string]int64
}

func clusterState(ctx context.Context, t *testing.T, c *api.Client, producer string) state {
	t.Helper()
	got, bad, err := scanCounters(ctx, c, "clicks/")
	if err != nil || len(bad) > 0 {
		t.Fatalf("scan: %v %q", err, bad)
	}
	resp, err := c.GetOffsets(ctx, producer)
	if err != nil {
		t.Fatal(err)
	}
	s := state{Counters: got, Epoch: resp.GetEpoch(), LastSeq: resp.GetLastSeq(), LastIdx: resp.GetIndex(), Offsets: map[string]int64{}}
	for _, o := range resp.GetOffsets() {
		s.Offsets[o.GetSource()] = o.GetOffset()
	}
	return s
}
