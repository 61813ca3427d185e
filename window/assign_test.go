package window

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

func mustSpec(t testing.TB, s string) Spec {
	t.Helper()
	spec, err := ParseSpec(s)
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

func TestAssign(t *testing.T) {
	for _, c := range []struct {
		spec string
		t    int64
		want []Window
	}{
		{"tumbling 10ms count", 0, []Window{{0, 10}}},
		{"tumbling 10ms count", 9, []Window{{0, 10}}},
		{"tumbling 10ms count", 10, []Window{{10, 20}}},
		{"tumbling 10ms count", -1, []Window{{-10, 0}}},
		{"tumbling 10ms count", -10, []Window{{-10, 0}}},
		{"tumbling 10ms count", -11, []Window{{-20, -10}}},
		{"tumbling 10ms count", MinTime, []Window{{MinTime - 4, MinTime + 6}}}, // -2^60 = -6 mod 10
		{"tumbling 10ms count", MaxTime, []Window{{MaxTime - 6, MaxTime + 4}}}, // 2^60 = 6 mod 10
		{"hopping 10ms 5ms count", 0, []Window{{-5, 5}, {0, 10}}},
		{"hopping 10ms 5ms count", 4, []Window{{-5, 5}, {0, 10}}},
		{"hopping 10ms 5ms count", 5, []Window{{0, 10}, {5, 15}}},
		{"hopping 10ms 5ms count", -5, []Window{{-10, 0}, {-5, 5}}},
		{"hopping 10ms 5ms count", -6, []Window{{-15, -5}, {-10, 0}}},
		{"hopping 10ms 10ms count", -1, []Window{{-10, 0}}},
		{"hopping 10ms 3ms count", 0, []Window{{-9, 1}, {-6, 4}, {-3, 7}, {0, 10}}},
		{"hopping 10ms 3ms count", 1, []Window{{-6, 4}, {-3, 7}, {0, 10}}},
		{"hopping 10ms 3ms count", -1, []Window{{-9, 1}, {-6, 4}, {-3, 7}}},
		{"session 10ms count", -3, []Window{{-3, 7}}},
	} {
		got, err := Assign(mustSpec(t, c.spec), c.t)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("Assign(%s, %d) = %v, %v; want %v", c.spec, c.t, got, err, c.want)
		}
	}
	for _, bad := range []int64{MinTime - 1, MaxTime + 1, -1 << 63, 1<<63 - 1} {
		if _, err := Assign(mustSpec(t, "tumbling 1s count"), bad); !errors.Is(err, ErrTimeOutOfRange) {
			t.Errorf("Assign(%d) = %v, want ErrTimeOutOfRange", bad, err)
		}
	}
}

// TestAssignBruteForce checks Assign against enumerating candidate starts
// with truncating division and testing containment directly.
func TestAssignBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for range 20000 {
		size := 1 + rng.Int64N(50)
		slide := 1 + rng.Int64N(size)
		spec := Spec{Kind: Hopping, Size: size, Slide: slide, Agg: AggCount}
		if rng.IntN(4) == 0 {
			spec = Spec{Kind: Tumbling, Size: size, Agg: AggCount}
			slide = size
		}
		ts := rng.Int64N(400) - 200
		got, err := Assign(spec, ts)
		if err != nil {
			t.Fatal(err)
		}
		var want []Window
		for k := ts/slide - size/slide - 2; k <= ts/slide+2; k++ {
			if w := (Window{k * slide, k*slide + size}); w.Contains(ts) {
				want = append(want, w)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("Assign(%v, %d) = %v, want %v", spec, ts, got, want)
		}
	}
}

func TestMergeSession(t *testing.T) {
	w := func(s, e int64) Window { return Window{s, e} }
	for _, c := range []struct {
		existing []Window
		t        int64
		merged   Window
		absorbed []Window
	}{
		{nil, 5, w(5, 15), nil},
		{[]Window{w(0, 10)}, 5, w(0, 15), []Window{w(0, 10)}},
		{[]Window{w(0, 20)}, 5, w(0, 20), []Window{w(0, 20)}},                       // inside
		{[]Window{w(0, 10)}, 10, w(10, 20), nil},                                    // touching on the right
		{[]Window{w(20, 30)}, 10, w(10, 20), nil},                                   // touching on the left
		{[]Window{w(20, 30)}, 11, w(11, 30), []Window{w(20, 30)}},                   // extends left
		{[]Window{w(0, 10), w(15, 25)}, 9, w(0, 25), []Window{w(0, 10), w(15, 25)}}, // bridges
		{[]Window{w(-30, -20), w(0, 10), w(40, 50)}, -25, w(-30, -15), []Window{w(-30, -20)}},
	} {
		m, a := MergeSession(c.existing, c.t, 10)
		if m != c.merged || !slices.Equal(a, c.absorbed) {
			t.Errorf("MergeSession(%v, %d) = %v %v, want %v %v", c.existing, c.t, m, a, c.merged, c.absorbed)
		}
	}
}

func TestLatenessBoundaries(t *testing.T) {
	spec := mustSpec(t, "tumbling 10ms sum lateness=5ms retention=20ms")
	w := Window{-10, 0}
	if CloseTime(spec, w) != 5 || ExpireTime(spec, w) != 25 {
		t.Fatalf("close %d expire %d", CloseTime(spec, w), ExpireTime(spec, w))
	}
	for _, c := range []struct {
		wm            int64
		late, expired bool
	}{{MinWatermark, false, false}, {4, false, false}, {5, true, false}, {24, true, false}, {25, true, true}, {1<<63 - 1, true, true}} {
		if IsLate(spec, w, c.wm) != c.late || IsExpired(spec, w, c.wm) != c.expired {
			t.Errorf("wm %d: late %v expired %v, want %v %v", c.wm, IsLate(spec, w, c.wm), IsExpired(spec, w, c.wm), c.late, c.expired)
		}
	}
	// Sessions are retained at least one gap after closing.
	for _, c := range []struct {
		spec   string
		expire int64
	}{{"session 10ms count lateness=5ms", 25}, {"session 10ms count lateness=5ms retention=3ms", 25}, {"session 10ms count lateness=5ms retention=30ms", 45}} {
		if got := ExpireTime(mustSpec(t, c.spec), Window{0, 10}); got != c.expire {
			t.Errorf("%s: ExpireTime = %d, want %d", c.spec, got, c.expire)
		}
	}
}

// TestEngineLatenessBoundary drives the engine exactly at End+lateness for
// each window kind.
func TestEngineLatenessBoundary(t *testing.T) {
	for _, c := range []struct {
		spec string
		t    int64 // event time whose only/own window closes at 15
	}{{"tumbling 10ms count lateness=5ms", 3}, {"hopping 10ms 10ms count lateness=5ms", 3}, {"session 10ms count lateness=5ms", 0}} {
		for _, wm := range []int64{14, 15} {
			eng, err := NewEngine("t", mustSpec(t, c.spec))
			if err != nil {
				t.Fatal(err)
			}
			eff, err := eng.Apply(&MemState{}, Event{Key: []byte("k"), Time: c.t, Value: 1}, wm)
			if err != nil {
				t.Fatal(err)
			}
			if want := wm == 15; eff.Late != want || (len(eff.Puts) == 0) != want {
				t.Errorf("%s at watermark %d: %+v, want late=%v", c.spec, wm, eff, want)
			}
		}
	}
}

func ExampleAssign() {
	spec, _ := ParseSpec("hopping 1m 30s count")
	ws, _ := Assign(spec, -1)
	fmt.Println(ws)
	// Output: [[-60000,0) [-30000,30000)]
}
