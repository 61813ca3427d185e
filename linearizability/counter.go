package linearizability

import (
	"fmt"
	"sort"
	"strings"

	"github.com/anishathalye/porcupine"
)

// increment is one logical increment: all add attempts sharing a
// (producer, epoch, seq), or a single add record when Producer is empty.
type increment struct {
	ident  string // "producer/epoch/seq" or "id:<request id>"
	key    string
	delta  int64
	client int
	ids    []string // request ids of every attempt, in call order
	// call is the earliest call of an attempt that may have applied.
	call int64
	// acked: some attempt completed ok with known output; ackReturn is the
	// earliest such return. The increment took effect before ackReturn.
	acked     bool
	ackReturn int64
	// committed: acked, or found in the committed log by ResolveUnknowns.
	committed bool
	// failed: every attempt definitely did not apply.
	failed bool
	// total is the first acknowledged add result, if the store returns one.
	total *int64
}

func (inc *increment) describe() string {
	return fmt.Sprintf("add(%q, %+d) [%s]", inc.key, inc.delta, inc.ident)
}

func incrementIdent(op *Op) string {
	if op.Producer == "" {
		return "id:" + op.ID
	}
	return fmt.Sprintf("%s/%d/%d", op.Producer, op.Epoch, op.Seq)
}

// groupIncrements merges add attempts into logical increments, ordered by
// first call. It reports attempts of one increment that disagree on their
// inputs (key, delta) or on their acknowledged results (Total).
func groupIncrements(h History) ([]*increment, []Anomaly) {
	idx := make([]int, 0, len(h))
	for i := range h {
		if h[i].Type == OpAdd {
			idx = append(idx, i)
		}
	}
	sortByCall(h, idx)
	byIdent := make(map[string]*increment)
	results := make(map[string]map[int64][]string) // ident -> total -> ids
	var incs []*increment
	var anomalies []Anomaly
	conflicted := make(map[string]bool)
	for _, i := range idx {
		op := &h[i]
		ident := incrementIdent(op)
		inc := byIdent[ident]
		if inc == nil {
			inc = &increment{ident: ident, key: op.Key, delta: op.Delta, client: op.Client,
				call: op.Call, ackReturn: InfiniteReturn, failed: true}
			byIdent[ident] = inc
			incs = append(incs, inc)
		} else if (op.Key != inc.key || op.Delta != inc.delta) && !conflicted[ident] {
			conflicted[ident] = true
			anomalies = append(anomalies, Anomaly{
				Checker: CheckerExactlyOnce, Type: AnomalyConflictingInputs, Key: inc.key,
				Ops: []string{inc.ids[0], op.ID},
				Description: fmt.Sprintf("increment %s was sent as add(%q, %+d) (id %s) and as add(%q, %+d) (id %s): one (producer, epoch, seq) must name one increment",
					ident, inc.key, inc.delta, inc.ids[0], op.Key, op.Delta, op.ID),
			})
		}
		inc.ids = append(inc.ids, op.ID)
		if !op.maybeApplied() {
			continue
		}
		if inc.failed || op.Call < inc.call {
			inc.call = op.Call
		}
		if inc.failed {
			inc.client = op.Client
		}
		inc.failed = false
		if op.Outcome == OutcomeOK {
			inc.committed = true
		}
		if op.OutputKnown() {
			inc.acked = true
			inc.ackReturn = min(inc.ackReturn, op.Return)
			if op.Total != nil {
				if inc.total == nil {
					inc.total = op.Total
				}
				if results[ident] == nil {
					results[ident] = make(map[int64][]string)
				}
				results[ident][*op.Total] = append(results[ident][*op.Total], op.ID)
			}
		}
	}
	for _, inc := range incs {
		res := results[inc.ident]
		if len(res) < 2 {
			continue
		}
		totals := make([]int64, 0, len(res))
		for t := range res {
			totals = append(totals, t)
		}
		sort.Slice(totals, func(a, b int) bool { return totals[a] < totals[b] })
		var parts, ids []string
		for _, t := range totals {
			parts = append(parts, fmt.Sprintf("total=%d (ids %s)", t, strings.Join(res[t], ",")))
			ids = append(ids, res[t]...)
		}
		anomalies = append(anomalies, Anomaly{
			Checker: CheckerExactlyOnce, Type: AnomalyConflictingResults, Key: inc.key, Ops: ids,
			Description: fmt.Sprintf("increment %s on key %q was acknowledged with different results: %s; a retry must be answered with the original result, so the increment was probably applied more than once",
				inc.ident, inc.key, strings.Join(parts, " vs ")),
		})
	}
	return incs, anomalies
}

type counterInput struct {
	op    OpType
	key   string
	delta int64
	ident string
}

func (in counterInput) partitionKey() string { return in.key }

type counterOutput struct {
	unknown  bool
	hasTotal bool
	total    int64
}

