package main

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/cairn-db/cairn/window"
)

// Config describes one run: the generated clickstream, the table, and how
// the producer batches and watermarks it.
type Config struct {
	Table string
	Seed  uint64
	// Minutes of event time, PerMinute page views in each, over Pages pages
	// (skewed: page i gets weight 1/(i+1)).
	Minutes, PerMinute, Pages int
	// Start is the event time of the stream's beginning (Unix ms).
	Start int64

	// Table spec: tumbling Window count lateness=Lateness retention=Retention.
	Window, Lateness, Retention time.Duration

	// OutOfOrder bounds the usual delay between a view's event time and its
	// arrival; the producer's watermark is the largest event time seen
	// minus OutOfOrder. LateFraction of the views are stragglers delayed by
	// OutOfOrder plus up to 3 minutes more: most of those arrive after their
	// window closed and are counted as late, not in the window.
	OutOfOrder   time.Duration
	LateFraction float64

	// Batch views per producer commit.
	Batch int
}

// DefaultConfig is the documented run: 10 minutes, 600 views a minute over
// 6 pages, 1-minute windows with 10s allowed lateness.
func DefaultConfig() Config {
	return Config{Table: "pageviews", Seed: 1, Minutes: 10, PerMinute: 600, Pages: 6,
		Start:  time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC).UnixMilli(),
		Window: time.Minute, Lateness: 10 * time.Second, Retention: time.Hour,
		OutOfOrder: 15 * time.Second, LateFraction: 0.03, Batch: 100}
}

// Validate reports an unusable configuration.
func (c Config) Validate() error {
	switch {
	case c.Table == "":
		return fmt.Errorf("table name is empty")
	case c.Minutes < 1 || c.PerMinute < 1 || c.Pages < 1 || c.Batch < 1:
		return fmt.Errorf("minutes, per-minute, pages and batch must be >= 1")
	case c.Window < time.Millisecond || c.Window%time.Millisecond != 0:
		return fmt.Errorf("window must be a whole number of milliseconds, at least 1ms")
	case c.Lateness < 0 || c.Retention < 0 || c.OutOfOrder < 0:
		return fmt.Errorf("lateness, retention and out-of-order must be >= 0")
	case c.LateFraction < 0 || c.LateFraction > 1:
		return fmt.Errorf("late fraction must be in [0, 1]")
	}
	return nil
}

// Spec is the table's window spec.
func (c Config) Spec() string {
	return fmt.Sprintf("tumbling %s count lateness=%s retention=%s", dur(c.Window), dur(c.Lateness), dur(c.Retention))
}

func dur(d time.Duration) string { return window.FormatDuration(d.Milliseconds()) }

var pageNames = []string{"/home", "/search", "/product", "/cart", "/checkout", "/help", "/account", "/blog"}

// PageName names page i.
func PageName(i int) string {
	if i < len(pageNames) {
		return pageNames[i]
	}
	return fmt.Sprintf("/page-%d", i)
}

// View is one page view.
type View struct {
	Page    string
	Time    int64 // event time, Unix ms
	Arrival int64 // when the producer sees it
}

// Generate returns the views in arrival order. It is a pure function of c.
func Generate(c Config) []View {
	rng := rand.New(rand.NewPCG(c.Seed, c.Seed^0x9e3779b97f4a7c15))
	cum := make([]float64, c.Pages)
	total := 0.0
	for i := range cum {
		total += 1 / float64(i+1)
		cum[i] = total
	}
	ooo := c.OutOfOrder.Milliseconds()
	out := make([]View, 0, c.Minutes*c.PerMinute)
	for m := 0; m < c.Minutes; m++ {
		for i := 0; i < c.PerMinute; i++ {
			t := c.Start + int64(m)*60_000 + rng.Int64N(60_000)
			p := sort.SearchFloat64s(cum, rng.Float64()*total)
			delay := int64(0)
			if ooo > 0 {
				delay = rng.Int64N(ooo)
			}
			if rng.Float64() < c.LateFraction {
				delay = ooo + rng.Int64N(180_000)
			}
			out = append(out, View{Page: PageName(min(p, c.Pages-1)), Time: t, Arrival: t + delay})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Arrival < out[j].Arrival })
	return out
}

// Batch is one producer commit: views[From:To] and the watermark sent with them.
type Batch struct {
	From, To  int
	Watermark int64
	Done      bool // the final, flushing watermark
}

// Batches cuts views into commits. Each carries the producer's watermark:
// the largest event time seen so far minus OutOfOrder. A last commit
// without views sends a watermark at the end of the last window plus the
// lateness, so that every window closes, and marks the source done.
func Batches(c Config, views []View) []Batch {
	var out []Batch
	maxT := int64(-1 << 63)
	ooo := c.OutOfOrder.Milliseconds()
	for from := 0; from < len(views); from += c.Batch {
		to := min(from+c.Batch, len(views))
		for _, v := range views[from:to] {
			maxT = max(maxT, v.Time)
		}
		out = append(out, Batch{From: from, To: to, Watermark: maxT - ooo})
	}
	size := c.Window.Milliseconds()
	lastEnd := floorDiv(maxT, size)*size + size
	return append(out, Batch{From: len(views), To: len(views), Watermark: lastEnd + c.Lateness.Milliseconds(), Done: true})
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// Count is the number of views of a page in one window.
type Count struct {
	Page       string
	Start, End int64
	N          int64
}

func (c Count) String() string { return fmt.Sprintf("%s[%d,%d)=%d", c.Page, c.Start, c.End, c.N) }

// Reference is what the table must hold, computed locally by replaying
// the commits with the table's rules.
type Reference struct {
	// Closed lists every window that closed, in publication order.
	Closed []Count
	// Late is the number of views rejected as late; LatePerCommit per batch.
	Late          int
	LatePerCommit []int
	// Watermark is the table watermark after the last commit.
	Watermark int64
}

// Replay computes the reference: a view is applied at the table watermark
// left by the commits before its own, and is late iff that watermark is at
// or past its window's end + lateness. The table watermark is the
// producer's (one source); after each commit the windows whose end +
// lateness it reached close, ordered by close time, then page, then start.
func Replay(c Config, views []View, batches []Batch) Reference {
	size, late := c.Window.Milliseconds(), c.Lateness.Milliseconds()
	type win struct {
		page  string
		start int64
	}
	open := map[win]int64{}
	r := Reference{Watermark: -1 << 63}
	for _, b := range batches {
		n := 0
		for _, v := range views[b.From:b.To] {
			start := floorDiv(v.Time, size) * size
			if r.Watermark >= start+size+late {
				n++
				continue
			}
			open[win{v.Page, start}]++
		}
		r.Late += n
		r.LatePerCommit = append(r.LatePerCommit, n)
		r.Watermark = max(r.Watermark, b.Watermark)
		var closed []Count
		for w, cnt := range open {
			if r.Watermark >= w.start+size+late {
				closed = append(closed, Count{w.page, w.start, w.start + size, cnt})
				delete(open, w)
			}
		}
		sort.Slice(closed, func(i, j int) bool {
			a, b := closed[i], closed[j]
			if a.End != b.End {
				return a.End < b.End
			}
			if a.Page != b.Page {
				return a.Page < b.Page
			}
			return a.Start < b.Start
		})
		r.Closed = append(r.Closed, closed...)
	}
	return r
}

// Retained reports whether window [start, end) is still stored (not
// evicted) at the reference's final watermark.
func (r Reference) Retained(c Config, end int64) bool {
	return r.Watermark < end+c.Lateness.Milliseconds()+c.Retention.Milliseconds()
}
