package linearizability

import (
	"fmt"
	"hash/fnv"
	"sort"
	"strings"

	"github.com/anishathalye/porcupine"
)

// BankOptions describes the bank workload.
type BankOptions struct {
	// Initial balances of every account the workload uses (a zero balance
	// must still be listed). The sum is the invariant total.
	Initial map[string]int64 `json:"initial"`
	// NoNegative: the store promises balances never go negative, i.e. a
	// transfer is applied only if From holds at least Amount and is
	// otherwise rejected (ok with Applied=false, or fail). The model then
	// checks each transfer's precondition, and every read is checked for
	// negative balances. Without it, transfers are unconditional.
	NoNegative bool `json:"no_negative"`
}

func (b BankOptions) accounts() []string {
	names := make([]string, 0, len(b.Initial))
	for a := range b.Initial {
		names = append(names, a)
	}
	sort.Strings(names)
	return names
}

func (b BankOptions) total() int64 {
	var t int64
	for _, v := range b.Initial {
		t += v
	}
	return t
}

type bankInput struct {
	op       OpType
	from, to int // account indices
	amount   int64
}

type bankOutput struct {
	unknown  bool
	applied  *bool   // transfer
	balances []int64 // read-all, indexed like BankOptions.accounts()
}

// bankState is the balances, indexed like BankOptions.accounts(). It is
// never mutated once created.
type bankState []int64

// BankOperations converts a bank history to porcupine operations (one
// partition: every transfer touches two accounts and every read sees all).
// Failed operations and reads without a known answer are dropped; unknown
// transfers get InfiniteReturn (capped at the first Final read's call if
// they were found in the committed log). It fails if an account is not in
// opts.Initial.
func BankOperations(h History, opts BankOptions) ([]porcupine.Operation, error) {
	names := opts.accounts()
	index := make(map[string]int, len(names))
	for i, a := range names {
		index[a] = i
	}
	lookup := func(op *Op, a string) (int, error) {
		i, ok := index[a]
		if !ok {
			return 0, fmt.Errorf("record %q: account %q not in BankOptions.Initial", op.ID, a)
		}
		return i, nil
	}
	ops := make([]porcupine.Operation, 0, len(h))
	for i := range h {
		op := &h[i]
		if !op.maybeApplied() {
			continue
		}
		known := op.OutputKnown()
		switch op.Type {
		case OpTransfer:
			from, err := lookup(op, op.From)
			if err != nil {
				return nil, err
			}
			to, err := lookup(op, op.To)
			if err != nil {
				return nil, err
			}
			out := bankOutput{unknown: !known}
			if known {
				out.applied = op.Applied
			}
			ops = append(ops, porcupineOp(op, bankInput{op: OpTransfer, from: from, to: to, amount: op.Amount}, out))
		case OpReadAll:
			if !known {
				continue
			}
			bal := make([]int64, len(names))
			for a, v := range op.Balances {
				j, err := lookup(op, a)
				if err != nil {
					return nil, err
				}
				bal[j] = v
			}
			ops = append(ops, porcupineOp(op, bankInput{op: OpReadAll}, bankOutput{balances: bal}))
		}
	}
	noKey := func(porcupine.Operation) string { return "" }
	capCommitted(ops, finalCalls(h, func(*Op) string { return "" }), noKey)
	return ops, nil
}

