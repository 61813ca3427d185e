package window

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// The property test drives the Engine (over MemState) with random
// out-of-order event streams and random watermark progress derived from
// producers going idle and active, and compares every outcome with refModel,
// a brute-force reference that recomputes all windows from the complete list
// of accepted events: lateness decisions, effects, closed windows with
// their final states (byte for byte) and results, expired windows, and the
// complete stored state and close index.

// propertySeeds are the seeds TestProperty runs; each picks its own spec.
var propertySeeds = []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 42, 1337, 2024, 65537, 99991, 123456789}

type propOp struct {
	event    *Event
	producer int // watermark op: producer index
	pwm      int64
	status   ProducerStatus
}

func genSpec(rng *rand.Rand, seed uint64) Spec {
	pick := func(xs ...int64) int64 { return xs[rng.IntN(len(xs))] }
	s := Spec{Agg: AggKind(1 + rng.IntN(6)), AllowedLateness: pick(0, 0, 5, 10), Retention: pick(0, 0, 5, 20, 50)}
	switch seed % 3 {
	case 0:
		s.Kind, s.Size = Tumbling, pick(5, 10, 20)
	case 1:
		s.Kind, s.Size = Hopping, pick(10, 20, 30)
		s.Slide = pick(5, 10, 7, s.Size)
	case 2:
		s.Kind, s.Gap = Session, pick(5, 10, 20)
	}
	if s.Agg == AggDistinct {
		s.HLLPrecision = uint8(4 + rng.IntN(4))
	}
	return s
}

func genOps(rng *rand.Rand, n int) []propOp {
	var ops []propOp
	clock := int64(-300) // negative times included
	keys := []string{"a", "b", "a\x00", ""}
	for range n {
		if rng.IntN(10) < 7 {
			t := clock + rng.Int64N(70) - 40
			if rng.IntN(2) == 0 {
				t -= ((t % 5) + 5) % 5 // snap to the 5ms grid: exact boundaries
			}
			ops = append(ops, propOp{event: &Event{Key: []byte(keys[rng.IntN(len(keys))]), Time: t, Value: rng.Int64N(21) - 10}})
			continue
		}
		switch rng.IntN(10) {
		case 0:
			clock += 60 // a jump closing and expiring many windows at once
		default:
			clock += 5 * rng.Int64N(4)
		}
		status := ProducerActive
		if r := rng.IntN(6); r == 0 {
			status = ProducerIdle
		} else if r == 1 {
			status = ProducerFinished
		}
		ops = append(ops, propOp{producer: rng.IntN(3), pwm: clock - 5*rng.Int64N(3), status: status})
	}
	return ops
}

// refModel is the brute-force reference.
type refModel struct {
	spec     Spec
	agg      Aggregator
	accepted []refEvent
	// sessionRetentionR makes the reference expire sessions after
	// Retention instead of max(Retention, Gap), to show (with
	// mutSessionExpiry) that the floor is needed for correct lateness
	// decisions, not just for matching expiry times.
	sessionRetentionR bool
}

type refEvent struct {
	key   string
	t, v  int64
	wmArr int64 // table watermark when the event arrived
}

type refWindow struct {
	key  string
	w    Window
	vals []int64
}

func (r *refModel) retention() int64 {
	if r.spec.Kind == Session && !r.sessionRetentionR {
		return max(r.spec.Retention, r.spec.Gap)
	}
	return r.spec.Retention
}

func (r *refModel) closeT(w Window) int64  { return w.End + r.spec.AllowedLateness }
func (r *refModel) expireT(w Window) int64 { return r.closeT(w) + r.retention() }

// fixedWindows enumerates windows containing t by testing candidates.
func (r *refModel) fixedWindows(t int64) []Window {
	size, slide := r.spec.Size, r.spec.Slide
	if r.spec.Kind == Tumbling {
		slide = size
	}
	var ws []Window
	for k := t/slide - size/slide - 2; k <= t/slide+2; k++ {
		if w := (Window{k * slide, k*slide + size}); w.Start <= t && t < w.End {
			ws = append(ws, w)
		}
	}
	return ws
}

// sessions splits one key's events, sorted by time, wherever consecutive
// events are gap or more apart.
func (r *refModel) sessions(evs []refEvent) []refWindow {
	evs = slices.Clone(evs)
	slices.SortStableFunc(evs, func(a, b refEvent) int { return cmp.Compare(a.t, b.t) })
	var out []refWindow
	for i, e := range evs {
		if i == 0 || e.t-evs[i-1].t >= r.spec.Gap {
			out = append(out, refWindow{key: e.key, w: Window{e.t, 0}})
		}
		cur := &out[len(out)-1]
		cur.w.End = e.t + r.spec.Gap
		cur.vals = append(cur.vals, e.v)
	}
	return out
}

