package linearizability

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// CheckerWindow names the anomalies found by [CheckWindows].
const CheckerWindow = "window"

// Anomaly types of the window checker (it also reports
// AnomalyConflictingInputs, AnomalyConflictingResults and, for windows
// whose events are not identifiable, AnomalyTotalOutOfRange).
const (
	// AnomalyLostEvent: a window's value leaves out an event that had to be
	// in it (acknowledged, or found in the committed log).
	AnomalyLostEvent AnomalyType = "lost-event"
	// AnomalyDuplicateEvent: a window's value counts an event more than once.
	AnomalyDuplicateEvent AnomalyType = "duplicate-event"
	// AnomalyPhantomEvent: a window's value counts an event that was never
	// applied (its commit failed, or was first sent after the read
	// returned), or a value no set of the window's events explains.
	AnomalyPhantomEvent AnomalyType = "phantom-event"
	// AnomalyLateEvent: the store rejected events as late although the
	// workload guarantees that none can be (WindowOptions.NoLate).
	AnomalyLateEvent AnomalyType = "late-event"
	// AnomalyMissingWindow: a window with events that had to be counted is
	// absent from the final read of its key (and cannot have been evicted).
	AnomalyMissingWindow AnomalyType = "missing-window"
	// AnomalyExtraWindow: a read or watch returned a window no event of
	// the workload falls into, or one that is not a window of the table.
	AnomalyExtraWindow AnomalyType = "extra-window"
	// AnomalyOpenWindow: after the final watermark a window is not closed.
	AnomalyOpenWindow AnomalyType = "window-not-closed"
	// AnomalyCountMismatch: a window's event count differs from the number
	// of events its value decodes into.
	AnomalyCountMismatch AnomalyType = "count-mismatch"
	// AnomalyClosedChanged: a window read as closed during the run holds a
	// different value from its final one (closed windows are final).
	AnomalyClosedChanged AnomalyType = "closed-window-changed"
	// AnomalyDuplicateDelivery: the watch stream delivered one window twice.
	AnomalyDuplicateDelivery AnomalyType = "duplicate-delivery"
	// AnomalyMissingDelivery: a closed window was never delivered by the
	// watch stream.
	AnomalyMissingDelivery AnomalyType = "missing-delivery"
	// AnomalyDeliveryMismatch: the watch stream delivered a window with a
	// different value or count from the final read of its key.
	AnomalyDeliveryMismatch AnomalyType = "delivery-mismatch"
	// AnomalyDeliveryOrder: watch positions did not strictly increase.
	AnomalyDeliveryOrder AnomalyType = "delivery-out-of-order"
)

// WindowEvent is one event of a window-commit: add Value to Key's window
// containing event time Time (Unix milliseconds).
type WindowEvent struct {
	Key   string `json:"key"`
	Time  int64  `json:"t"`
	Value int64  `json:"v"`
}

// WindowValue is one stored window of a key: [Start, End) in event-time
// milliseconds, the sum of its events and how many there are.
type WindowValue struct {
	Key    string `json:"key,omitempty"` // set on watch deliveries
	Start  int64  `json:"start"`
	End    int64  `json:"end"`
	Value  int64  `json:"value"`
	Count  int64  `json:"count"`
	Closed bool   `json:"closed,omitempty"`
}

// WindowOptions describes the window workload's table: tumbling windows
// of Size milliseconds aligned to the epoch, aggregated with sum.
type WindowOptions struct {
	Size      int64 `json:"size_ms"`
	Lateness  int64 `json:"lateness_ms"`
	Retention int64 `json:"retention_ms"`
	// NoLate: the workload guarantees no event can be late, so a commit
	// acknowledged with late events is an anomaly. Without it, the events
	// of such a commit may or may not be counted.
	NoLate bool `json:"no_late"`
	// Watched: a watch from the start of the table ran through the whole
	// history, so every window closed by the end must have been delivered.
	Watched bool `json:"watched"`
}