// BankModel is a set of accounts (opts.Initial) with atomic transfers and a
// read of all balances. It is not partitioned. With opts.NoNegative a
// transfer applies iff From holds at least Amount.
func BankModel(opts BankOptions) porcupine.Model {
	names := opts.accounts()
	return porcupine.Model{
		Init: func() any {
			s := make(bankState, len(names))
			for i, a := range names {
				s[i] = opts.Initial[a]
			}
			return s
		},
		Step: func(state, input, output any) (bool, any) {
			s := state.(bankState)
			in := input.(bankInput)
			out := output.(bankOutput)
			switch in.op {
			case OpTransfer:
				can := !opts.NoNegative || s[in.from] >= in.amount
				switch {
				case out.unknown:
				case out.applied == nil || *out.applied:
					if !can {
						return false, s
					}
				default: // definite rejection: must be justified under NoNegative
					return !opts.NoNegative || !can, s
				}
				if !can {
					return true, s
				}
				next := append(bankState(nil), s...)
				next[in.from] -= in.amount
				next[in.to] += in.amount
				return true, next
			case OpReadAll:
				if out.unknown {
					return true, s
				}
				for i := range s {
					if s[i] != out.balances[i] {
						return false, s
					}
				}
				return true, s
			}
			return false, s
		},
		Equal: func(a, b any) bool {
			x, y := a.(bankState), b.(bankState)
			for i := range x {
				if x[i] != y[i] {
					return false
				}
			}
			return true
		},
		Hash: func(state any) uint64 {
			h := fnv.New64a()
			for _, v := range state.(bankState) {
				var b [8]byte
				for i := range b {
					b[i] = byte(v >> (8 * i))
				}
				h.Write(b[:])
			}
			return h.Sum64()
		},
		DescribeOperation: func(input, output any) string {
			in := input.(bankInput)
			out := output.(bankOutput)
			switch in.op {
			case OpTransfer:
				s := fmt.Sprintf("transfer(%s -> %s, %d)", names[in.from], names[in.to], in.amount)
				switch {
				case out.unknown:
					return s + " -> ? (unknown)"
				case out.applied != nil && !*out.applied:
					return s + " -> rejected"
				}
				return s + " -> ok"
			case OpReadAll:
				return "read-all -> " + describeBalances(names, out.balances)
			}
			return fmt.Sprintf("%v -> %v", in, out)
		},
		DescribeState:             func(state any) string { return describeBalances(names, state.(bankState)) },
		DescribeOperationMetadata: describeMeta,
	}
}

func describeBalances(names []string, bal []int64) string {
	var b strings.Builder
	var sum int64
	b.WriteByte('{')
	for i, v := range bal {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s:%d", names[i], v)
		sum += v
	}
	fmt.Fprintf(&b, "} total=%d", sum)
	return b.String()
}

// CheckBankInvariants checks every ok read-all, whether or not it is
// linearizable: the balances must sum to the initial total, and with
// opts.NoNegative no balance may be negative. Accounts missing from a read
// count as 0. Each violating read is reported.
func CheckBankInvariants(h History, opts BankOptions) []Anomaly {
	names := opts.accounts()
	want := opts.total()
	var anomalies []Anomaly
	idx := make([]int, 0, len(h))
	for i := range h {
		if h[i].Type == OpReadAll && h[i].OutputKnown() {
			idx = append(idx, i)
		}
	}
	sortByCall(h, idx)
	for _, i := range idx {
		op := &h[i]
		bal := make([]int64, len(names))
		var sum int64
		var negative []string
		for j, a := range names {
			bal[j] = op.Balances[a]
			sum += bal[j]
			if bal[j] < 0 {
				negative = append(negative, fmt.Sprintf("%s=%d", a, bal[j]))
			}
		}
		for a, v := range op.Balances {
			if _, ok := opts.Initial[a]; !ok {
				sum += v // undeclared account: still money
			}
		}
		if sum != want {
			anomalies = append(anomalies, Anomaly{
				Checker: CheckerBankInvariant, Type: AnomalyTotalChanged, Ops: []string{op.ID}, Occurrences: 1,
				Description: fmt.Sprintf("read %s (client %d, call %d) returned %s: total %d differs from the initial total %d by %+d",
					op.ID, op.Client, op.Call, describeBalances(names, bal), sum, want, sum-want),
			})
		}
		if opts.NoNegative && len(negative) > 0 {
			anomalies = append(anomalies, Anomaly{
				Checker: CheckerBankInvariant, Type: AnomalyNegativeBalance, Ops: []string{op.ID}, Occurrences: 1,
				Description: fmt.Sprintf("read %s (client %d, call %d) returned negative balances %s although the workload promises none",
					op.ID, op.Client, op.Call, strings.Join(negative, ", ")),
			})
		}
	}
	return anomalies
}
