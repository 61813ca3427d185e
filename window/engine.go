package window

import (
	"bytes"
	"fmt"
)

// State is the read side of the store the Engine works on. The FSM
// implements it over an indexed pebble.Batch (so that it sees the mutations
// of earlier commands in the same batch); MemState implements it in memory.
// The engine only reads keys under TableSpans(table) and never retains key or
// value slices past the call that produced them.
type State interface {
	// Get returns the value stored at key.
	Get(key []byte) (value []byte, found bool, err error)
	// Scan calls fn for each key in [lower, upper) in ascending bytewise
	// order, stopping early when fn returns false or an error. The engine
	// does not call Get or Scan from inside fn.
	Scan(lower, upper []byte, fn func(key, value []byte) (more bool, err error)) error
}

// Mutation is one write the FSM must apply, in order, to its batch.
type Mutation struct {
	Delete bool // delete Key; otherwise set Key to Value
	Key    []byte
	Value  []byte
}

// Event is "add Value to Key at event time Time" for one table.
type Event struct {
	Key   []byte
	Time  int64 // Unix milliseconds, in [MinTime, MaxTime]
	Value int64
}

// Put is the new aggregate state of one window.
type Put struct {
	Window Window
	State  []byte
	// Created is set when the window did not exist before (its close-index
	// entry must be written).
	Created bool
}

// Effects is what applying one event does. Order is deterministic: Deletes
// and Puts are sorted by window Start, LateWindows too.
type Effects struct {
	Key []byte
	// Late: the event is not applied at all (Deletes and Puts are empty).
	Late bool
	// LateWindows are the closed windows the event was not applied to:
	// tumbling/hopping windows containing Time that are closed; for a late
	// session event, its own proto-session [Time, Time+Gap) if that is
	// closed, otherwise the closed sessions it would have merged with.
	LateWindows []Window
	// Deletes are session windows merged into a new one.
	Deletes []Window
	Puts    []Put
}

// ClosedWindow is a window that became final, with its final state.
type ClosedWindow struct {
	Key       []byte
	Window    Window
	CloseTime int64
	State     []byte
}

// ExpiredWindow is a window to evict.
type ExpiredWindow struct {
	Key        []byte
	Window     Window
	ExpireTime int64
}

// Progress is what a watermark advance does. Both lists are ordered by
// close (resp. expire) time, then key, then window start. A window can both
// close and expire in one advance; it is then in both lists.
type Progress struct {
	Closed  []ClosedWindow
	Expired []ExpiredWindow
}

// StoredWindow is a window of one key with its aggregate state.
type StoredWindow struct {
	Window Window
	State  []byte
}

// mutation selects a deliberately broken variant of the engine. Only the
// package's tests set it, to show the property test detects each bug.
type mutation uint8

const (
	mutNone           mutation = iota
	mutLateBoundary            // accept events at exactly End+AllowedLateness
	mutSessionTouch            // merge sessions that merely touch
	mutSessionExpiry           // evict sessions after Retention, not max(Retention, Gap)
	mutDropMergedAggs          // forget the aggregates of merged sessions
)

// Engine applies events and watermark advances for one table. It is
// immutable and safe for concurrent use; all its results are deterministic
// functions of its inputs and the State contents.
type Engine struct {
	table  string
	spec   Spec
	agg    Aggregator
	mutant mutation
}

// NewEngine returns the engine of table, whose spec must be valid.
func NewEngine(table string, spec Spec) (*Engine, error) {
	if table == "" {
		return nil, fmt.Errorf("%w: empty table name", ErrInvalidTable)
	}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	return &Engine{table: table, spec: spec, agg: spec.Aggregator()}, nil
}

// Table returns the table name the engine's keys are encoded under.
func (e *Engine) Table() string { return e.table }

// Spec returns the table's spec.
func (e *Engine) Spec() Spec { return e.spec }

// Aggregator returns the aggregator for the table's states (e.g. to turn
// ClosedWindow.State into a Value with Result).
func (e *Engine) Aggregator() Aggregator { return e.agg }