// WindowSummary is the window checker's accounting.
type WindowSummary struct {
	// Logical commits (attempts of one producer, epoch, seq merged) by
	// what the clients learned; Committed counts unacknowledged ones found
	// in the committed log. Redelivered: acknowledged attempts answered
	// as duplicates.
	Commits     int `json:"commits"`
	Acked       int `json:"acked"`
	Unknown     int `json:"unknown"`
	Committed   int `json:"committed"`
	Failed      int `json:"failed"`
	Redelivered int `json:"redelivered"`
	// Events by what the final value must do with them: Must be counted
	// once, May be counted at most once, Failed never.
	Events       int `json:"events"`
	MustEvents   int `json:"must_events"`
	MayEvents    int `json:"may_events"`
	FailedEvents int `json:"failed_events"`
	// Windows: (key, window) pairs some event falls into; Identifiable:
	// every window's event values let a sum be decoded into counts.
	Windows      int  `json:"windows"`
	Identifiable bool `json:"identifiable"`
	// Final reads and the windows they returned; watch deliveries.
	FinalReads   int `json:"final_reads"`
	FinalWindows int `json:"final_windows"`
	Reads        int `json:"reads"`
	Deliveries   int `json:"deliveries"`
	// ClosedBy: every window ending (plus lateness) at or before it must be
	// closed at the end (the least final watermark of the producers);
	// MaxWatermark: the highest watermark any commit sent.
	ClosedBy     int64 `json:"closed_by"`
	MaxWatermark int64 `json:"max_watermark"`
}

// wcommit is one logical window commit: every attempt of one (producer,
// epoch, seq).
type wcommit struct {
	ident     string
	producer  string
	events    []WindowEvent
	watermark int64
	ids       []string
	call      int64 // earliest call of an attempt that may have applied
	acked     bool
	ackReturn int64
	committed bool // acked or found in the committed log
	failed    bool // every attempt definitely not applied
	late      int64
	// fresh: acked attempts answered as a first application; indexes:
	// the log index each acked attempt reported.
	fresh   []string
	dups    int // acked attempts answered as duplicates
	indexes map[uint64][]string
}

// wevent is one event and the commit carrying it.
type wevent struct {
	c  *wcommit
	ev WindowEvent
}

func (e *wevent) must(opts WindowOptions) bool {
	return e.c.committed && (opts.NoLate || e.c.late == 0)
}

func (e *wevent) describe() string {
	return fmt.Sprintf("event(%q, t=%d, v=%d) [%s]", e.ev.Key, e.ev.Time, e.ev.Value, e.c.ident)
}

type wslot struct {
	key   string
	start int64
}

func (s wslot) String() string { return fmt.Sprintf("%s@%d", s.key, s.start) }

// windowCheck holds the state of one CheckWindows run.
type windowCheck struct {
	h         History
	opts      WindowOptions
	slots     map[wslot][]*wevent // sorted by value
	ident     map[wslot]bool      // values distinct, positive, each divides the next
	final     map[wslot]WindowValue
	anomalies []Anomaly
	reported  map[string]int
}

func (wc *windowCheck) report(dedup string, a Anomaly) {
	if j, ok := wc.reported[dedup]; ok {
		wc.anomalies[j].Occurrences++
		return
	}
	a.Checker, a.Occurrences = CheckerWindow, 1
	wc.reported[dedup] = len(wc.anomalies)
	wc.anomalies = append(wc.anomalies, a)
}

// slotOf is the tumbling window an event time falls into.
func (wc *windowCheck) slotOf(key string, t int64) wslot {
	start := t - ((t%wc.opts.Size)+wc.opts.Size)%wc.opts.Size
	return wslot{key, start}
}

