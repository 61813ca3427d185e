package window

import (
	"bytes"
	"cmp"
	"errors"
	"math/rand/v2"
	"testing"
)

type keyTuple struct {
	table string
	key   []byte
	w     Window
	close int64
}

func randBytes(rng *rand.Rand) []byte {
	b := make([]byte, rng.IntN(4))
	for i := range b {
		b[i] = []byte{0, 1, 0xff, 'a', 'b'}[rng.IntN(5)]
	}
	return b
}

func randTuple(rng *rand.Rand) keyTuple {
	times := []int64{MinWatermark, -1 << 62, -10, -1, 0, 1, 10, 1 << 62, 1<<63 - 2}
	s := times[rng.IntN(len(times)-1)] + int64(rng.IntN(3))
	return keyTuple{string(randBytes(rng)), randBytes(rng), Window{s, s + 1 + int64(rng.IntN(2))}, times[rng.IntN(len(times))]}
}

func TestKeyRoundTripAndOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		a, b := randTuple(rng), randTuple(rng)
		ka, kb := EncodeWindowKey(a.table, a.key, a.w), EncodeWindowKey(b.table, b.key, b.w)
		tb, key, w, err := DecodeWindowKey(ka)
		if err != nil || tb != a.table || !bytes.Equal(key, a.key) || w != a.w {
			t.Fatalf("window key round trip %+v: %q %q %v %v", a, tb, key, w, err)
		}
		// Data keys order by (table, key, End, Start).
		want := cmp.Or(cmp.Compare(a.table, b.table), bytes.Compare(a.key, b.key), cmp.Compare(a.w.End, b.w.End), cmp.Compare(a.w.Start, b.w.Start))
		if got := bytes.Compare(ka, kb); got != want {
			t.Fatalf("order of %+v vs %+v: %d, want %d", a, b, got, want)
		}
		ca, cb := EncodeCloseKey(a.table, a.close, a.key, a.w), EncodeCloseKey(b.table, b.close, b.key, b.w)
		tb, ct, key, w, err := DecodeCloseKey(ca)
		if err != nil || tb != a.table || ct != a.close || !bytes.Equal(key, a.key) || w != a.w {
			t.Fatalf("close key round trip %+v: %v", a, err)
		}
		// The close index orders by (table, close time, key, Start, End).
		want = cmp.Or(cmp.Compare(a.table, b.table), cmp.Compare(a.close, b.close), bytes.Compare(a.key, b.key), cmp.Compare(a.w.Start, b.w.Start), cmp.Compare(a.w.End, b.w.End))
		if got := bytes.Compare(ca, cb); got != want {
			t.Fatalf("close order of %+v vs %+v: %d, want %d", a, b, got, want)
		}
		// Spans contain exactly the keys they describe.
		sp := WindowSpan(b.table, b.key, b.close, b.w.End)
		in := bytes.Compare(sp.Lower, ka) <= 0 && bytes.Compare(ka, sp.Upper) < 0
		if want := a.table == b.table && bytes.Equal(a.key, b.key) && b.close <= a.w.End && a.w.End <= b.w.End; in != want {
			t.Fatalf("WindowSpan(%+v) contains %+v: %v, want %v", b, a, in, want)
		}
		sp = CloseSpan(b.table, b.w.Start, b.close)
		in = bytes.Compare(sp.Lower, ca) <= 0 && bytes.Compare(ca, sp.Upper) < 0
		if want := a.table == b.table && b.w.Start < a.close && a.close <= b.close; in != want {
			t.Fatalf("CloseSpan(%+v) contains %+v: %v, want %v", b, a, in, want)
		}
		for i, sp := range TableSpans(b.table) {
			k := []([]byte){ka, ca}[i]
			if in := bytes.Compare(sp.Lower, k) <= 0 && bytes.Compare(k, sp.Upper) < 0; in != (a.table == b.table) {
				t.Fatalf("TableSpans(%q)[%d] contains %+v: %v", b.table, i, a, in)
			}
		}
	}
}

func TestKeyDecodeErrors(t *testing.T) {
	good := EncodeWindowKey("t", []byte("k"), Window{1, 2})
	for _, bad := range [][]byte{
		nil, {'x'}, {TagWindow}, good[:len(good)-1], append(good[:len(good):len(good)], 0),
		EncodeWindowKey("t", []byte("k"), Window{2, 2}), // empty window
		[]byte("wt\x00\x02"),                            // bad escape
		EncodeCloseKey("t", 0, nil, Window{0, 1}),       // wrong tag
	} {
		if _, _, _, err := DecodeWindowKey(bad); !errors.Is(err, ErrCorruptKey) {
			t.Errorf("DecodeWindowKey(%q) = %v", bad, err)
		}
	}
	if _, _, _, _, err := DecodeCloseKey(good); !errors.Is(err, ErrCorruptKey) {
		t.Errorf("DecodeCloseKey(window key) = %v", err)
	}
}