func (e *Engine) closed(w Window, wm int64) bool {
	if e.mutant == mutLateBoundary {
		return wm > CloseTime(e.spec, w)
	}
	return IsLate(e.spec, w, wm)
}

func (e *Engine) expireOffset() int64 {
	if e.mutant == mutSessionExpiry {
		return e.spec.Retention
	}
	return e.spec.retentionFloor()
}

// Apply decides what event ev does at table watermark wm. It only reads st;
// the caller applies EffectMutations(eff) before applying anything else.
// wm must be the newWM of the last Advance (MinWatermark before the first):
// every window Apply creates then closes after wm, so the next Advance
// reports it. Errors wrapping ErrTimeOutOfRange reject the event
// deterministically.
func (e *Engine) Apply(st State, ev Event, wm int64) (Effects, error) {
	eff := Effects{Key: bytes.Clone(ev.Key)}
	ws, err := Assign(e.spec, ev.Time)
	if err != nil {
		return Effects{}, err
	}
	if e.spec.Kind == Session {
		return e.applySession(st, ev, wm, ws[0], eff)
	}
	for _, w := range ws {
		if e.closed(w, wm) {
			eff.LateWindows = append(eff.LateWindows, w)
			continue
		}
		old, found, err := st.Get(EncodeWindowKey(e.table, ev.Key, w))
		if err != nil {
			return Effects{}, err
		}
		s, err := e.agg.Update(old, ev.Value)
		if err != nil {
			return Effects{}, e.corrupt(ev.Key, w, err)
		}
		eff.Puts = append(eff.Puts, Put{Window: w, State: s, Created: !found})
	}
	eff.Late = len(eff.Puts) == 0
	return eff, nil
}

func (e *Engine) corrupt(key []byte, w Window, err error) error {
	return fmt.Errorf("table %q key %q window %v: %w", e.table, key, w, err)
}

func (e *Engine) applySession(st State, ev Event, wm int64, own Window, eff Effects) (Effects, error) {
	if e.closed(own, wm) {
		eff.Late, eff.LateWindows = true, []Window{own}
		return eff, nil
	}
	lookFrom, lookTo := own.Start, own.End
	if e.mutant == mutSessionTouch {
		lookFrom, lookTo = lookFrom-1, lookTo+1
	}
	near, err := e.Windows(st, ev.Key, lookFrom, lookTo)
	if err != nil {
		return Effects{}, err
	}
	existing := make([]Window, len(near))
	for i, n := range near {
		existing[i] = n.Window
	}
	merged, absorbed := mergeSession(existing, ev.Time, e.spec.Gap, e.mutant == mutSessionTouch)
	for _, w := range absorbed {
		if e.closed(w, wm) {
			eff.LateWindows = append(eff.LateWindows, w)
		}
	}
	if len(eff.LateWindows) > 0 {
		eff.Late = true
		return eff, nil
	}
	if len(absorbed) == 1 && absorbed[0] == merged {
		s, err := e.agg.Update(stateOf(near, merged), ev.Value)
		if err != nil {
			return Effects{}, e.corrupt(ev.Key, merged, err)
		}
		eff.Puts = []Put{{Window: merged, State: s}}
		return eff, nil
	}
	s, err := e.agg.Update(nil, ev.Value)
	if err != nil {
		return Effects{}, err
	}
	for _, w := range absorbed {
		if e.mutant == mutDropMergedAggs {
			break
		}
		if s, err = e.agg.Merge(s, stateOf(near, w)); err != nil {
			return Effects{}, e.corrupt(ev.Key, w, err)
		}
	}
	eff.Deletes = absorbed
	eff.Puts = []Put{{Window: merged, State: s, Created: true}}
	return eff, nil
}

func stateOf(ws []StoredWindow, w Window) []byte {
	for _, s := range ws {
		if s.Window == w {
			return s.State
		}
	}
	return nil
}