// CheckWindows checks the window workload: producer commits of window
// events with watermarks, reads of each key's windows (the Final ones after
// a last watermark closed every window), and the deliveries of one watch
// stream.
//
// Every event is classified by its commit: must (acknowledged, or found in
// the committed log), may (unknown outcome: at most once) or never
// (failed). For every window value seen — final reads, watch deliveries,
// reads during the run — the value is decoded into how many times each of
// the window's events is in it (event values are distinct and each divides
// the next, e.g. powers of 4), which names a lost, duplicated or phantom
// event exactly; a closed window, and every window of a final read, must
// hold every must event. A final read must return every window with a must
// event (unless its retention may have run out), closed once the least
// final watermark passed its end plus the lateness, and no other window;
// the watch must deliver each closed window exactly once, in increasing
// positions, with the final read's value. Attempts of one commit must
// carry the same events and, when acknowledged, be answered once as
// applied (a redelivery as a duplicate) at one log index.
func CheckWindows(h History, opts WindowOptions) ([]Anomaly, WindowSummary) {
	wc := &windowCheck{h: h, opts: opts, slots: map[wslot][]*wevent{}, ident: map[wslot]bool{},
		final: map[wslot]WindowValue{}, reported: map[string]int{}}
	var sum WindowSummary
	if opts.Size <= 0 {
		wc.report("options", Anomaly{Type: AnomalyConflictingInputs, Description: "window checker: WindowOptions.Size must be positive"})
		return wc.anomalies, sum
	}
	commits := wc.groupCommits()
	wc.indexEvents(commits, &sum)
	sum.ClosedBy, sum.MaxWatermark = closedBy(commits)

	// Final reads first: the other checks compare with them.
	var finals, reads, watches []int
	for i := range h {
		op := &h[i]
		switch {
		case op.Type == OpWindowRead && op.OutputKnown() && op.Final:
			finals = append(finals, i)
		case op.Type == OpWindowRead && op.OutputKnown():
			reads = append(reads, i)
		case op.Type == OpWatch && op.Outcome == OutcomeOK && len(op.Windows) == 1:
			watches = append(watches, i)
		}
	}
	sortByCall(h, finals)
	sortByCall(h, reads)
	sortByCall(h, watches)
	sum.FinalReads, sum.Reads, sum.Deliveries = len(finals), len(reads), len(watches)
	for _, i := range finals {
		op := &h[i]
		sum.FinalWindows += len(op.Windows)
		wc.checkFinalRead(op, sum.ClosedBy)
	}
	wc.checkMissing(finals, sum.MaxWatermark)
	for _, i := range reads {
		wc.checkRead(&h[i])
	}
	wc.checkWatch(watches, sum.ClosedBy, sum.MaxWatermark)
	return wc.anomalies, sum
}

