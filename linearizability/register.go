package linearizability

import (
	"fmt"
	"hash/fnv"
	"sort"
	"strings"

	"github.com/anishathalye/porcupine"
)

// keyed is implemented by model inputs that belong to a key partition.
type keyed interface{ partitionKey() string }

// partitionByKey splits operations by their input's key, in key order.
// Operations on different keys of a register or counter are independent,
// so a history is linearizable iff every key's sub-history is.
func partitionByKey(ops []porcupine.Operation) [][]porcupine.Operation {
	byKey := make(map[string][]porcupine.Operation)
	for _, op := range ops {
		k := op.Input.(keyed).partitionKey()
		byKey[k] = append(byKey[k], op)
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([][]porcupine.Operation, 0, len(keys))
	for _, k := range keys {
		out = append(out, byKey[k])
	}
	return out
}

// partitionName returns the key of a partition, or "" if not keyed.
func partitionName(ops []porcupine.Operation) string {
	if len(ops) > 0 {
		if k, ok := ops[0].Input.(keyed); ok {
			return k.partitionKey()
		}
	}
	return ""
}

// opMeta is the porcupine Metadata of every operation built here.
type opMeta struct {
	ids       []string // request ids (several for a retried increment)
	committed bool     // found in the committed log, output unknown
	narrowed  bool     // interval narrowed using decoded reads (counter)
}

func (m opMeta) String() string {
	s := "id=" + m.ids[0]
	if len(m.ids) > 1 {
		s = "ids=" + joinIDs(m.ids, 8)
	}
	if m.narrowed {
		s += " (interval narrowed from decoded reads)"
	}
	return s
}

func describeMeta(m any) string { return m.(opMeta).String() }

// porcupineOp builds a porcupine operation from a record. Operations with
// unknown outputs get InfiniteReturn.
func porcupineOp(op *Op, in, out any) porcupine.Operation {
	ret := op.Return
	if !op.OutputKnown() {
		ret = InfiniteReturn
	}
	return porcupine.Operation{
		ClientId: op.Client,
		Input:    in,
		Call:     op.Call,
		Output:   out,
		Return:   ret,
		Metadata: opMeta{ids: []string{op.ID}, committed: op.Outcome == OutcomeOK && ret == InfiniteReturn},
	}
}

// finalCalls maps partition key to the earliest call of a Final read with
// a known answer on it ("" for unpartitioned models).
func finalCalls(h History, keyOf func(*Op) string) map[string]int64 {
	m := make(map[string]int64)
	for i := range h {
		op := &h[i]
		if op.Final && !op.Type.IsWrite() && op.OutputKnown() {
			k := keyOf(op)
			if c, ok := m[k]; !ok || op.Call < c {
				m[k] = op.Call
			}
		}
	}
	return m
}

// capCommitted gives operations found in the committed log (outcome ok,
// output unknown) a return time no later than the first Final read of
// their partition: by the harness contract they were applied before it.
func capCommitted(ops []porcupine.Operation, final map[string]int64, keyOf func(porcupine.Operation) string) {
	for i := range ops {
		if !ops[i].Metadata.(opMeta).committed {
			continue
		}
		// Intervals are closed: end strictly before the read's call.
		if c, ok := final[keyOf(ops[i])]; ok && c > ops[i].Call && c-1 < ops[i].Return {
			ops[i].Return = c - 1
		}
	}
}

func opKey(op *Op) string                    { return op.Key }
func inputKey(op porcupine.Operation) string { return op.Input.(keyed).partitionKey() }

type registerInput struct {
	op       OpType
	key      string
	value    string // put value, cas new value
	expected string // cas expected value
}

func (in registerInput) partitionKey() string { return in.key }

type registerOutput struct {
	unknown bool
	found   bool   // get
	value   string // get
	applied bool   // cas
}

// registerState is the value of one key.
type registerState struct {
	present bool
	value   string
}

// RegisterOperations converts a register history to porcupine operations:
// failed operations are dropped, reads without a known answer are dropped
// (they constrain nothing), and writes with unknown outcome get
// InfiniteReturn and an output the model does not check. Writes found in
// the committed log (see ResolveUnknowns) must precede a Final read: their
// return time is capped at the first Final read's call on the key.
func RegisterOperations(h History) []porcupine.Operation {
	ops := make([]porcupine.Operation, 0, len(h))
	for i := range h {
		op := &h[i]
		if !op.maybeApplied() {
			continue
		}
		known := op.OutputKnown()
		in := registerInput{op: op.Type, key: op.Key}
		out := registerOutput{unknown: !known}
		switch op.Type {
		case OpPut:
			in.value = op.Value
		case OpDelete:
		case OpGet:
			if !known {
				continue
			}
			out.found, out.value = op.Found, op.Result
		case OpCAS:
			in.expected, in.value = op.Expected, op.Value
			if known {
				out.applied = op.Applied != nil && *op.Applied
			}
		default:
			continue
		}
		ops = append(ops, porcupineOp(op, in, out))
	}
	capCommitted(ops, finalCalls(h, opKey), inputKey)
	return ops
}

// RegisterModel is a per-key string register (absent until first put)
// supporting put, get, cas(expected, new) and delete, partitioned by key.
func RegisterModel() porcupine.Model {
	return porcupine.Model{
		Partition: partitionByKey,
		Init:      func() any { return registerState{} },
		Step: func(state, input, output any) (bool, any) {
			s := state.(registerState)
			in := input.(registerInput)
			out := output.(registerOutput)
			switch in.op {
			case OpPut:
				return true, registerState{present: true, value: in.value}
			case OpDelete:
				return true, registerState{}
			case OpGet:
				if out.unknown {
					return true, s
				}
				if out.found != s.present {
					return false, s
				}
				return !out.found || out.value == s.value, s
			case OpCAS:
				match := s.present && s.value == in.expected
				if !out.unknown && out.applied != match {
					return false, s
				}
				if match {
					return true, registerState{present: true, value: in.value}
				}
				return true, s
			}
			return false, s
		},
		Equal: func(a, b any) bool { return a.(registerState) == b.(registerState) },
		Hash: func(state any) uint64 {
			s := state.(registerState)
			h := fnv.New64a()
			if s.present {
				h.Write([]byte{1})
			}
			h.Write([]byte(s.value))
			return h.Sum64()
		},
		DescribeOperation:         describeRegisterOp,
		DescribeOperationMetadata: describeMeta,
		DescribeState: func(state any) string {
			s := state.(registerState)
			if !s.present {
				return "<absent>"
			}
			return quote(s.value)
		},
	}
}

func describeRegisterOp(input, output any) string {
	in := input.(registerInput)
	out := output.(registerOutput)
	var b strings.Builder
	switch in.op {
	case OpPut:
		fmt.Fprintf(&b, "put(%q, %q)", in.key, in.value)
	case OpDelete:
		fmt.Fprintf(&b, "delete(%q)", in.key)
	case OpGet:
		fmt.Fprintf(&b, "get(%q)", in.key)
		switch {
		case out.unknown:
		case out.found:
			fmt.Fprintf(&b, " -> %q", out.value)
		default:
			b.WriteString(" -> not found")
		}
	case OpCAS:
		fmt.Fprintf(&b, "cas(%q, %q -> %q)", in.key, in.expected, in.value)
		if !out.unknown {
			if out.applied {
				b.WriteString(" -> ok")
			} else {
				b.WriteString(" -> failed")
			}
		}
	}
	if out.unknown && in.op != OpGet {
		b.WriteString(" -> ? (unknown)")
	}
	return b.String()
}