// Windows returns key's stored windows (open, closed and not yet evicted)
// that intersect [from, to), ordered by Start, with their states.
func (e *Engine) Windows(st State, key []byte, from, to int64) ([]StoredWindow, error) {
	var out []StoredWindow
	if from >= to {
		return nil, nil
	}
	span := WindowSpan(e.table, key, from+1, 1<<63-1)
	err := st.Scan(span.Lower, span.Upper, func(k, v []byte) (bool, error) {
		_, _, w, err := DecodeWindowKey(k)
		if err != nil {
			return false, err
		}
		if w.Start >= to {
			return false, nil
		}
		out = append(out, StoredWindow{Window: w, State: bytes.Clone(v)})
		return true, nil
	})
	return out, err
}

// EffectMutations returns the writes that carry out eff, in order: for each
// deleted window its data and close-index keys, then for each put its data
// key and (for created windows) its close-index key.
func (e *Engine) EffectMutations(eff Effects) []Mutation {
	var ms []Mutation
	for _, w := range eff.Deletes {
		ms = append(ms,
			Mutation{Delete: true, Key: EncodeWindowKey(e.table, eff.Key, w)},
			Mutation{Delete: true, Key: EncodeCloseKey(e.table, CloseTime(e.spec, w), eff.Key, w)})
	}
	for _, p := range eff.Puts {
		ms = append(ms, Mutation{Key: EncodeWindowKey(e.table, eff.Key, p.Window), Value: p.State})
		if p.Created {
			ms = append(ms, Mutation{Key: EncodeCloseKey(e.table, CloseTime(e.spec, p.Window), eff.Key, p.Window), Value: []byte{}})
		}
	}
	return ms
}

// satSub is a-b clamped to int64 (b >= 0).
func satSub(a, b int64) int64 {
	if a < MinWatermark+b {
		return MinWatermark
	}
	return a - b
}

// Advance reports what happens when the table watermark moves from oldWM to
// newWM (nothing if newWM <= oldWM): windows with oldWM < CloseTime <= newWM
// close, and windows with oldWM < ExpireTime <= newWM expire. The caller
// publishes Closed results and applies AdvanceMutations. Windows are found
// through the close index: expire time is close time plus a per-table
// constant, so one index serves both.
func (e *Engine) Advance(st State, oldWM, newWM int64) (Progress, error) {
	var p Progress
	if newWM <= oldWM {
		return p, nil
	}
	type entry struct {
		ct  int64
		key []byte
		w   Window
	}
	var closing []entry
	span := CloseSpan(e.table, oldWM, newWM)
	err := st.Scan(span.Lower, span.Upper, func(k, _ []byte) (bool, error) {
		_, ct, key, w, err := DecodeCloseKey(k)
		closing = append(closing, entry{ct, key, w})
		return err == nil, err
	})
	if err != nil {
		return Progress{}, err
	}
	for _, c := range closing {
		v, found, err := st.Get(EncodeWindowKey(e.table, c.key, c.w))
		if err != nil {
			return Progress{}, err
		}
		if !found {
			return Progress{}, e.corrupt(c.key, c.w, fmt.Errorf("%w: close-index entry without window data", ErrCorruptState))
		}
		p.Closed = append(p.Closed, ClosedWindow{Key: c.key, Window: c.w, CloseTime: c.ct, State: bytes.Clone(v)})
	}
	off := e.expireOffset()
	span = CloseSpan(e.table, satSub(oldWM, off), satSub(newWM, off))
	err = st.Scan(span.Lower, span.Upper, func(k, _ []byte) (bool, error) {
		_, ct, key, w, err := DecodeCloseKey(k)
		if err != nil {
			return false, err
		}
		p.Expired = append(p.Expired, ExpiredWindow{Key: key, Window: w, ExpireTime: ct + off})
		return true, nil
	})
	if err != nil {
		return Progress{}, err
	}
	return p, nil
}

// AdvanceMutations returns the writes that evict p.Expired, in order.
func (e *Engine) AdvanceMutations(p Progress) []Mutation {
	ms := make([]Mutation, 0, 2*len(p.Expired))
	for _, x := range p.Expired {
		ms = append(ms,
			Mutation{Delete: true, Key: EncodeWindowKey(e.table, x.Key, x.Window)},
			Mutation{Delete: true, Key: EncodeCloseKey(e.table, x.ExpireTime-e.expireOffset(), x.Key, x.Window)})
	}
	return ms
}