// groupCommits merges window-commit attempts into logical commits, in order
// of first call, and reports attempts that disagree on their inputs, on
// their acknowledged results, or that were acknowledged with late events.
func (wc *windowCheck) groupCommits() []*wcommit {
	h := wc.h
	idx := make([]int, 0, len(h))
	for i := range h {
		if h[i].Type == OpWindowCommit {
			idx = append(idx, i)
		}
	}
	sortByCall(h, idx)
	by := map[string]*wcommit{}
	var out []*wcommit
	for _, i := range idx {
		op := &h[i]
		ident := incrementIdent(op)
		c := by[ident]
		if c == nil {
			c = &wcommit{ident: ident, producer: op.Producer, events: op.Events, watermark: op.Watermark,
				call: op.Call, ackReturn: InfiniteReturn, failed: true, indexes: map[uint64][]string{}}
			by[ident] = c
			out = append(out, c)
		} else if (!sameEvents(c.events, op.Events) || c.watermark != op.Watermark) && c.failed {
			// Every earlier attempt failed before reaching the log, so
			// the sequence number was never used: the client may send
			// another commit under it (a producer gives up on a commit
			// that could not be submitted and goes on with its next one).
			c.events, c.watermark, c.call, c.ids = op.Events, op.Watermark, op.Call, nil
		} else if !sameEvents(c.events, op.Events) || c.watermark != op.Watermark {
			wc.report("inputs "+ident, Anomaly{Type: AnomalyConflictingInputs, Ops: []string{c.ids[0], op.ID},
				Description: fmt.Sprintf("commit %s was sent as %s (id %s) and as %s (id %s): one (producer, epoch, seq) must name one commit",
					ident, describeCommit(c.events, c.watermark), c.ids[0], describeCommit(op.Events, op.Watermark), op.ID)})
		}
		c.ids = append(c.ids, op.ID)
		if !op.maybeApplied() {
			continue
		}
		if c.failed || op.Call < c.call {
			c.call = op.Call
		}
		c.failed = false
		if op.Outcome == OutcomeOK {
			c.committed = true
		}
		if !op.OutputKnown() {
			continue
		}
		c.acked = true
		c.ackReturn = min(c.ackReturn, op.Return)
		if op.Late != nil && *op.Late > c.late {
			c.late = *op.Late
		}
		if op.Duplicate {
			c.dups++
		} else {
			c.fresh = append(c.fresh, op.ID)
		}
		if op.LogIndex != 0 {
			c.indexes[op.LogIndex] = append(c.indexes[op.LogIndex], op.ID)
		}
	}
	for _, c := range out {
		if len(c.indexes) > 1 || len(c.fresh) > 1 {
			var parts, ids []string
			for _, ix := range sortedIndexes(c.indexes) {
				parts = append(parts, fmt.Sprintf("index %d (ids %s)", ix, strings.Join(c.indexes[ix], ",")))
				ids = append(ids, c.indexes[ix]...)
			}
			if len(ids) == 0 {
				ids = c.fresh
			}
			wc.report("results "+c.ident, Anomaly{Type: AnomalyConflictingResults, Key: c.producer, Ops: ids,
				Description: fmt.Sprintf("commit %s %s was acknowledged as applied by %d attempts (%s) at %s: a retry or redelivery must be answered as a duplicate of the original, so the commit was applied more than once",
					c.ident, describeCommit(c.events, c.watermark), len(c.fresh), joinIDs(c.fresh, 8), strings.Join(parts, " and "))})
		}
		if c.acked && c.late > 0 && wc.opts.NoLate {
			wc.report("late "+c.ident, Anomaly{Type: AnomalyLateEvent, Key: c.producer, Ops: c.ids,
				Description: fmt.Sprintf("commit %s %s was acknowledged with %d late events, but no event of this workload can be late (each is at or after its producer's own watermark and every producer joined the table before sending events): the table watermark ran ahead of its producers",
					c.ident, describeCommit(c.events, c.watermark), c.late)})
		}
	}
	return out
}

// indexEvents files every event under its window and counts.
func (wc *windowCheck) indexEvents(commits []*wcommit, sum *WindowSummary) {
	owner := map[wslot]map[int64]*wevent{}
	for _, c := range commits {
		sum.Commits++
		switch {
		case c.failed:
			sum.Failed++
		case c.acked:
			sum.Acked++
			sum.Redelivered += c.dups
		default:
			sum.Unknown++
			if c.committed {
				sum.Committed++
			}
		}
		for _, ev := range c.events {
			e := &wevent{c: c, ev: ev}
			s := wc.slotOf(ev.Key, ev.Time)
			if owner[s] == nil {
				owner[s] = map[int64]*wevent{}
			}
			if prev, dup := owner[s][ev.Value]; dup {
				wc.report("value "+s.String()+strconv.FormatInt(ev.Value, 10), Anomaly{Type: AnomalyConflictingInputs, Key: s.String(),
					Ops: []string{prev.c.ids[0], c.ids[0]},
					Description: fmt.Sprintf("%s and %s share value %d in window %s: events of a window need distinct values to be told apart",
						prev.describe(), e.describe(), ev.Value, s)})
				continue
			}
			owner[s][ev.Value] = e
			wc.slots[s] = append(wc.slots[s], e)
			sum.Events++
			switch {
			case c.failed:
				sum.FailedEvents++
			case e.must(wc.opts):
				sum.MustEvents++
			default:
				sum.MayEvents++
			}
		}
	}
	sum.Windows = len(wc.slots)
	sum.Identifiable = true
	for s, evs := range wc.slots {
		sort.Slice(evs, func(a, b int) bool { return evs[a].ev.Value < evs[b].ev.Value })
		ok := true
		for i, e := range evs {
			if e.ev.Value <= 0 || (i > 0 && e.ev.Value%evs[i-1].ev.Value != 0) || (i > 0 && e.ev.Value == evs[i-1].ev.Value) {
				ok = false
			}
		}
		wc.ident[s] = ok
		sum.Identifiable = sum.Identifiable && ok
	}
}