func (r *refModel) byKey(key string) []refEvent {
	var out []refEvent
	for _, e := range r.accepted {
		if e.key == key {
			out = append(out, e)
		}
	}
	return out
}

// windows recomputes every window (ever) from the accepted events, sorted
// by (close time, key, start).
func (r *refModel) windows() []refWindow {
	var out []refWindow
	if r.spec.Kind == Session {
		var keys []string
		for _, e := range r.accepted {
			if !slices.Contains(keys, e.key) {
				keys = append(keys, e.key)
			}
		}
		for _, k := range keys {
			out = append(out, r.sessions(r.byKey(k))...)
		}
	} else {
		for _, e := range r.accepted {
			for _, w := range r.fixedWindows(e.t) {
				if r.closeT(w) <= e.wmArr {
					continue // closed when the event arrived: not applied
				}
				i := slices.IndexFunc(out, func(x refWindow) bool { return x.key == e.key && x.w == w })
				if i < 0 {
					out = append(out, refWindow{key: e.key, w: w})
					i = len(out) - 1
				}
				out[i].vals = append(out[i].vals, e.v)
			}
		}
	}
	slices.SortFunc(out, func(a, b refWindow) int {
		return cmp.Or(cmp.Compare(r.closeT(a.w), r.closeT(b.w)), cmp.Compare(a.key, b.key), cmp.Compare(a.w.Start, b.w.Start))
	})
	return out
}

// state folds the values in sorted order (not arrival order), so equality
// with the engine's bytes also checks that encodings are canonical.
func (r *refModel) state(t testing.TB, vals []int64) []byte {
	return fold(t, r.agg, slices.Sorted(slices.Values(vals)))
}

type refDecision struct {
	late        bool
	lateWindows []Window
	deletes     []Window
	puts        []Window
}

// event decides an event at watermark wm and records it if accepted.
func (r *refModel) event(ev Event, wm int64) refDecision {
	var d refDecision
	e := refEvent{key: string(ev.Key), t: ev.Time, v: ev.Value, wmArr: wm}
	if r.spec.Kind != Session {
		for _, w := range r.fixedWindows(ev.Time) {
			if r.closeT(w) <= wm {
				d.lateWindows = append(d.lateWindows, w)
			} else {
				d.puts = append(d.puts, w)
			}
		}
		d.late = len(d.puts) == 0
	} else {
		own := Window{ev.Time, ev.Time + r.spec.Gap}
		before := r.sessions(r.byKey(e.key))
		var comp Window
		for _, s := range r.sessions(append(r.byKey(e.key), e)) {
			if s.w.Start <= e.t && e.t < s.w.End {
				comp = s.w
			}
		}
		var absorbed []Window
		for _, s := range before {
			if comp.Start <= s.w.Start && s.w.End <= comp.End {
				absorbed = append(absorbed, s.w)
				if r.closeT(s.w) <= wm {
					d.lateWindows = append(d.lateWindows, s.w)
				}
			}
		}
		switch {
		case r.closeT(own) <= wm:
			d.late, d.lateWindows = true, []Window{own}
		case len(d.lateWindows) > 0:
			d.late = true
		case len(absorbed) == 1 && absorbed[0] == comp:
			d.puts = []Window{comp}
		default:
			d.deletes, d.puts = absorbed, []Window{comp}
		}
	}
	if !d.late {
		r.accepted = append(r.accepted, e)
	}
	return d
}

type propStats struct {
	accepted, late, partlyLate, merges, closed, expired, advances int
}

// propertyRun runs one seed against engine variant mut and returns the
// first disagreement with the reference, or nil.
func propertyRun(t testing.TB, seed uint64, nops int, mut mutation) error {
	_, err := propertyRunStats(t, seed, nops, mut)
	return err
}

