package window

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"math/bits"
	"strconv"

	"github.com/axiomhq/hyperloglog"
	"github.com/zeebo/xxh3"
)

// Aggregate state encoding (see DESIGN.md). The empty state (no events) is
// the nil/empty byte slice for every aggregation. A non-empty state is
//
//	byte    version (1)
//	byte    AggKind
//	uvarint count of events, >= 1
//	payload:
//	  count:          nothing
//	  sum, mean:      varint hi', varint lo  -- the exact 128-bit sum
//	                  hi*2^64+uint64(lo) with hi = hi' + (lo>>63), so sums
//	                  that fit in int64 have hi' = 0
//	  min, max:       varint extreme value
//	  distinct:       canonical github.com/axiomhq/hyperloglog v2 bytes
//	                  (sparse form compacted, see canonicalHLL)
//
// Encodings are canonical: equal aggregate values have identical bytes no
// matter in which order values were added or states merged, and decoding
// rejects (ErrCorruptState) anything that would not re-encode to the same
// bytes.
const stateVersion = 1

// Aggregator updates, merges and reads encoded aggregate states of one kind.
// The zero Aggregator is invalid; get one from Spec.Aggregator or
// NewAggregator. Its methods never modify their input slices.
//
// Inputs are int64 (count ignores the value; distinct counts distinct int64
// values, so hash strings to int64 first, e.g. with HashItem). Results are
// int64 except Mean, which is float64. Sum and Mean accumulate an exact
// 128-bit sum, so they never overflow in practice; a Sum result outside int64
// is reported saturated with Value.Overflow set.
type Aggregator struct {
	kind      AggKind
	precision uint8 // HyperLogLog precision, distinct only
}

// Aggregator returns the aggregator for s (s must be valid).
func (s Spec) Aggregator() Aggregator {
	a := Aggregator{kind: s.Agg}
	if s.Agg == AggDistinct {
		a.precision = s.hllPrecision()
	}
	return a
}

// NewAggregator returns an aggregator of kind; hllPrecision is as in
// Spec.HLLPrecision.
func NewAggregator(kind AggKind, hllPrecision uint8) (Aggregator, error) {
	s := Spec{Kind: Tumbling, Size: 1, Agg: kind, HLLPrecision: hllPrecision}
	if err := s.Validate(); err != nil {
		return Aggregator{}, err
	}
	return s.Aggregator(), nil
}

// Kind returns the aggregation kind.
func (a Aggregator) Kind() AggKind { return a.kind }

// aggState is a decoded state.
type aggState struct {
	count uint64
	hi    int64  // sum, mean: high 64 bits of the 128-bit sum
	lo    uint64 // sum, mean: low 64 bits
	ext   int64  // min, max
	hll   *hyperloglog.Sketch
}

func (a Aggregator) check() error {
	if !a.kind.valid() {
		return fmt.Errorf("%w: invalid aggregator (kind %s)", ErrAggMismatch, a.kind)
	}
	return nil
}

// Update returns the state after adding value v to state (nil = empty).
func (a Aggregator) Update(state []byte, v int64) ([]byte, error) {
	st, err := a.decode(state, false)
	if err != nil {
		return nil, err
	}
	a.add(&st, v)
	return a.encode(&st)
}

func (a Aggregator) add(st *aggState, v int64) {
	first := st.count == 0
	st.count++
	switch a.kind {
	case AggSum, AggMean:
		st.hi, st.lo = add128(st.hi, st.lo, v>>63, uint64(v))
	case AggMin:
		if first || v < st.ext {
			st.ext = v
		}
	case AggMax:
		if first || v > st.ext {
			st.ext = v
		}
	case AggDistinct:
		if st.hll == nil {
			st.hll = a.newHLL()
		}
		st.hll.Insert(distinctItem(v))
	}
}

func distinctItem(v int64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(v))
	return b[:]
}