// closedBy returns the least, over the producers that may have joined the
// table (sent events), of the highest watermark each had acknowledged:
// once those commits applied the table watermark is at least that, so
// every window whose end plus lateness is at or before it is closed. It
// also returns the highest watermark any commit that may have applied
// sent: the table watermark never exceeds it.
func closedBy(commits []*wcommit) (int64, int64) {
	acked := map[string]int64{}
	joined := map[string]bool{}
	maxWM := int64(math.MinInt64)
	for _, c := range commits {
		if c.failed {
			continue
		}
		maxWM = max(maxWM, c.watermark)
		if len(c.events) > 0 {
			joined[c.producer] = true
		}
		if c.acked {
			if w, ok := acked[c.producer]; !ok || c.watermark > w {
				acked[c.producer] = c.watermark
			}
		}
	}
	if len(joined) == 0 {
		return math.MinInt64, maxWM
	}
	lo := int64(math.MaxInt64)
	for p := range joined {
		w, ok := acked[p]
		if !ok {
			return math.MinInt64, maxWM
		}
		lo = min(lo, w)
	}
	return lo, maxWM
}

// valueMode says which events a window value must and may hold.
type valueMode struct {
	final bool  // closed/final: every must event, any may event
	call  int64 // running read: events acknowledged before call must be in,
	ret   int64 // events first sent after ret must not
}

func (m valueMode) must(e *wevent, opts WindowOptions) bool {
	if !e.must(opts) {
		return false
	}
	return m.final || (e.c.acked && e.c.ackReturn < m.call)
}

func (m valueMode) possible(e *wevent) bool {
	return !e.c.failed && (m.final || e.c.call <= m.ret)
}

