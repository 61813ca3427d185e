package window

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestTableWatermark(t *testing.T) {
	a := func(wm int64) ProducerWatermark { return ProducerWatermark{wm, ProducerActive} }
	i := func(wm int64) ProducerWatermark { return ProducerWatermark{wm, ProducerIdle} }
	f := func(wm int64) ProducerWatermark { return ProducerWatermark{wm, ProducerFinished} }
	for _, c := range []struct {
		name string
		prev int64
		ps   []ProducerWatermark
		want int64
	}{
		{"no producers keeps prev", 7, nil, 7},
		{"no producers from the start", MinWatermark, nil, MinWatermark},
		{"min over active", MinWatermark, []ProducerWatermark{a(30), a(12), a(20)}, 12},
		{"idle does not hold back", 0, []ProducerWatermark{a(30), i(5)}, 30},
		{"finished does not hold back", 0, []ProducerWatermark{f(5), a(30)}, 30},
		{"all quiet: max of quiet", 0, []ProducerWatermark{i(12), f(21), i(3)}, 21},
		{"all quiet, below prev: prev", 50, []ProducerWatermark{i(12), f(21)}, 50},
		{"never regresses", 25, []ProducerWatermark{a(12), i(40)}, 25},
		{"unknown status holds back like active", 0, []ProducerWatermark{{3, 99}, a(30)}, 3},
		{"active at MinWatermark", MinWatermark, []ProducerWatermark{a(MinWatermark), a(5)}, MinWatermark},
		{"finished is not +infinity", 0, []ProducerWatermark{f(10)}, 10},
	} {
		if got := TableWatermark(c.prev, c.ps); got != c.want {
			t.Errorf("%s: TableWatermark(%d, %v) = %d, want %d", c.name, c.prev, c.ps, got, c.want)
		}
	}
}

// TestTableWatermarkProperties: order-independent and monotonic.
func TestTableWatermarkProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	prev := MinWatermark
	for range 5000 {
		ps := make([]ProducerWatermark, rng.IntN(4))
		for j := range ps {
			ps[j] = ProducerWatermark{rng.Int64N(1000), ProducerStatus(rng.IntN(3))}
		}
		got := TableWatermark(prev, ps)
		if got < prev {
			t.Fatalf("regressed from %d to %d with %v", prev, got, ps)
		}
		shuffled := slices.Clone(ps)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if again := TableWatermark(prev, shuffled); again != got {
			t.Fatalf("order dependent: %v -> %d, %v -> %d", ps, got, shuffled, again)
		}
		prev = got
	}
}
