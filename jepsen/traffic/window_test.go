package traffic

import (
	"testing"

	"github.com/cairn-db/cairn/linearizability"
	"github.com/cairn-db/cairn/window"
)

// The spec the workload creates is the one its checker is told about.
func TestWindowSpecMatchesCheckOptions(t *testing.T) {
	spec, err := window.ParseSpec(WindowSpec())
	if err != nil {
		t.Fatal(err)
	}
	o := newWindow(DefaultConfig(linearizability.KindWindow), nil).CheckOptions().Window
	if spec.Kind != window.Tumbling || spec.Agg != window.AggSum || spec.Size != o.Size ||
		spec.AllowedLateness != o.Lateness || spec.Retention != o.Retention || !o.NoLate || !o.Watched {
		t.Fatalf("spec %+v, options %+v", spec, o)
	}
	if windowDisorder.Milliseconds() >= o.Lateness {
		t.Fatalf("disorder %v not below the lateness %d ms", windowDisorder, o.Lateness)
	}
}

// Events are at or above the watermark and at most the disorder behind
// now, and the values of one (key, window) are 4^0, 4^1, …: distinct and
// each dividing the next, so sums decode; a full window is skipped.
func TestWindowEventsAreIdentifiable(t *testing.T) {
	cfg := DefaultConfig(linearizability.KindWindow)
	cfg.Keys = 2
	w := newWindow(cfg, nil)
	r := ClientRand(1, 0)
	const now = 1_000_000
	wm := now - windowDisorder.Milliseconds()/2
	seen := map[windowSlot][]int64{}
	for i := 0; i < 200; i++ {
		for _, e := range w.events(r, now, wm, 3) {
			if e.Time < wm || e.Time > now {
				t.Fatalf("event time %d outside [%d, %d]", e.Time, wm, now)
			}
			s := windowSlot{e.Key, windowStart(e.Time)}
			seen[s] = append(seen[s], e.Value)
		}
	}
	total := 0
	for s, vs := range seen {
		total += len(vs)
		for i, v := range vs {
			if v != int64(1)<<(2*i) {
				t.Fatalf("window %v: value %d is event %d, want 4^%d", s, v, i, i)
			}
		}
		if len(vs) > windowSlots {
			t.Fatalf("window %v holds %d events", s, len(vs))
		}
	}
	// Two keys, at most two windows each in [wm, now]: full after 4*31.
	if total > 4*windowSlots || w.full != 600-total {
		t.Fatalf("%d events handed out, %d dropped", total, w.full)
	}
}

func TestWindowStart(t *testing.T) {
	for _, c := range [][2]int64{{0, 0}, {999, 0}, {1000, 1000}, {-1, -1000}, {-1000, -1000}} {
		if got := windowStart(c[0]); got != c[1] {
			t.Fatalf("windowStart(%d) = %d, want %d", c[0], got, c[1])
		}
	}
}
