package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/cairn-db/cairn/internal/testcluster"
)

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.PerMinute = 300
	return cfg
}

// The reference itself: the generated stream has the properties the
// example claims (out of order, some views late, some stragglers still
// counted), and it is deterministic.
func TestReferenceOfGeneratedStream(t *testing.T) {
	cfg := testConfig()
	views := Generate(cfg)
	if fmt.Sprint(Generate(cfg)) != fmt.Sprint(views) {
		t.Fatal("Generate is not deterministic")
	}
	outOfOrder := 0
	for i := 1; i < len(views); i++ {
		if views[i].Time < views[i-1].Time {
			outOfOrder++
		}
	}
	batches := Batches(cfg, views)
	ref := Replay(cfg, views, batches)
	total := int64(0)
	for _, c := range ref.Closed {
		total += c.N
	}
	stragglers := 0
	for _, v := range views {
		if v.Arrival-v.Time >= cfg.OutOfOrder.Milliseconds() {
			stragglers++
		}
	}
	t.Logf("%d views, %d out of order, %d stragglers, %d late, %d windows", len(views), outOfOrder, stragglers, ref.Late, len(ref.Closed))
	if outOfOrder < len(views)/4 || ref.Late == 0 || ref.Late >= stragglers || int(total)+ref.Late != len(views) {
		t.Fatalf("stream: %d out of order, %d late of %d stragglers, %d counted + %d late != %d views",
			outOfOrder, ref.Late, stragglers, total, ref.Late, len(views))
	}
	if len(ref.Closed) != cfg.Minutes*cfg.Pages {
		t.Fatalf("%d windows closed, want %d", len(ref.Closed), cfg.Minutes*cfg.Pages)
	}
}

func TestClickstreamVerifies(t *testing.T) {
	c := testcluster.Start(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var log bytes.Buffer
	rep, err := Run(ctx, c.Client(), testConfig(), false, Hooks{}, &log)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rep.Print(&out)
	t.Log("\n" + out.String())
	if !rep.OK() || rep.Late == 0 || !strings.Contains(out.String(), "verify: OK") {
		t.Fatalf("not verified:\n%s", out.String())
	}
	// The verification can fail: a planted off-by-one in the reference's
	// lateness rule is caught.
	bad := rep.Config
	bad.Lateness -= time.Millisecond
	views := Generate(bad)
	ref := Replay(bad, views, Batches(bad, views))
	r2 := &Report{Config: rep.Config, Late: rep.Late, Delivered: rep.Delivered, Table: rep.Table, Starts: rep.Starts}
	r2.verify(ref, make([]int, len(ref.LatePerCommit)))
	if r2.OK() {
		t.Fatal("a wrong reference verified")
	}
	// A second run needs --drop.
	if _, err := Run(ctx, c.Client(), testConfig(), false, Hooks{}, &log); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("rerun without drop: %v", err)
	}
}

// The leader is stopped in the middle of the stream: the producer and the
// watcher carry on through the new leader, and every final result still
// equals the reference exactly.
func TestClickstreamLeaderStopMidStream(t *testing.T) {
	c := testcluster.Start(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := testConfig()
	cl := c.Client()
	stopped := ""
	n := len(Batches(cfg, Generate(cfg)))
	hooks := Hooks{AfterCommit: func(i int, _ int64) {
		if i == n/2 {
			l := c.Leader()
			stopped = l.ID
			c.StopMember(l)
		}
	}}
	var log bytes.Buffer
	rep, err := Run(ctx, cl, cfg, false, hooks, &log)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rep.Print(&out)
	if stopped == "" || !rep.OK() {
		t.Fatalf("stopped %q:\n%s", stopped, out.String())
	}
	if l := c.Leader(); l.ID == stopped {
		t.Fatalf("leader %s still leads", stopped)
	}
	t.Logf("stopped leader %s after commit %d of %d; client %+v", stopped, n/2, n, cl.Stats())
}

// TestStateFlat streams 20 minutes of event time (1-minute windows, 10s
// lateness, 5-minute retention) through a 3-node cluster and records, at
// each minute of watermark, the live Pebble keys of the table on the
// leader: window data ('w'), close index ('c') and watch log ('l'). After
// warm-up the counts stop growing: expired windows are evicted as fast as
// new ones open. docs/windows.md has the numbers.
func TestStateFlat(t *testing.T) {
	c := testcluster.Start(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := testConfig()
	cfg.Minutes, cfg.Pages, cfg.Retention = 20, 20, 5*time.Minute
	type sample struct {
		minute           int64
		data, index, log int
	}
	var series []sample
	l := c.Leader()
	last := int64(-1)
	hooks := Hooks{AfterCommit: func(_ int, wm int64) {
		m := (wm - cfg.Start) / 60_000
		if wm < cfg.Start || m == last || m > int64(cfg.Minutes) {
			return
		}
		last = m
		s := sample{minute: m}
		_ = l.Node.FSM.DB(func(db *pebble.DB) error {
			it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte("t"), UpperBound: []byte("u")})
			if err != nil {
				return err
			}
			defer it.Close()
			for ok := it.First(); ok; ok = it.Next() {
				switch it.Key()[1] {
				case 'w':
					s.data++
				case 'c':
					s.index++
				case 'l':
					s.log++
				}
			}
			return nil
		})
		series = append(series, s)
	}}
	var log bytes.Buffer
	rep, err := Run(ctx, c.Client(), cfg, false, hooks, &log)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		var out bytes.Buffer
		rep.Print(&out)
		t.Fatalf("not verified:\n%s", out.String())
	}
	t.Logf("%d views, %d pages, spec %s; live keys of the table on the leader by watermark minute:", rep.Views, cfg.Pages, cfg.Spec())
	t.Logf("| watermark (min) | window data | close index | watch log | total |")
	for _, s := range series {
		t.Logf("| %d | %d | %d | %d | %d |", s.minute, s.data, s.index, s.log, s.data+s.index+s.log)
	}
	// Windows live from their first event until end + lateness + retention
	// (5m10s) of watermark, which trails event time by 15s: at most 7 per
	// page (5 closed and retained, about 2 open). Each has a data and an
	// index key; retained closed ones a watch-log entry.
	const warmup = 7
	bound := cfg.Pages * (7*2 + 6)
	peak := 0
	for _, s := range series {
		total := s.data + s.index + s.log
		if s.minute >= warmup {
			peak = max(peak, total)
			if total > bound {
				t.Errorf("minute %d: %d keys, above the bound %d", s.minute, total, bound)
			}
		}
	}
	var atWarmup int
	for _, s := range series {
		if s.minute == warmup {
			atWarmup = s.data + s.index + s.log
		}
	}
	if atWarmup == 0 || peak > atWarmup+cfg.Pages*3 {
		t.Errorf("state grows after warm-up: %d keys at minute %d, peak %d later", atWarmup, warmup, peak)
	}
	if len(series) < cfg.Minutes {
		t.Errorf("only %d samples", len(series))
	}
}
