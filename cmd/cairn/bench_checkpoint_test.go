package main

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/internal/testcluster"
)

// steadyLoad is a synthetic write load of 10 Puts per bucket for dur
// (1,000 Puts/s with the tests' 10 ms buckets).
// everyFourSeconds is ten create calls of 100 ms, at 2 s, 6 s, ... 38 s.
func everyFourSeconds() []ckptSpan {
	var spans []ckptSpan
	for i := range 10 {
		from := time.Duration(2+4*i) * time.Second
		spans = append(spans, ckptSpan{from, from + 100*time.Millisecond})
	}
	return spans
}

// setRate sets the Puts per bucket between from and to.
func setRate(counts []int64, bucket, from, to time.Duration, v int64) {
	for b := int(from / bucket); b < int(to/bucket); b++ {
		counts[b] = v
	}
}

func steadyLoad(dur, bucket time.Duration) []int64 {
	counts := make([]int64, int(dur/bucket)+1)
	for i := range counts {
		counts[i] = 10
	}
	return counts
}

// A synthetic write load: 1,000 Puts/s, down to 400/s while each of two
// create calls runs (200 ms and 400 ms), normal right after.
func TestCkptLossArithmetic(t *testing.T) {
	const bucket = 10 * time.Millisecond
	dur := 20 * time.Second
	counts := steadyLoad(dur, bucket)
	spans := []ckptSpan{{5 * time.Second, 5200 * time.Millisecond}, {12 * time.Second, 12400 * time.Millisecond}}
	for _, s := range spans {
		for b := int(s.From / bucket); b < int(s.To/bucket); b++ {
			counts[b] = 4
		}
	}
	r := ckptLoss(counts, bucket, spans, dur)
	near := func(name string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-6*math.Max(1, math.Abs(want)) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	near("baseline", r.BaselineOpsSec, 1000)
	near("during", r.DuringOpsSec, 400)
	near("loss %", r.LossPct, 60)
	near("after loss %", r.AfterLossPct, 0)
	// 0.6 of 200 ms and of 400 ms: 0.18 s of baseline writes per create,
	// with or without the 500 ms after (nothing lost there).
	near("lost per create", r.LostSec, 0.18)
	near("lost per create with after", r.LostWithAfterSec, 0.18)
	// 360 Puts lost in the 18.8 s the run loss covers.
	near("run loss %", r.RunLossPct, 100*360.0/18800)
	if r.Creates != 2 || len(r.AroundOpsSec) != 24 {
		t.Errorf("creates %d, %d bins around them", r.Creates, len(r.AroundOpsSec))
	}
	// The first 50 ms bin after a create starts (bin 4: 200 ms before it
	// come first) is inside both calls.
	near("around[4]", r.AroundOpsSec[4], 400)
	near("around[0]", r.AroundOpsSec[0], 1000)
}

// The same cost spread over a call twice as long halves the loss rate
// during the call but not the Puts lost per create.
func TestCkptLossPerCreateIgnoresDilution(t *testing.T) {
	const bucket = 10 * time.Millisecond
	dur := 20 * time.Second
	run := func(callLen time.Duration, perBucket int64) *ckptLoadResult {
		counts := steadyLoad(dur, bucket)
		s := ckptSpan{8 * time.Second, 8*time.Second + callLen}
		for b := int(s.From / bucket); b < int(s.To/bucket); b++ {
			counts[b] = perBucket
		}
		return ckptLoss(counts, bucket, []ckptSpan{s}, dur)
	}
	short, long := run(200*time.Millisecond, 4), run(400*time.Millisecond, 7)
	if !(long.LossPct < short.LossPct) {
		t.Fatalf("loss %% %v (long call) vs %v (short): want the longer call to look better by percentage", long.LossPct, short.LossPct)
	}
	if math.Abs(long.LostSec-short.LostSec) > 1e-9 {
		t.Fatalf("lost per create %v (long) vs %v (short): want equal", long.LostSec, short.LostSec)
	}
}

// One create caught in a long stall (nothing completes for 2 s) dominates
// the totals; the per-create medians show the nine ordinary ones.
func TestCkptLossMedianResistsOneStall(t *testing.T) {
	const bucket = 10 * time.Millisecond
	dur := 60 * time.Second
	counts := steadyLoad(dur, bucket)
	var spans []ckptSpan
	for i := 0; i < 10; i++ {
		from := time.Duration(4+5*i) * time.Second
		to, per := from+100*time.Millisecond, int64(8) // 20% below the baseline
		if i == 3 {
			to, per = from+2*time.Second, 0
		}
		for b := int(from / bucket); b < int(to/bucket); b++ {
			counts[b] = per
		}
		spans = append(spans, ckptSpan{from, to})
	}
	r := ckptLoss(counts, bucket, spans, dur)
	if r.LossPct < 70 {
		t.Fatalf("total loss during the calls %.1f%%: want the stall to dominate", r.LossPct)
	}
	if math.Abs(r.MedianLossPct-20) > 1e-6 || math.Abs(r.MedianLostSec-0.02) > 1e-9 {
		t.Fatalf("median loss %.3f%%, %.4fs lost: want 20%%, 0.02s", r.MedianLossPct, r.MedianLostSec)
	}
}

// The control windows see the load where no create runs: on a load that
// dips only during the calls they report no loss; a dip planted midway
// between creates shows in them and not in the creates' own medians.
func TestCkptLossControlWindows(t *testing.T) {
	const bucket = 10 * time.Millisecond
	dur := 40 * time.Second
	spans := everyFourSeconds()
	dip := func(counts []int64, from, to time.Duration) {
		setRate(counts, bucket, from, to, 4) // 60% below the baseline
	}
	during := steadyLoad(dur, bucket)
	for _, s := range spans {
		dip(during, s.From, s.To)
	}
	r := ckptLoss(during, bucket, spans, dur)
	// Every create but the last (whose midway point is too close to the
	// run's end) has a control window 2 s after its start.
	if r.Controls != 9 || math.Abs(r.MedianLossPct-60) > 1e-6 || math.Abs(r.ControlMedianLossPct) > 1e-6 || math.Abs(r.ControlMedianLostSec) > 1e-9 ||
		math.Abs(r.PairedLossPct-60) > 1e-6 {
		t.Fatalf("dip during the calls: %d controls, median loss %.2f%%, control %.2f%% (%.4fs), paired %.2f%%: want 9, 60%%, 0%%, 0s, 60%%",
			r.Controls, r.MedianLossPct, r.ControlMedianLossPct, r.ControlMedianLostSec, r.PairedLossPct)
	}
	between := steadyLoad(dur, bucket)
	for i := range spans[:9] {
		mid := spans[i].To + (spans[i+1].From-spans[i].To)/2
		dip(between, mid-50*time.Millisecond, mid+50*time.Millisecond)
	}
	r = ckptLoss(between, bucket, spans, dur)
	// The dips are in the baseline too (they are more than 1 s from any
	// create), which they pull a little below 1,000/s.
	b := r.BaselineOpsSec
	if wantCreate, wantCtl := 100*(1-1000/b), 100*(1-400/b); b >= 1000 || math.Abs(r.MedianLossPct-wantCreate) > 1e-6 || math.Abs(r.ControlMedianLossPct-wantCtl) > 1e-6 ||
		math.Abs(r.PairedLossPct-100*(1-1000.0/400)) > 1e-6 {
		t.Fatalf("dip between the calls: baseline %.1f/s, median loss %.2f%%, control %.2f%%, paired %.2f%%: want %.2f%%, %.2f%%, -150%%",
			b, r.MedianLossPct, r.ControlMedianLossPct, r.PairedLossPct, wantCreate, wantCtl)
	}
}

// The one-second view counts what a create costs after its call returns,
// which the call windows miss, against a second midway to the next create.
func TestCkptLossSecondWindows(t *testing.T) {
	const bucket = 10 * time.Millisecond
	dur := 40 * time.Second
	spans := everyFourSeconds()
	after := steadyLoad(dur, bucket)
	for _, s := range spans {
		setRate(after, bucket, s.To, s.To+500*time.Millisecond, 5) // half the rate for 500 ms after each call
	}
	r := ckptLoss(after, bucket, spans, dur)
	// The last create's midway second would end after the run.
	if r.SecondPairs != 9 || math.Abs(r.SecondPairedLossPct-25) > 1e-6 || math.Abs(r.MedianLossPct) > 1e-6 {
		t.Fatalf("dip after the calls: %d second pairs, %.2f%% lost in the seconds, %.2f%% in the calls; want 9, 25%%, 0%%",
			r.SecondPairs, r.SecondPairedLossPct, r.MedianLossPct)
	}
	mid := steadyLoad(dur, bucket)
	for i := range spans[:9] {
		m := spans[i].From + (spans[i+1].From-spans[i].From)/2
		setRate(mid, bucket, m, m+time.Second, 5)
	}
	if r := ckptLoss(mid, bucket, spans, dur); r.SecondPairs != 9 || math.Abs(r.SecondPairedLossPct+100) > 1e-6 {
		t.Fatalf("dip in the midway seconds: %d pairs, %.2f%%; want 9, -100%%", r.SecondPairs, r.SecondPairedLossPct)
	}
}

// A load with no create (interrupted before the first) prints no loss
// figures: a median over no creates is not 0%.
func TestPrintCkptBenchWithoutCreates(t *testing.T) {
	var b strings.Builder
	printCkptBench(&b, &ckptBenchResult{ValueSize: 1024, Load: &ckptLoadResult{Clients: 16, DurationSec: 30, BaselineOpsSec: 39, RunLossPct: 3.1}})
	out := b.String()
	if !strings.Contains(out, "no checkpoint was taken during the load (39 Puts/s)") || strings.Contains(out, "loss") {
		t.Fatalf("output:\n%s", out)
	}
}

// A paced write load sends no more Puts than its schedule allows (a
// closed loop against an in-process node sends thousands a second), and
// about as many as it asks for.
func TestCkptWriteLoadPaced(t *testing.T) {
	c := testcluster.Start(t, 1, nil)
	defer c.Stop()
	c.Leader()
	cfg := ckptBenchConfig{WriteClients: 4, WriteRate: 200, WriteDuration: 2 * time.Second,
		CreateEvery: time.Hour, ValueSize: 16, Trace: filepath.Join(t.TempDir(), "trace.json")}
	create := func() (*api.CreatedCheckpoint, time.Duration, error) { return nil, 0, nil }
	if _, err := ckptWriteLoad(context.Background(), c.Client(), cfg, 100, create, os.Getpid()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(cfg.Trace)
	if err != nil {
		t.Fatal(err)
	}
	var tr ckptTrace
	if err := json.Unmarshal(b, &tr); err != nil {
		t.Fatal(err)
	}
	var puts int64
	for _, n := range tr.Counts {
		puts += n
	}
	// Each client's Puts are due at most every 4/200 s from its offset:
	// at most 100 + 1 in 2 s.
	if limit := int64(4 * 101); puts > limit {
		t.Fatalf("%d Puts in 2 s at 200/s (at most %d scheduled)", puts, limit)
	}
	if puts < 200 {
		t.Fatalf("%d Puts in 2 s at 200/s: the pacing starves the load", puts)
	}
}

func TestDirSizeCountsHardLinksOnce(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "a"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a", "table"), make([]byte, 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "other"), make([]byte, 10), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(dir, "a", "table"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	want := int64(1010)
	if _, _, ok := fileID(mustStat(t, filepath.Join(dir, "link"))); !ok {
		want = 2010 // no inode numbers: each name counts
	}
	if got := dirSize(dir); got != want {
		t.Fatalf("dirSize = %d, want %d", got, want)
	}
}

func mustStat(t *testing.T, path string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}