// checkValue decodes one window value read by op and reports the events
// it gets wrong.
func (wc *windowCheck) checkValue(op *Op, s wslot, w WindowValue, m valueMode, what string) {
	evs := wc.slots[s]
	if len(evs) == 0 {
		wc.report("extra "+s.String(), Anomaly{Type: AnomalyExtraWindow, Key: s.String(), Ops: []string{op.ID},
			Description: fmt.Sprintf("%s %s returned window %s [%d, %d) with value %d (count %d), but no event of the workload falls into it",
				what, op.ID, s.key, w.Start, w.End, w.Value, w.Count)})
		return
	}
	if !wc.ident[s] || w.Value < 0 {
		var lo, hi int64
		for _, e := range evs {
			switch {
			case m.must(e, wc.opts):
				lo += e.ev.Value
				hi += e.ev.Value
			case m.possible(e):
				hi += e.ev.Value
			}
		}
		if w.Value < lo || w.Value > hi {
			wc.report("range "+s.String(), Anomaly{Type: AnomalyTotalOutOfRange, Key: s.String(), Ops: []string{op.ID},
				Description: fmt.Sprintf("%s %s returned %d for window %s, outside [%d, %d]: the events that must be in it sum to %d",
					what, op.ID, w.Value, s, lo, hi, lo)})
		}
		return
	}
	values := make([]int64, len(evs))
	for i, e := range evs {
		values[i] = e.ev.Value
	}
	counts, rest := decodeValues(w.Value, values)
	if rest != 0 {
		wc.report("rest "+s.String(), Anomaly{Type: AnomalyPhantomEvent, Key: s.String(), Ops: []string{op.ID},
			Description: fmt.Sprintf("%s %s returned %d for window %s, which no combination of the window's events explains (remainder %d modulo the smallest value %d)",
				what, op.ID, w.Value, s, rest, values[0])})
	}
	var n int64
	for i, e := range evs {
		c := counts[i]
		n += c
		ops := append([]string{op.ID}, e.c.ids...)
		switch {
		case c == 0 && m.must(e, wc.opts):
			why := "acknowledged"
			if !e.c.acked {
				why = "found in the committed log"
			}
			if !m.final {
				why = fmt.Sprintf("acknowledged at %d, before the read was called at %d", e.c.ackReturn, m.call)
			}
			wc.report("lost "+e.c.ident+s.String(), Anomaly{Type: AnomalyLostEvent, Key: s.String(), Ops: ops,
				Description: fmt.Sprintf("%s was %s, but %s %s returned %d for window %s, which does not include it: an event was lost",
					e.describe(), why, what, op.ID, w.Value, s)})
		case c >= 2:
			wc.report("dup "+e.c.ident+s.String(), Anomaly{Type: AnomalyDuplicateEvent, Key: s.String(), Ops: ops,
				Description: fmt.Sprintf("%s (attempts %s) is counted %d times in value %d of window %s returned by %s %s: the event was applied more than once",
					e.describe(), joinIDs(e.c.ids, 8), c, w.Value, s, what, op.ID)})
		case c >= 1 && e.c.failed:
			wc.report("phantom "+e.c.ident+s.String(), Anomaly{Type: AnomalyPhantomEvent, Key: s.String(), Ops: ops,
				Description: fmt.Sprintf("%s failed definitely (every attempt was rejected or is absent from the committed log), but %s %s returned %d for window %s, which includes it",
					e.describe(), what, op.ID, w.Value, s)})
		case c >= 1 && !m.possible(e):
			wc.report("phantom "+e.c.ident+s.String(), Anomaly{Type: AnomalyPhantomEvent, Key: s.String(), Ops: ops,
				Description: fmt.Sprintf("%s was first sent at %d, after %s %s returned at %d, yet its value %d for window %s includes it",
					e.describe(), e.c.call, what, op.ID, op.Return, w.Value, s)})
		}
	}
	if rest == 0 && n != w.Count {
		wc.report("count "+s.String(), Anomaly{Type: AnomalyCountMismatch, Key: s.String(), Ops: []string{op.ID},
			Description: fmt.Sprintf("%s %s returned window %s with value %d, which holds %d events, but count %d",
				what, op.ID, s, w.Value, n, w.Count)})
	}
}

// aligned reports whether w is a window of the table, and its slot.
func (wc *windowCheck) aligned(key string, w WindowValue) (wslot, bool) {
	s := wc.slotOf(key, w.Start)
	return s, s.start == w.Start && w.End-w.Start == wc.opts.Size
}

func (wc *windowCheck) checkFinalRead(op *Op, closedBy int64) {
	for _, w := range op.Windows {
		s, ok := wc.aligned(op.Key, w)
		if !ok {
			wc.report("align "+s.String(), Anomaly{Type: AnomalyExtraWindow, Key: s.String(), Ops: []string{op.ID},
				Description: fmt.Sprintf("final read %s returned window [%d, %d) of key %q, which is not a %d ms tumbling window", op.ID, w.Start, w.End, op.Key, wc.opts.Size)})
			continue
		}
		if prev, seen := wc.final[s]; seen && (prev.Value != w.Value || prev.Count != w.Count) {
			wc.report("final "+s.String(), Anomaly{Type: AnomalyClosedChanged, Key: s.String(), Ops: []string{op.ID},
				Description: fmt.Sprintf("final reads disagree on window %s: value %d count %d, then value %d count %d (final read %s)",
					s, prev.Value, prev.Count, w.Value, w.Count, op.ID)})
		}
		wc.final[s] = w
		if !w.Closed && w.End+wc.opts.Lateness <= closedBy {
			wc.report("open "+s.String(), Anomaly{Type: AnomalyOpenWindow, Key: s.String(), Ops: []string{op.ID},
				Description: fmt.Sprintf("final read %s returned window %s as open, but every producer's acknowledged watermark reached %d >= end %d + lateness %d",
					op.ID, s, closedBy, w.End, wc.opts.Lateness)})
		}
		wc.checkValue(op, s, w, valueMode{final: true}, "final read")
	}
}

