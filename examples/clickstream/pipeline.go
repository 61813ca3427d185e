package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/cairn-db/cairn/api"
	pb "github.com/cairn-db/cairn/api/cairnpb"
)

// Hooks let tests act during a run (e.g. stop the leader mid-stream).
type Hooks struct {
	// AfterCommit is called after commit i (0-based) was acknowledged, with
	// the watermark it carried.
	AfterCommit func(i int, watermark int64)
}

// Report is the outcome of a run.
type Report struct {
	Config  Config
	Views   int
	Commits int
	// Late as counted by the table, and by the reference.
	Late, RefLate int
	// Delivered are the final results the watcher received, in order.
	Delivered []api.ClosedWindow
	// Table holds the per-window counts read back from the table (windows
	// still retained), by page and window start.
	Table map[string]map[int64]int64
	// Starts are the window starts of the stream, in order.
	Starts []int64
	// Mismatches between cairn and the reference; empty when verified.
	Mismatches []string
	Elapsed    time.Duration
}

// OK reports whether cairn agreed with the reference everywhere.
func (r *Report) OK() bool { return len(r.Mismatches) == 0 }

func (r *Report) mismatch(format string, args ...any) {
	if len(r.Mismatches) < 20 {
		r.Mismatches = append(r.Mismatches, fmt.Sprintf(format, args...))
	} else if len(r.Mismatches) == 20 {
		r.Mismatches = append(r.Mismatches, "(more mismatches omitted)")
	}
}

// Run creates the table, streams the generated views into it through one
// exactly-once producer (window events plus watermarks), watches the final
// results from the first one, reads the per-minute counts back, and
// verifies everything against the locally replayed reference.
func Run(ctx context.Context, c *api.Client, cfg Config, drop bool, hooks Hooks, log io.Writer) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	begin := time.Now()
	views := Generate(cfg)
	batches := Batches(cfg, views)
	ref := Replay(cfg, views, batches)
	rep := &Report{Config: cfg, Views: len(views), Commits: len(batches), RefLate: ref.Late, Table: map[string]map[int64]int64{}}

	if _, err := c.DescribeTable(ctx, cfg.Table); err == nil {
		if !drop {
			return nil, fmt.Errorf("table %q already exists: drop it (cairn table drop %s) or pass --drop", cfg.Table, cfg.Table)
		}
		if err := c.DropTable(ctx, cfg.Table); err != nil {
			return nil, fmt.Errorf("drop table: %w", err)
		}
	} else if !errors.Is(err, api.ErrNotFound) {
		return nil, fmt.Errorf("describe table: %w", err)
	}
	spec, err := c.CreateTable(ctx, cfg.Table, cfg.Spec())
	if err != nil {
		return nil, fmt.Errorf("create table: %w", err)
	}
	info, err := c.DescribeTable(ctx, cfg.Table)
	if err != nil {
		return nil, fmt.Errorf("describe table: %w", err)
	}
	fmt.Fprintf(log, "clickstream: table %s: %s\n", cfg.Table, spec)

	// The watcher: every final result, from the first, exactly once.
	var (
		mu        sync.Mutex
		delivered []api.ClosedWindow
	)
	progress := make(chan struct{}, 1)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watchErr := make(chan error, 1)
	go func() {
		watchErr <- c.Watch(wctx, cfg.Table, api.Position{}, func(cw api.ClosedWindow) error {
			mu.Lock()
			delivered = append(delivered, cw)
			mu.Unlock()
			select {
			case progress <- struct{}{}:
			default:
			}
			return nil
		})
	}()

	// The producer. Its name includes the table's creation index, so that
	// offsets of an earlier run never apply to this table.
	p, err := c.RegisterProducer(ctx, fmt.Sprintf("clickstream/%s/%d", cfg.Table, info.Created), api.DefaultProducerOptions())
	if err != nil {
		return nil, fmt.Errorf("register producer: %w", err)
	}
	late := make([]int, len(batches))
	for i, b := range batches {
		ops := make([]*pb.Op, 0, b.To-b.From)
		for _, v := range views[b.From:b.To] {
			ops = append(ops, api.WindowAddOp(cfg.Table, []byte(v.Page), v.Time, 1))
		}
		wm := &pb.Watermark{Source: "views", Time: b.Watermark, Done: b.Done}
		r, err := p.Commit(ctx, ops, map[string]int64{"views": int64(b.To)}, wm)
		if err != nil {
			return nil, fmt.Errorf("commit %d of %d: %w", i+1, len(batches), err)
		}
		late[i] = int(r.Late)
		if hooks.AfterCommit != nil {
			hooks.AfterCommit(i, b.Watermark)
		}
	}

	// Wait until the watcher has every result the table published.
	info, err = c.DescribeTable(ctx, cfg.Table)
	if err != nil {
		return nil, fmt.Errorf("describe table: %w", err)
	}
	rep.Late = int(info.Late)
	for {
		mu.Lock()
		n := len(delivered)
		mu.Unlock()
		if uint64(n) >= info.Closed {
			break
		}
		select {
		case <-progress:
		case err := <-watchErr:
			return nil, fmt.Errorf("watch: %w", err)
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for %d final results, have %d: %w", info.Closed, n, ctx.Err())
		}
	}
	stopWatch()
	if err := <-watchErr; !errors.Is(err, context.Canceled) {
		return nil, fmt.Errorf("watch: %w", err)
	}
	rep.Delivered = delivered

	// Read the per-window counts back from the table.
	size := cfg.Window.Milliseconds()
	for s := floorDiv(cfg.Start, size) * size; s < cfg.Start+int64(cfg.Minutes)*60_000; s += size {
		rep.Starts = append(rep.Starts, s)
		var tok []byte
		for {
			page, next, err := c.GetWindowKeys(ctx, cfg.Table, s, s+size, tok, 0)
			if err != nil {
				return nil, fmt.Errorf("window keys at %d: %w", s, err)
			}
			for _, w := range page {
				if rep.Table[string(w.Key)] == nil {
					rep.Table[string(w.Key)] = map[int64]int64{}
				}
				rep.Table[string(w.Key)][s] = w.Value.Int
				if !w.Closed {
					rep.mismatch("window %s [%d,%d) is still open after the final watermark", w.Key, w.Start, w.End)
				}
			}
			if next == nil {
				break
			}
			tok = next
		}
	}
	rep.verify(ref, late)
	rep.Elapsed = time.Since(begin)
	return rep, nil
}