// Merge returns the state of the union of the events behind x and y (either
// may be nil). Merge is commutative and associative on encodings.
func (a Aggregator) Merge(x, y []byte) ([]byte, error) {
	sx, err := a.decode(x, false)
	if err != nil {
		return nil, err
	}
	sy, err := a.decode(y, false)
	if err != nil {
		return nil, err
	}
	switch {
	case sy.count == 0:
		return a.encode(&sx)
	case sx.count == 0:
		return a.encode(&sy)
	}
	sx.count += sy.count
	switch a.kind {
	case AggSum, AggMean:
		sx.hi, sx.lo = add128(sx.hi, sx.lo, sy.hi, sy.lo)
	case AggMin:
		sx.ext = min(sx.ext, sy.ext)
	case AggMax:
		sx.ext = max(sx.ext, sy.ext)
	case AggDistinct:
		if err := sx.hll.Merge(sy.hll); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrAggMismatch, err)
		}
	}
	return a.encode(&sx)
}

// ValueKind says which field of a Value is meaningful.
type ValueKind uint8

const (
	ValueNull  ValueKind = iota // no events (min, max and mean of an empty state)
	ValueInt                    // Value.Int
	ValueFloat                  // Value.Float
)

// Value is the result of an aggregate state.
type Value struct {
	Kind  ValueKind
	Int   int64
	Float float64
	// Count is the number of events aggregated, for every aggregation.
	Count uint64
	// Overflow is set when a Sum does not fit in int64; Int is then
	// math.MaxInt64 or math.MinInt64.
	Overflow bool
}

func (v Value) String() string {
	switch v.Kind {
	case ValueInt:
		if v.Overflow {
			return strconv.FormatInt(v.Int, 10) + "(overflow)"
		}
		return strconv.FormatInt(v.Int, 10)
	case ValueFloat:
		return strconv.FormatFloat(v.Float, 'g', -1, 64)
	}
	return "null"
}

// Result reads state. Count, Sum and Mean results are exact (Mean is the
// correctly rounded float64 of sum/count, so identical on every platform).
// Distinct is HyperLogLog's estimate; it is computed with floating point
// inside the library, so while the stored state is byte-identical on every
// replica, the estimate could in principle differ in rounding between CPU
// architectures.
func (a Aggregator) Result(state []byte) (Value, error) {
	st, err := a.decode(state, false)
	if err != nil {
		return Value{}, err
	}
	v := Value{Kind: ValueInt, Count: st.count}
	switch a.kind {
	case AggCount:
		v.Int = int64(min(st.count, math.MaxInt64))
	case AggSum:
		if st.hi == int64(st.lo)>>63 {
			v.Int = int64(st.lo)
		} else if v.Overflow = true; st.hi < 0 {
			v.Int = math.MinInt64
		} else {
			v.Int = math.MaxInt64
		}
	case AggMin, AggMax:
		if st.count == 0 {
			v.Kind = ValueNull
		}
		v.Int = st.ext
	case AggMean:
		if st.count == 0 {
			v.Kind = ValueNull
			break
		}
		sum := new(big.Int).Lsh(big.NewInt(st.hi), 64)
		sum.Add(sum, new(big.Int).SetUint64(st.lo))
		v.Kind = ValueFloat
		v.Float, _ = new(big.Rat).SetFrac(sum, new(big.Int).SetUint64(st.count)).Float64()
	case AggDistinct:
		if st.hll != nil {
			v.Int = int64(min(st.hll.Estimate(), math.MaxInt64))
		}
	}
	return v, nil
}

// Validate checks that state is exactly the canonical encoding this
// aggregator writes. Update, Merge and Result are more lenient (they reject
// malformed input with ErrCorruptState but accept, e.g., a non-minimal
// varint) because a full canonical check costs a re-encode; their outputs
// are always canonical.
func (a Aggregator) Validate(state []byte) error {
	_, err := a.decode(state, true)
	return err
}

func add128(hi1 int64, lo1 uint64, hi2 int64, lo2 uint64) (int64, uint64) {
	lo, carry := bits.Add64(lo1, lo2, 0)
	return hi1 + hi2 + int64(carry), lo
}

func (a Aggregator) newHLL() *hyperloglog.Sketch {
	sk, err := hyperloglog.NewSketch(a.precision, true)
	if err != nil {
		panic(fmt.Sprintf("window: hll precision %d escaped validation: %v", a.precision, err))
	}
	return sk
}