// mayBeEvicted: the window's retention may have run out by the end.
func (wc *windowCheck) mayBeEvicted(s wslot, maxWM int64) bool {
	return s.start+wc.opts.Size+wc.opts.Lateness+wc.opts.Retention <= maxWM
}

// checkMissing reports windows holding a must event that the final read of
// their key left out.
func (wc *windowCheck) checkMissing(finals []int, maxWM int64) {
	read := map[string]string{} // key -> id of its last final read
	got := map[string]map[int64]bool{}
	for _, i := range finals {
		op := &wc.h[i]
		read[op.Key] = op.ID
		got[op.Key] = map[int64]bool{}
		for _, w := range op.Windows {
			got[op.Key][w.Start] = true
		}
	}
	for _, s := range sortedSlots(wc.slots) {
		id, ok := read[s.key]
		if !ok || got[s.key][s.start] || wc.mayBeEvicted(s, maxWM) {
			continue
		}
		var must []string
		ops := []string{id}
		for _, e := range wc.slots[s] {
			if e.must(wc.opts) {
				must = append(must, e.describe())
				ops = append(ops, e.c.ids...)
			}
		}
		if len(must) == 0 {
			continue
		}
		wc.report("missing "+s.String(), Anomaly{Type: AnomalyMissingWindow, Key: s.String(), Ops: ops,
			Description: fmt.Sprintf("final read %s of key %q has no window [%d, %d), which holds %d events that had to be counted: %s",
				id, s.key, s.start, s.start+wc.opts.Size, len(must), joinIDs(must, 3))})
	}
}

// checkRead checks a read made during the run: its windows may be open.
func (wc *windowCheck) checkRead(op *Op) {
	for _, w := range op.Windows {
		s, ok := wc.aligned(op.Key, w)
		if !ok {
			wc.report("align "+s.String(), Anomaly{Type: AnomalyExtraWindow, Key: s.String(), Ops: []string{op.ID},
				Description: fmt.Sprintf("read %s returned window [%d, %d) of key %q, which is not a %d ms tumbling window", op.ID, w.Start, w.End, op.Key, wc.opts.Size)})
			continue
		}
		m := valueMode{call: op.Call, ret: op.Return}
		if w.Closed {
			m.final = true
			if f, ok := wc.final[s]; ok && (f.Value != w.Value || f.Count != w.Count) {
				wc.report("changed "+s.String(), Anomaly{Type: AnomalyClosedChanged, Key: s.String(), Ops: []string{op.ID},
					Description: fmt.Sprintf("read %s returned window %s as closed with value %d count %d, but its final value is %d count %d: a closed window changed",
						op.ID, s, w.Value, w.Count, f.Value, f.Count)})
			}
		}
		wc.checkValue(op, s, w, m, "read")
	}
}