// CounterOperations converts a counter history to porcupine operations.
// Add attempts of one logical increment (same producer, epoch, seq) are
// merged into one operation spanning from the earliest call to the
// earliest acknowledgement (InfiniteReturn if never acknowledged), so the
// model applies each logical increment at most once. Increments whose
// attempts all failed are dropped, as are reads without a known answer.
// Unacknowledged increments found in the committed log must precede a
// Final read on their key (their return time is capped at its call).
//
// On keys whose deltas are identifiable (see CheckExactlyOnce) every read is
// decoded into the set of increments it includes, and the interval of each
// unacknowledged increment is narrowed: it cannot take effect before the
// call of a read that excludes it, and must take effect before the return
// of a read that includes it. These constraints hold in every valid
// linearization, so narrowing never turns a linearizable history illegal;
// it keeps unknown increments from blowing up porcupine's search.
func CounterOperations(h History) []porcupine.Operation {
	incs, _ := groupIncrements(h)
	finals := finalCalls(h, opKey)
	narrowed := narrowUnacked(h, incs, finals)
	ops := make([]porcupine.Operation, 0, len(h))
	for _, inc := range incs {
		if inc.failed {
			continue
		}
		out := counterOutput{unknown: !inc.acked}
		if inc.acked && inc.total != nil {
			out.hasTotal, out.total = true, *inc.total
		}
		op := porcupine.Operation{
			ClientId: inc.client,
			Input:    counterInput{op: OpAdd, key: inc.key, delta: inc.delta, ident: inc.ident},
			Call:     inc.call,
			Output:   out,
			Return:   inc.ackReturn,
			Metadata: opMeta{ids: inc.ids, committed: inc.committed && !inc.acked},
		}
		if iv, ok := narrowed[inc]; ok {
			op.Call, op.Return = iv[0], iv[1]
			op.Metadata = opMeta{ids: inc.ids, committed: inc.committed && !inc.acked, narrowed: true}
		}
		ops = append(ops, op)
	}
	for i := range h {
		op := &h[i]
		if op.Type != OpRead || !op.OutputKnown() || op.Total == nil {
			continue
		}
		ops = append(ops, porcupineOp(op, counterInput{op: OpRead, key: op.Key},
			counterOutput{hasTotal: true, total: *op.Total}))
	}
	capCommitted(ops, finals, inputKey)
	return ops
}

// CounterModel is a per-key int64 counter (initially 0) with add(delta)
// and read() -> total, partitioned by key. If an acknowledged add carries
// the store's result, it must equal the total right after the add.
func CounterModel() porcupine.Model {
	return porcupine.Model{
		Partition: partitionByKey,
		Init:      func() any { return int64(0) },
		Step: func(state, input, output any) (bool, any) {
			s := state.(int64)
			in := input.(counterInput)
			out := output.(counterOutput)
			switch in.op {
			case OpAdd:
				next := s + in.delta
				if !out.unknown && out.hasTotal && out.total != next {
					return false, s
				}
				return true, next
			case OpRead:
				return out.unknown || !out.hasTotal || out.total == s, s
			}
			return false, s
		},
		Equal:                     func(a, b any) bool { return a.(int64) == b.(int64) },
		Hash:                      func(state any) uint64 { return uint64(state.(int64)) },
		DescribeOperation:         describeCounterOp,
		DescribeOperationMetadata: describeMeta,
		DescribeState:             func(state any) string { return fmt.Sprintf("%d", state.(int64)) },
	}
}

func describeCounterOp(input, output any) string {
	in := input.(counterInput)
	out := output.(counterOutput)
	switch in.op {
	case OpAdd:
		s := fmt.Sprintf("add(%q, %+d) [%s]", in.key, in.delta, in.ident)
		switch {
		case out.unknown:
			return s + " -> ? (unknown)"
		case out.hasTotal:
			return fmt.Sprintf("%s -> total %d", s, out.total)
		}
		return s + " -> ok"
	case OpRead:
		return fmt.Sprintf("read(%q) -> %d", in.key, out.total)
	}
	return fmt.Sprintf("%v -> %v", in, out)
}

// narrowUnacked returns narrowed [call, return] intervals for unacknowledged
// increments on identifiable keys, as described in CounterOperations.
// Contradictory constraints (a read includes the increment, a later one
// excludes it; or it is committed but the Final read excludes it) leave the
// interval alone for porcupine to judge.
func narrowUnacked(h History, incs []*increment, finals map[string]int64) map[*increment][2]int64 {
	byKey := make(map[string][]*increment)
	for _, inc := range incs {
		byKey[inc.key] = append(byKey[inc.key], inc)
	}
	out := make(map[*increment][2]int64)
	for key, keyIncs := range byKey {
		sorted := identifiable(keyIncs)
		if sorted == nil {
			continue
		}
		lo := make([]int64, len(sorted))
		hi := make([]int64, len(sorted))
		for i, inc := range sorted {
			lo[i], hi[i] = inc.call, inc.ackReturn
			if c, ok := finals[key]; ok && inc.committed && c > inc.call {
				hi[i] = min(hi[i], c-1) // as capCommitted
			}
		}
		for j := range h {
			r := &h[j]
			if r.Type != OpRead || r.Key != key || !r.OutputKnown() || r.Total == nil || *r.Total < 0 {
				continue
			}
			counts, _ := decode(*r.Total, sorted)
			for i := range sorted {
				if counts[i] > 0 {
					hi[i] = min(hi[i], r.Return)
				} else {
					lo[i] = max(lo[i], r.Call)
				}
			}
		}
		for i, inc := range sorted {
			if inc.acked || inc.failed || lo[i] > hi[i] || (lo[i] == inc.call && hi[i] == inc.ackReturn) {
				continue
			}
			out[inc] = [2]int64{lo[i], hi[i]}
		}
	}
	return out
}