func propertyRunStats(t testing.TB, seed uint64, nops int, mut mutation) (stats propStats, _ error) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	spec := genSpec(rng, seed)
	eng, err := NewEngine("tbl", spec)
	if err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
	eng.mutant = mut
	ref := &refModel{spec: spec, agg: spec.Aggregator(), sessionRetentionR: mut == mutSessionExpiry}
	st := &MemState{}
	wm := MinWatermark
	producers := make([]ProducerWatermark, 3)
	for i := range producers {
		producers[i].Watermark = MinWatermark
	}
	fail := func(i int, format string, args ...any) (propStats, error) {
		return stats, fmt.Errorf("seed %d spec %q op %d: %s", seed, spec, i, fmt.Sprintf(format, args...))
	}
	for i, op := range genOps(rng, nops) {
		if op.event != nil {
			eff, err := eng.Apply(st, *op.event, wm)
			if err != nil {
				return fail(i, "Apply: %v", err)
			}
			want := ref.event(*op.event, wm)
			var puts []Window
			for _, p := range eff.Puts {
				puts = append(puts, p.Window)
			}
			if eff.Late != want.late || !slices.Equal(eff.LateWindows, want.lateWindows) || !slices.Equal(eff.Deletes, want.deletes) || !slices.Equal(puts, want.puts) {
				return fail(i, "event %+v at watermark %d: late=%v lateWindows=%v deletes=%v puts=%v; reference %+v",
					*op.event, wm, eff.Late, eff.LateWindows, eff.Deletes, puts, want)
			}
			st.Apply(eng.EffectMutations(eff))
			switch {
			case eff.Late:
				stats.late++
			case len(eff.LateWindows) > 0:
				stats.partlyLate++
				stats.accepted++
			default:
				stats.accepted++
			}
			if len(eff.Deletes) > 0 {
				stats.merges++
			}
			continue
		}
		p := &producers[op.producer]
		p.Watermark, p.Status = max(p.Watermark, op.pwm), op.status
		newWM := TableWatermark(wm, producers)
		if err := checkAdvance(t, eng, ref, st, wm, newWM, &stats); err != nil {
			return fail(i, "%v", err)
		}
		wm = newWM
		if err := checkState(t, ref, st, wm); err != nil {
			return fail(i, "%v", err)
		}
	}
	// Flush: everything closes and expires, leaving an empty store.
	end := MaxTime + 2*MaxDuration
	if err := checkAdvance(t, eng, ref, st, wm, end, &stats); err != nil {
		return fail(-1, "final advance: %v", err)
	}
	if st.Len() != 0 {
		return fail(-1, "%d keys left after everything expired", st.Len())
	}
	return stats, nil
}

func checkAdvance(t testing.TB, eng *Engine, ref *refModel, st *MemState, old, new int64, stats *propStats) error {
	p, err := eng.Advance(st, old, new)
	if err != nil {
		return fmt.Errorf("Advance(%d, %d): %v", old, new, err)
	}
	stats.closed += len(p.Closed)
	stats.expired += len(p.Expired)
	if new > old {
		stats.advances++
	}
	var wantClosed, wantExpired []string
	for _, w := range ref.windows() {
		if c := ref.closeT(w.w); old < c && c <= new {
			wantClosed = append(wantClosed, fmt.Sprintf("%q %v @%d %x", w.key, w.w, c, ref.state(t, w.vals)))
		}
	}
	all := ref.windows()
	slices.SortStableFunc(all, func(a, b refWindow) int { return cmp.Compare(ref.expireT(a.w), ref.expireT(b.w)) })
	for _, w := range all {
		if x := ref.expireT(w.w); old < x && x <= new {
			wantExpired = append(wantExpired, fmt.Sprintf("%q %v @%d", w.key, w.w, x))
		}
	}
	var gotClosed, gotExpired []string
	for _, c := range p.Closed {
		gotClosed = append(gotClosed, fmt.Sprintf("%q %v @%d %x", c.Key, c.Window, c.CloseTime, c.State))
		if err := checkResult(ref, c); err != nil {
			return err
		}
	}
	for _, x := range p.Expired {
		gotExpired = append(gotExpired, fmt.Sprintf("%q %v @%d", x.Key, x.Window, x.ExpireTime))
	}
	if !slices.Equal(gotClosed, wantClosed) {
		return fmt.Errorf("watermark %d -> %d closed\n%v\nreference\n%v", old, new, gotClosed, wantClosed)
	}
	if !slices.Equal(gotExpired, wantExpired) {
		return fmt.Errorf("watermark %d -> %d expired\n%v\nreference\n%v", old, new, gotExpired, wantExpired)
	}
	st.Apply(eng.AdvanceMutations(p))
	return nil
}

// checkResult compares a closed window's result with values computed
// directly from the reference's inputs (distinct is approximate: only the
// count of events is checked).
func checkResult(ref *refModel, c ClosedWindow) error {
	var vals []int64
	for _, w := range ref.windows() {
		if w.key == string(c.Key) && w.w == c.Window {
			vals = w.vals
		}
	}
	v, err := ref.agg.Result(c.State)
	if err != nil {
		return err
	}
	var want Value
	want.Count, want.Kind = uint64(len(vals)), ValueInt
	sum := int64(0)
	for _, x := range vals {
		sum += x
	}
	switch ref.spec.Agg {
	case AggCount:
		want.Int = int64(len(vals))
	case AggSum:
		want.Int = sum
	case AggMin:
		want.Int = slices.Min(vals)
	case AggMax:
		want.Int = slices.Max(vals)
	case AggMean:
		want.Kind, want.Float = ValueFloat, float64(sum)/float64(len(vals))
	case AggDistinct:
		want = Value{Kind: ValueInt, Int: v.Int, Count: want.Count}
	}
	if v != want {
		return fmt.Errorf("%q %v: result %+v, want %+v", c.Key, c.Window, v, want)
	}
	return nil
}