// verify compares what cairn did with the reference.
func (r *Report) verify(ref Reference, late []int) {
	if r.Late != ref.Late {
		r.mismatch("late views: table %d, reference %d", r.Late, ref.Late)
	}
	for i := range late {
		if late[i] != ref.LatePerCommit[i] {
			r.mismatch("commit %d: %d late views, reference %d", i, late[i], ref.LatePerCommit[i])
		}
	}
	// The watch: the reference's closed windows, in order, each once.
	var prev api.Position
	for i, d := range r.Delivered {
		if !prev.Less(d.Position) {
			r.mismatch("watch result %d at position %s, not after %s", i, d.Position, prev)
		}
		prev = d.Position
		if i < len(ref.Closed) {
			got := Count{string(d.Key), d.Start, d.End, d.Value.Int}
			if got != ref.Closed[i] {
				r.mismatch("watch result %d: %v, reference %v", i, got, ref.Closed[i])
			}
		}
	}
	if len(r.Delivered) != len(ref.Closed) {
		r.mismatch("watch delivered %d final results, reference %d", len(r.Delivered), len(ref.Closed))
	}
	// The table: every retained window holds the reference count; evicted
	// ones are gone.
	want := map[string]map[int64]int64{}
	for _, c := range ref.Closed {
		if ref.Retained(r.Config, c.End) {
			if want[c.Page] == nil {
				want[c.Page] = map[int64]int64{}
			}
			want[c.Page][c.Start] = c.N
		}
	}
	for _, page := range sortedKeys(want, r.Table) {
		for _, s := range r.Starts {
			if g, w := r.Table[page][s], want[page][s]; g != w {
				r.mismatch("table %s at %d: %d views, reference %d", page, s, g, w)
			}
		}
	}
}

func sortedKeys(ms ...map[string]map[int64]int64) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range ms {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	sort.Strings(out)
	return out
}

// Print writes the per-minute counts read from the table, the late count
// and the verification outcome.
func (r *Report) Print(w io.Writer) {
	cfg := r.Config
	// Pages in generation order (most viewed first), then any others.
	var pages []string
	for i := 0; i < cfg.Pages; i++ {
		if _, ok := r.Table[PageName(i)]; ok {
			pages = append(pages, PageName(i))
		}
	}
	for _, p := range sortedKeys(r.Table) {
		if !slices.Contains(pages, p) {
			pages = append(pages, p)
		}
	}
	fmt.Fprintf(w, "clickstream: %d page views over %d minutes of event time, %d pages, seed %d, %d commits\n",
		r.Views, cfg.Minutes, cfg.Pages, cfg.Seed, r.Commits)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "window start (UTC)\t%s\ttotal\t\n", strings.Join(pages, "\t"))
	for _, s := range r.Starts {
		row := []string{time.UnixMilli(s).UTC().Format("15:04:05")}
		total := int64(0)
		for _, p := range pages {
			n, ok := r.Table[p][s]
			total += n
			if ok {
				row = append(row, fmt.Sprint(n))
			} else {
				row = append(row, "-")
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t\n", strings.Join(row, "\t"), total)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "late views (not counted): %d (reference %d)\n", r.Late, r.RefLate)
	fmt.Fprintf(w, "watch: %d final window results delivered\n", len(r.Delivered))
	if r.OK() {
		fmt.Fprintf(w, "verify: OK: table, late count and watch results equal the reference (%v)\n", r.Elapsed.Round(time.Millisecond))
		return
	}
	fmt.Fprintf(w, "verify: FAILED, %d mismatches:\n", len(r.Mismatches))
	for _, m := range r.Mismatches {
		fmt.Fprintln(w, "  "+m)
	}
}
