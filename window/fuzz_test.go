package window

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecodeState: no aggregator method panics on arbitrary bytes; whatever
// Validate accepts round-trips exactly, and whatever any method accepts
// yields valid (canonical) output.
func fuzzAgg(t testing.TB, kind uint8) Aggregator {
	k := AggKind(kind%6 + 1)
	if k == AggDistinct {
		return mustAgg(t, k, MinHLLPrecision) // small dense form: the fuzzer can reach it
	}
	return mustAgg(t, k, 0)
}

func FuzzDecodeState(f *testing.F) {
	for _, kind := range []AggKind{AggCount, AggSum, AggMin, AggMax, AggMean, AggDistinct} {
		a := fuzzAgg(f, uint8(kind)-1)
		s := fold(f, a, []int64{1, -7, 1 << 40})
		f.Add(uint8(kind)-1, s)
		f.Add(uint8(kind)-1, s[:len(s)-1])
	}
	big := foldBulk(f, mustAgg(f, AggDistinct, MinHLLPrecision), []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20})
	f.Add(uint8(AggDistinct)-1, big)
	f.Add(uint8(AggSum)-1, []byte{})
	f.Fuzz(func(t *testing.T, kind uint8, b []byte) {
		a := fuzzAgg(t, kind)
		if err := a.Validate(b); err == nil {
			st, err := a.decode(b, true)
			if err != nil {
				t.Fatal(err)
			}
			re, err := a.encode(&st)
			if err != nil || !bytes.Equal(re, b) {
				t.Fatalf("accepted %x re-encodes to %x, %v", b, re, err)
			}
		} else if !errors.Is(err, ErrCorruptState) && !errors.Is(err, ErrAggMismatch) {
			t.Fatalf("unexpected error class: %v", err)
		}
		_, _ = a.Result(b)
		if u, err := a.Update(b, 42); err == nil {
			if err := a.Validate(u); err != nil {
				t.Fatalf("Update output invalid: %v", err)
			}
		}
		if m, err := a.Merge(b, b); err == nil {
			if err := a.Validate(m); err != nil {
				t.Fatalf("Merge output invalid: %v", err)
			}
		}
	})
}

// FuzzDecodeKey: key decoders never panic, and accepted keys round-trip.
func FuzzDecodeKey(f *testing.F) {
	f.Add(EncodeWindowKey("t", []byte("k\x00"), Window{-5, 5}))
	f.Add(EncodeCloseKey("", 9, []byte{0xff, 0}, Window{-5, 5}))
	f.Add([]byte("w\x00\x01\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if tb, key, w, err := DecodeWindowKey(b); err == nil {
			if re := EncodeWindowKey(tb, key, w); !bytes.Equal(re, b) {
				t.Fatalf("window key %x re-encodes to %x", b, re)
			}
		} else if !errors.Is(err, ErrCorruptKey) {
			t.Fatal(err)
		}
		if tb, ct, key, w, err := DecodeCloseKey(b); err == nil {
			if re := EncodeCloseKey(tb, ct, key, w); !bytes.Equal(re, b) {
				t.Fatalf("close key %x re-encodes to %x", b, re)
			}
		} else if !errors.Is(err, ErrCorruptKey) {
			t.Fatal(err)
		}
	})
}