// checkWatch checks the watch deliveries (in delivery order).
func (wc *windowCheck) checkWatch(watches []int, closedBy, maxWM int64) {
	seen := map[wslot][]string{}
	var last string
	var lastIdx, lastOrd uint64
	for _, i := range watches {
		op := &wc.h[i]
		w := op.Windows[0]
		key := w.Key
		if key == "" {
			key = op.Key
		}
		s, ok := wc.aligned(key, w)
		if !ok {
			wc.report("align "+s.String(), Anomaly{Type: AnomalyExtraWindow, Key: s.String(), Ops: []string{op.ID},
				Description: fmt.Sprintf("watch delivery %s is window [%d, %d) of key %q, which is not a %d ms tumbling window", op.ID, w.Start, w.End, key, wc.opts.Size)})
			continue
		}
		seen[s] = append(seen[s], op.ID)
		if n := len(seen[s]); n > 1 {
			wc.report("twice "+s.String(), Anomaly{Type: AnomalyDuplicateDelivery, Key: s.String(), Ops: seen[s],
				Description: fmt.Sprintf("the watch delivered window %s %d times (%s): each closed window must be delivered exactly once",
					s, n, strings.Join(seen[s], ", "))})
		}
		if ix, ord, err := parsePosition(op.Position); err != nil {
			wc.report("position "+op.ID, Anomaly{Type: AnomalyDeliveryOrder, Key: s.String(), Ops: []string{op.ID},
				Description: fmt.Sprintf("watch delivery %s has an unreadable position %q", op.ID, op.Position)})
		} else {
			if last != "" && (ix < lastIdx || ix == lastIdx && ord <= lastOrd) {
				wc.report("order "+op.ID, Anomaly{Type: AnomalyDeliveryOrder, Key: s.String(), Ops: []string{op.ID},
					Description: fmt.Sprintf("watch delivery %s at position %s came after position %s: positions must strictly increase", op.ID, op.Position, last)})
			}
			last, lastIdx, lastOrd = op.Position, ix, ord
		}
		if f, ok := wc.final[s]; ok && (f.Value != w.Value || f.Count != w.Count) {
			wc.report("mismatch "+s.String(), Anomaly{Type: AnomalyDeliveryMismatch, Key: s.String(), Ops: []string{op.ID},
				Description: fmt.Sprintf("the watch delivered window %s with value %d count %d (%s), the final read has value %d count %d",
					s, w.Value, w.Count, op.ID, f.Value, f.Count)})
		}
		wc.checkValue(op, s, w, valueMode{final: true}, "watch delivery")
	}
	if !wc.opts.Watched {
		return
	}
	// Every window the final reads returned closed, or that holds an event
	// that had to be counted, had to close and cannot have been evicted,
	// must have been delivered.
	for _, s := range sortedSlots(wc.slots) {
		if len(seen[s]) > 0 {
			continue
		}
		f, inFinal := wc.final[s]
		hasMust := false
		for _, e := range wc.slots[s] {
			hasMust = hasMust || e.must(wc.opts)
		}
		mustClose := s.start+wc.opts.Size+wc.opts.Lateness <= closedBy && !wc.mayBeEvicted(s, maxWM) && hasMust
		if !(inFinal && f.Closed) && !mustClose {
			continue
		}
		what := "had to close"
		if inFinal {
			what = fmt.Sprintf("closed with final value %d, count %d,", f.Value, f.Count)
		}
		wc.report("undelivered "+s.String(), Anomaly{Type: AnomalyMissingDelivery, Key: s.String(),
			Description: fmt.Sprintf("window %s %s but the watch never delivered it", s, what)})
	}
}

func sameEvents(a, b []WindowEvent) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func describeCommit(evs []WindowEvent, wm int64) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, e := range evs {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s@%d+%d", e.Key, e.Time, e.Value)
	}
	fmt.Fprintf(&b, "} watermark %d", wm)
	return b.String()
}

func sortedIndexes(m map[uint64][]string) []uint64 {
	out := make([]uint64, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(a, b int) bool { return out[a] < out[b] })
	return out
}

func sortedSlots(m map[wslot][]*wevent) []wslot {
	out := make([]wslot, 0, len(m))
	for s := range m {
		out = append(out, s)
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].key != out[b].key {
			return out[a].key < out[b].key
		}
		return out[a].start < out[b].start
	})
	return out
}

// parsePosition parses a watch position "INDEX/ORD".
func parsePosition(s string) (uint64, uint64, error) {
	a, b, ok := strings.Cut(s, "/")
	if !ok {
		return 0, 0, fmt.Errorf("position %q: want INDEX/ORD", s)
	}
	ix, err := strconv.ParseUint(a, 10, 64)
	if err != nil {
		return 0, 0, err
	}
	ord, err := strconv.ParseUint(b, 10, 32)
	return ix, ord, err
}