func (a Aggregator) encode(st *aggState) ([]byte, error) {
	if err := a.check(); err != nil {
		return nil, err
	}
	if st.count == 0 {
		return nil, nil
	}
	b := make([]byte, 0, 24)
	b = append(b, stateVersion, byte(a.kind))
	b = binary.AppendUvarint(b, st.count)
	switch a.kind {
	case AggSum, AggMean:
		b = binary.AppendVarint(b, st.hi-int64(st.lo)>>63)
		b = binary.AppendVarint(b, int64(st.lo))
	case AggMin, AggMax:
		b = binary.AppendVarint(b, st.ext)
	case AggDistinct:
		h, err := canonicalHLL(st.hll)
		if err != nil {
			return nil, err
		}
		b = append(b, h...)
	}
	return b, nil
}

func (a Aggregator) decode(b []byte, strict bool) (aggState, error) {
	var st aggState
	if err := a.check(); err != nil {
		return st, err
	}
	if len(b) == 0 {
		return st, nil
	}
	corrupt := func(format string, args ...any) (aggState, error) {
		return aggState{}, fmt.Errorf("%w: %s state: %s", ErrCorruptState, a.kind, fmt.Sprintf(format, args...))
	}
	if len(b) < 3 || b[0] != stateVersion {
		return corrupt("bad header % x", b[:min(len(b), 3)])
	}
	if AggKind(b[1]) != a.kind {
		return aggState{}, fmt.Errorf("%w: state of kind %s handed to a %s aggregator", ErrAggMismatch, AggKind(b[1]), a.kind)
	}
	rest := b[2:]
	var n int
	if st.count, n = binary.Uvarint(rest); n <= 0 || st.count == 0 {
		return corrupt("bad event count")
	}
	rest = rest[n:]
	varint := func() (int64, bool) {
		v, n := binary.Varint(rest)
		if n <= 0 {
			return 0, false
		}
		rest = rest[n:]
		return v, true
	}
	switch a.kind {
	case AggSum, AggMean:
		hi, ok1 := varint()
		lo, ok2 := varint()
		if !ok1 || !ok2 {
			return corrupt("bad sum")
		}
		st.hi, st.lo = hi+lo>>63, uint64(lo)
	case AggMin, AggMax:
		var ok bool
		if st.ext, ok = varint(); !ok {
			return corrupt("bad extreme value")
		}
	case AggDistinct:
		if len(rest) < 8 {
			return corrupt("truncated hll")
		}
		if rest[1] != a.precision {
			return aggState{}, fmt.Errorf("%w: hll state does not have precision %d", ErrAggMismatch, a.precision)
		}
		st.hll = new(hyperloglog.Sketch)
		if err := st.hll.UnmarshalBinary(rest); err != nil {
			return corrupt("%v", err)
		}
		rest = nil
	}
	if len(rest) != 0 {
		return corrupt("%d trailing bytes", len(rest))
	}
	if !strict {
		return st, nil
	}
	// Canonical check: only the encoding this package would write is
	// accepted, which also rules out non-minimal varints.
	re, err := a.encode(&st)
	if err != nil {
		return corrupt("%v", err)
	}
	if !bytes.Equal(re, b) {
		return corrupt("not in canonical form")
	}
	return st, nil
}

// canonicalHLL marshals sk in a form that depends only on the set of values
// ever inserted (and the precision), not on insertion order, merge order or
// history, and leaves sk in that form. The library's own encoding is not
// canonical: a sparse sketch serializes an unordered "tmp set" of pending
// keys whose iteration order follows insertion history. Estimate drains the
// tmp set into the sorted, de-duplicated compressed list and converts to the
// dense form exactly when that list is longer than m = 2^p bytes. The list's
// length only grows as values are added, so "dense" is a function of the set
// of values, and the dense registers (max over inserted hashes) are too.
// TestHLLCanonical checks this across insertion orders, merge trees and the
// sparse-to-dense transition.
func canonicalHLL(sk *hyperloglog.Sketch) ([]byte, error) {
	if sk == nil {
		return nil, fmt.Errorf("%w: missing hll sketch", ErrCorruptState)
	}
	b, err := sk.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorruptState, err)
	}
	if len(b) > 3 && b[3] == 1 { // sparse
		sk.Estimate()
		if b, err = sk.MarshalBinary(); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCorruptState, err)
		}
	}
	return b, nil
}

// HashItem maps an arbitrary byte string (a user id, a URL) to the int64 a
// distinct aggregation counts. It is xxh3, stable across versions.
func HashItem(item []byte) int64 { return int64(xxh3.Hash(item)) }
