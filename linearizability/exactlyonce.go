package linearizability

import (
	"fmt"
	"sort"
)

// CounterSummary is the exactly-once accounting of one counter key.
type CounterSummary struct {
	Key string `json:"key"`
	// Logical increments (retries merged) by what the clients learned.
	Acked    int `json:"acked"`
	Unknown  int `json:"unknown"`   // not acknowledged, may have applied
	Failed   int `json:"failed"`    // definitely not applied
	Resolved int `json:"committed"` // unknown but found in the committed log
	// Sums of deltas of the same groups (Resolved is included in Unknown).
	AckedSum    int64 `json:"acked_sum"`
	UnknownSum  int64 `json:"unknown_sum"`
	ResolvedSum int64 `json:"committed_sum"`
	FailedSum   int64 `json:"failed_sum"`
	// FinalRead is the read marked Final (else the last read by call).
	FinalRead  string `json:"final_read,omitempty"`
	FinalTotal *int64 `json:"final_total,omitempty"`
	// Identifiable: deltas were distinct, positive and each divided the
	// next, so every read was decoded into per-increment counts.
	Identifiable bool `json:"identifiable"`
	Reads        int  `json:"reads"`
}

// CheckExactlyOnce checks the counter workload's accounting, independently
// of porcupine. For every ok read R of a key with total T:
//
//   - must: committed increments that R must include — acknowledged before
//     R was called, or (if R is Final) acknowledged or found in the log;
//   - may: other increments not known to have failed, called before R
//     returned.
//
// T must lie in [must + negative(may), must + positive(may)]. If the key's
// deltas are identifiable (distinct, positive, each divides the next, e.g.
// distinct powers of two), T is decoded into how many times each increment
// was applied, which names the lost, duplicated or phantom increment. It
// also reports attempts of one (producer, epoch, seq) with different inputs
// or different acknowledged results. See README.md for what is not detected.
func CheckExactlyOnce(h History) ([]Anomaly, []CounterSummary) {
	incs, anomalies := groupIncrements(h)
	byKey := make(map[string][]*increment)
	for _, inc := range incs {
		byKey[inc.key] = append(byKey[inc.key], inc)
	}
	reads := make(map[string][]int)
	for i := range h {
		if h[i].Type == OpRead && h[i].OutputKnown() && h[i].Total != nil {
			reads[h[i].Key] = append(reads[h[i].Key], i)
			if _, ok := byKey[h[i].Key]; !ok {
				byKey[h[i].Key] = nil
			}
		}
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var summaries []CounterSummary
	for _, k := range keys {
		idx := reads[k]
		sortByCall(h, idx)
		a, s := checkCounterKey(h, k, byKey[k], idx)
		anomalies = append(anomalies, a...)
		summaries = append(summaries, s)
	}
	return anomalies, summaries
}

// identifiable returns the key's increments sorted by delta if deltas are
// distinct, positive and each divides the next; otherwise nil.
func identifiable(incs []*increment) []*increment {
	if len(incs) == 0 {
		return nil
	}
	sorted := append([]*increment(nil), incs...)
	sort.Slice(sorted, func(a, b int) bool { return sorted[a].delta < sorted[b].delta })
	for i, inc := range sorted {
		if inc.delta <= 0 {
			return nil
		}
		if i > 0 && (inc.delta == sorted[i-1].delta || inc.delta%sorted[i-1].delta != 0) {
			return nil
		}
	}
	return sorted
}

// decode is decodeValues over the deltas of sorted (from identifiable).
func decode(total int64, sorted []*increment) (counts []int64, rest int64) {
	deltas := make([]int64, len(sorted))
	for i, inc := range sorted {
		deltas[i] = inc.delta
	}
	return decodeValues(total, deltas)
}

// decodeValues writes total in the mixed radix of values (ascending, each
// dividing the next): counts[i] is how many times values[i] is contained,
// rest what no combination explains (total mod the smallest value). Exact
// as long as each value is contained fewer than values[i+1]/values[i]
// times. The counter checker decodes a read's total over the key's deltas,
// the window checker a window's value over its events' values.
func decodeValues(total int64, values []int64) (counts []int64, rest int64) {
	counts = make([]int64, len(values))
	rest = total % values[0]
	for i := range values {
		v := total
		if i+1 < len(values) {
			v = total % values[i+1]
		}
		counts[i] = v / values[i]
	}
	return counts, rest
}

func checkCounterKey(h History, key string, incs []*increment, readIdx []int) ([]Anomaly, CounterSummary) {
	sum := CounterSummary{Key: key, Reads: len(readIdx)}
	for _, inc := range incs {
		switch {
		case inc.failed:
			sum.Failed++
			sum.FailedSum += inc.delta
		case inc.acked:
			sum.Acked++
			sum.AckedSum += inc.delta
		default:
			sum.Unknown++
			sum.UnknownSum += inc.delta
			if inc.committed {
				sum.Resolved++
				sum.ResolvedSum += inc.delta
			}
		}
	}
	finalMarked := false
	for _, i := range readIdx { // in call order: last Final read, else last read
		if h[i].Final || !finalMarked {
			sum.FinalRead, sum.FinalTotal, finalMarked = h[i].ID, h[i].Total, h[i].Final
		}
	}
	sorted := identifiable(incs)
	sum.Identifiable = sorted != nil

	var anomalies []Anomaly
	reported := make(map[string]int) // anomaly type + ident -> index in anomalies
	report := func(dedup string, a Anomaly) {
		if j, ok := reported[dedup]; ok {
			anomalies[j].Occurrences++
			return
		}
		a.Checker, a.Key, a.Occurrences = CheckerExactlyOnce, key, 1
		reported[dedup] = len(anomalies)
		anomalies = append(anomalies, a)
	}
	for _, ri := range readIdx {
		r := &h[ri]
		t := *r.Total
		var must, lo, hi int64
		mustSet := make(map[*increment]bool)
		possible := make(map[*increment]bool)
		for _, inc := range incs {
			if inc.failed || inc.call > r.Return {
				continue
			}
			if inc.committed && ((inc.acked && inc.ackReturn < r.Call) || r.Final) {
				mustSet[inc] = true
				must += inc.delta
				continue
			}
			possible[inc] = true
			if inc.delta < 0 {
				lo += inc.delta
			} else {
				hi += inc.delta
			}
		}
		lo, hi = must+lo, must+hi
		if sorted == nil || t < 0 {
			if t < lo {
				report("low", Anomaly{Type: AnomalyTotalOutOfRange, Ops: []string{r.ID},
					Description: fmt.Sprintf("read %s of key %q returned %d, below the lowest possible total %d (increments that must be included sum to %d): acknowledged increments were lost",
						r.ID, key, t, lo, must)})
			}
			if t > hi {
				report("high", Anomaly{Type: AnomalyTotalOutOfRange, Ops: []string{r.ID},
					Description: fmt.Sprintf("read %s of key %q returned %d, above the highest possible total %d (%d must be included, at most %d more possible): some increment was applied more than once, or a failed or not-yet-issued increment was applied",
						r.ID, key, t, hi, must, hi-must)})
			}
			continue
		}
		counts, rest := decode(t, sorted)
		if rest != 0 {
			report("rest", Anomaly{Type: AnomalyTotalOutOfRange, Ops: []string{r.ID},
				Description: fmt.Sprintf("read %s of key %q returned %d, which no combination of the key's increments explains (remainder %d modulo the smallest delta %d)",
					r.ID, key, t, rest, sorted[0].delta)})
		}
		for i, inc := range sorted {
			c := counts[i]
			ops := append([]string{r.ID}, inc.ids...)
			switch {
			case c == 0 && mustSet[inc]:
				why := fmt.Sprintf("acknowledged at %d, before the read was called at %d", inc.ackReturn, r.Call)
				if r.Final && !(inc.acked && inc.ackReturn < r.Call) {
					why = "committed before the final read"
				}
				report("lost "+inc.ident, Anomaly{Type: AnomalyLostIncrement, Ops: ops,
					Description: fmt.Sprintf("%s was %s, but read %s returned %d which does not include it: an acknowledged increment was lost",
						inc.describe(), why, r.ID, t)})
			case c >= 2:
				report("dup "+inc.ident, Anomaly{Type: AnomalyDuplicateIncrement, Ops: ops,
					Description: fmt.Sprintf("%s (attempts %s) is included %d times in total %d returned by read %s: the increment was applied more than once",
						inc.describe(), joinIDs(inc.ids, 8), c, t, r.ID)})
			case c >= 1 && inc.failed:
				report("phantom "+inc.ident, Anomaly{Type: AnomalyPhantomIncrement, Ops: ops,
					Description: fmt.Sprintf("%s failed definitely (every attempt was rejected), but read %s returned %d which includes it",
						inc.describe(), r.ID, t)})
			case c >= 1 && !possible[inc] && !mustSet[inc]:
				report("phantom "+inc.ident, Anomaly{Type: AnomalyPhantomIncrement, Ops: ops,
					Description: fmt.Sprintf("%s was first called at %d, after read %s returned at %d, yet the read's total %d includes it",
						inc.describe(), inc.call, r.ID, r.Return, t)})
			}
		}
	}
	return anomalies, sum
}
