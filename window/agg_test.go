package window

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

func mustAgg(t testing.TB, kind AggKind, p uint8) Aggregator {
	t.Helper()
	a, err := NewAggregator(kind, p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func fold(t testing.TB, a Aggregator, vs []int64) []byte {
	t.Helper()
	var s []byte
	var err error
	for _, v := range vs {
		if s, err = a.Update(s, v); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// foldBulk is fold with a single decode and encode, for large inputs: it
// skips the per-Update canonicalization (it is not a substitute for fold when
// testing that).
func foldBulk(t testing.TB, a Aggregator, vs []int64) []byte {
	t.Helper()
	var st aggState
	for _, v := range vs {
		a.add(&st, v)
	}
	s, err := a.encode(&st)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAggResults(t *testing.T) {
	vs := []int64{5, -3, 12, 5, 0}
	for _, c := range []struct {
		kind AggKind
		vs   []int64
		want string
	}{
		{AggCount, vs, "5"}, {AggSum, vs, "19"}, {AggMin, vs, "-3"}, {AggMax, vs, "12"}, {AggMean, vs, "3.8"}, {AggDistinct, vs, "4"},
		{AggCount, nil, "0"}, {AggSum, nil, "0"}, {AggMin, nil, "null"}, {AggMax, nil, "null"}, {AggMean, nil, "null"}, {AggDistinct, nil, "0"},
		{AggSum, []int64{math.MaxInt64, math.MaxInt64}, "9223372036854775807(overflow)"},
		{AggSum, []int64{math.MinInt64, -1}, "-9223372036854775808(overflow)"},
		// The 128-bit sum comes back into range exactly.
		{AggSum, []int64{math.MaxInt64, math.MaxInt64, math.MinInt64, math.MinInt64, 7}, "5"},
		{AggMean, []int64{math.MaxInt64, math.MaxInt64}, "9.223372036854776e+18"},
		{AggMean, []int64{1, 2}, "1.5"},
		{AggMean, []int64{-1, -2, 0}, "-1"},
		{AggMin, []int64{math.MinInt64, math.MaxInt64}, "-9223372036854775808"},
	} {
		a := mustAgg(t, c.kind, 0)
		v, err := a.Result(fold(t, a, c.vs))
		if err != nil || v.String() != c.want || v.Count != uint64(len(c.vs)) {
			t.Errorf("%s%v = %v (n=%d), %v; want %s", c.kind, c.vs, v, v.Count, err, c.want)
		}
	}
}

// TestAggGolden pins the encoding: replicas running different builds must
// produce the same bytes, so any change here needs a new stateVersion.
func TestAggGolden(t *testing.T) {
	for _, c := range []struct {
		kind AggKind
		vs   []int64
		hex  string
	}{
		{AggCount, []int64{9, 9, 9}, "010103"},
		{AggSum, []int64{5}, "010201000a"},
		{AggSum, []int64{-5}, "0102010009"},
		{AggSum, []int64{math.MaxInt64, 1}, "01020202ffffffffffffffffff01"},
		{AggMin, []int64{3, -2}, "01030203"},
		{AggMax, []int64{3, -2}, "01040206"},
		{AggMean, []int64{1, 2, 3}, "010503000c"},
		{AggDistinct, []int64{1}, "010601020e0001000000000000000101246d1e000000049eda9109"},
	} {
		got := hex.EncodeToString(fold(t, mustAgg(t, c.kind, 0), c.vs))
		if got != c.hex {
			t.Errorf("%s%v encodes to %s, want %s", c.kind, c.vs, got, c.hex)
		}
	}
	vs := make([]int64, 20000)
	for i := range vs {
		vs[i] = int64(i)
	}
	sum := sha256.Sum256(foldBulk(t, mustAgg(t, AggDistinct, 0), vs))
	if got, want := hex.EncodeToString(sum[:8]), "03b2c9b7c3e3c761"; got != want {
		t.Errorf("dense hll of 0..19999 hashes to %s, want %s", got, want)
	}
}

// TestAggMergeCanonical: however the values are split, ordered and merged,
// the encoded state is byte-identical to folding them in order. For distinct
// this crosses the sparse-to-dense transition at several precisions.
func TestAggMergeCanonical(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	type cfg struct {
		kind   AggKind
		p      uint8
		n      int
		bulk   bool // fold chunks with foldBulk (p=14 sequential folds are slow)
		trials int
	}
	cfgs := []cfg{{AggCount, 0, 50, false, 4}, {AggSum, 0, 50, false, 4}, {AggMin, 0, 50, false, 4}, {AggMax, 0, 50, false, 4}, {AggMean, 0, 50, false, 4},
		{AggDistinct, 4, 40, false, 4}, {AggDistinct, 6, 300, false, 4}, {AggDistinct, 10, 1500, false, 2},
		{AggDistinct, 14, 200, false, 4}, {AggDistinct, 14, 12000, true, 2}}
	for _, c := range cfgs {
		a := mustAgg(t, c.kind, c.p)
		fold := fold
		if c.bulk {
			fold = foldBulk
		}
		for trial := range c.trials {
			vs := make([]int64, c.n)
			for i := range vs {
				vs[i] = rng.Int64N(int64(c.n)) * (1 << uint(rng.IntN(60)))
				if c.kind != AggDistinct {
					vs[i] = rng.Int64() >> uint(rng.IntN(64))
				}
			}
			want := fold(t, a, vs)
			// Shuffled, split into random chunks, merged in random order.
			rng.Shuffle(len(vs), func(i, j int) { vs[i], vs[j] = vs[j], vs[i] })
			var parts [][]byte
			for len(vs) > 0 {
				k := 1 + rng.IntN(len(vs))
				parts = append(parts, fold(t, a, vs[:k]))
				vs = vs[k:]
			}
			for len(parts) > 1 {
				i := rng.IntN(len(parts) - 1)
				m, err := a.Merge(parts[i], parts[i+1])
				if err != nil {
					t.Fatal(err)
				}
				parts = append(parts[:i], append([][]byte{m}, parts[i+2:]...)...)
			}
			if c.kind == AggDistinct {
				// Exercise both representations: large inputs end dense.
				hdr := 2 + len(binary.AppendUvarint(nil, uint64(c.n)))
				if dense := want[hdr+3] == 0; dense != (c.n != 200) { // 200 values stay sparse at p=14
					t.Fatalf("p=%d n=%d: dense=%v", c.p, c.n, dense)
				}
			}
			if !bytes.Equal(parts[0], want) {
				t.Fatalf("%s p=%d n=%d trial %d: merged state differs from folded state (len %d vs %d)", c.kind, c.p, c.n, trial, len(parts[0]), len(want))
			}
			if err := a.Validate(want); err != nil {
				t.Fatal(err)
			}
			if m, _ := a.Merge(nil, want); !bytes.Equal(m, want) {
				t.Fatal("merge with empty changed the state")
			}
		}
	}
}

func TestHLLEstimate(t *testing.T) {
	a := mustAgg(t, AggDistinct, 0)
	vs := make([]int64, 0, 30000)
	for i := range 10000 {
		vs = append(vs, int64(i)*7919, int64(i)*7919, int64(i)*7919) // each value thrice
	}
	v, err := a.Result(foldBulk(t, a, vs))
	if err != nil || math.Abs(float64(v.Int)-10000) > 300 || v.Count != 30000 {
		t.Fatalf("estimate %v (n=%d), %v; want ~10000", v, v.Count, err)
	}
}

func TestAggDecodeErrors(t *testing.T) {
	sum, mn := mustAgg(t, AggSum, 0), mustAgg(t, AggMin, 0)
	s := fold(t, sum, []int64{1})
	if _, err := mn.Update(s, 1); !errors.Is(err, ErrAggMismatch) {
		t.Errorf("sum state to min aggregator: %v", err)
	}
	d4, d5 := mustAgg(t, AggDistinct, 4), mustAgg(t, AggDistinct, 5)
	if _, err := d5.Merge(fold(t, d4, []int64{1}), nil); !errors.Is(err, ErrAggMismatch) {
		t.Errorf("precision mismatch: %v", err)
	}
	if _, err := (Aggregator{}).Update(nil, 1); !errors.Is(err, ErrAggMismatch) {
		t.Errorf("zero aggregator: %v", err)
	}
	for _, bad := range []string{
		"00", "0102", "020201000a", "0102000000", // short, version, zero count
		"010201000a00",     // trailing byte
		"01028100000a",     // non-minimal count varint
		"010201800000",     // non-minimal varint
		"010201",           // missing sum
		"01060102",         // truncated hll
		"0106010201000000", // hll with wrong version
	} {
		b, _ := hex.DecodeString(bad)
		a := sum
		if len(b) > 1 && b[1] == 6 {
			a = mustAgg(t, AggDistinct, 0)
		}
		if err := a.Validate(b); !errors.Is(err, ErrCorruptState) && !errors.Is(err, ErrAggMismatch) {
			t.Errorf("%s: %v, want ErrCorruptState", bad, err)
		}
	}
	// A non-canonical (uncompacted) sparse sketch is rejected.
	sk := mustAgg(t, AggDistinct, 0).newHLL()
	sk.Insert([]byte("x"))
	raw, _ := sk.MarshalBinary()
	if err := mustAgg(t, AggDistinct, 0).Validate(append([]byte{1, 6, 1}, raw...)); !errors.Is(err, ErrCorruptState) {
		t.Errorf("uncompacted hll: %v", err)
	}
}