// checkState compares the whole store with the reference's live windows.
func checkState(t testing.TB, ref *refModel, st *MemState, wm int64) error {
	var want, got []string
	for _, w := range ref.windows() {
		if ref.expireT(w.w) > wm {
			want = append(want, fmt.Sprintf("w %q %v %x", w.key, w.w, ref.state(t, w.vals)),
				fmt.Sprintf("c %q %v @%d", w.key, w.w, ref.closeT(w.w)))
		}
	}
	err := st.Scan(nil, []byte{0xff}, func(k, v []byte) (bool, error) {
		if k[0] == TagWindow {
			_, key, w, err := DecodeWindowKey(k)
			got = append(got, fmt.Sprintf("w %q %v %x", key, w, v))
			return err == nil, err
		}
		_, ct, key, w, err := DecodeCloseKey(k)
		got = append(got, fmt.Sprintf("c %q %v @%d", key, w, ct))
		return err == nil, err
	})
	if err != nil {
		return err
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		return fmt.Errorf("at watermark %d the store holds\n%s\nreference\n%s", wm, bytes.Join(toBytes(got), []byte("\n")), bytes.Join(toBytes(want), []byte("\n")))
	}
	return nil
}

func toBytes(ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

func TestProperty(t *testing.T) {
	nops := 600
	if testing.Short() {
		nops = 200
	}
	for _, seed := range propertySeeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			stats, err := propertyRunStats(t, seed, nops, mutNone)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%+v", stats)
			// Guard against a generator that stopped exercising anything.
			if stats.accepted < nops/4 || stats.late == 0 || stats.closed == 0 || stats.expired == 0 || stats.advances < nops/40 {
				t.Fatalf("degenerate run: %+v", stats)
			}
		})
	}
}

// TestPropertyCatchesPlantedBugs runs the same comparison against
// deliberately broken engines and requires the reference to notice each.
func TestPropertyCatchesPlantedBugs(t *testing.T) {
	for _, c := range []struct {
		name string
		mut  mutation
	}{
		{"accept events at exactly End+lateness", mutLateBoundary},
		{"merge sessions that only touch", mutSessionTouch},
		{"evict sessions before Gap has passed", mutSessionExpiry},
		{"drop aggregates of merged sessions", mutDropMergedAggs},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, seed := range propertySeeds {
				if err := propertyRun(t, seed, 600, c.mut); err != nil {
					t.Logf("caught by seed %d: %.300s", seed, err)
					return
				}
			}
			t.Fatalf("no seed detected the planted bug %q", c.name)
		})
	}
}

// TestDeterminism: the same input yields byte-identical effects, progress
// and stored state, pinned by a golden hash of the transcript so that a
// change in encoding or behaviour across builds is noticed.
func TestDeterminism(t *testing.T) {
	transcript := func(specStr string, seed uint64) []byte {
		eng, err := NewEngine("tbl", mustSpec(t, specStr))
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(seed, 0x5eed))
		st, wm := &MemState{}, MinWatermark
		h := sha256.New()
		producers := make([]ProducerWatermark, 3)
		for i := range producers {
			producers[i].Watermark = MinWatermark
		}
		for _, op := range genOps(rng, 400) {
			var ms []Mutation
			if op.event != nil {
				eff, err := eng.Apply(st, *op.event, wm)
				if err != nil {
					t.Fatal(err)
				}
				ms = eng.EffectMutations(eff)
			} else {
				producers[op.producer] = ProducerWatermark{max(producers[op.producer].Watermark, op.pwm), op.status}
				newWM := TableWatermark(wm, producers)
				p, err := eng.Advance(st, wm, newWM)
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range p.Closed {
					fmt.Fprintf(h, "close %x %v %d %x\n", c.Key, c.Window, c.CloseTime, c.State)
				}
				ms, wm = eng.AdvanceMutations(p), newWM
			}
			for _, m := range ms {
				fmt.Fprintf(h, "%v %x %x\n", m.Delete, m.Key, m.Value)
			}
			st.Apply(ms)
		}
		h.Write(st.Dump())
		return h.Sum(nil)
	}
	for _, c := range []struct{ spec, golden string }{
		{"hopping 20ms 7ms distinct precision=5 lateness=5ms retention=20ms", "ac8dbf62772b6932"},
		{"session 10ms mean lateness=5ms", "89ab41ae71ecb710"},
		{"tumbling 10ms sum", "15b5640084c5779d"},
	} {
		a, b := transcript(c.spec, 1), transcript(c.spec, 1)
		if !bytes.Equal(a, b) {
			t.Fatalf("%s: two runs differ", c.spec)
		}
		if got := hex.EncodeToString(a[:8]); got != c.golden {
			t.Errorf("%s: transcript hash %s, golden %s", c.spec, got, c.golden)
		}
	}
}
