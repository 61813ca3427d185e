package traffic

import (
	"testing"

	"github.com/cairn-db/cairn/linearizability"
)

func TestCounterDeltasAreIdentifiable(t *testing.T) {
	key0, _ := CounterKey(0)
	prev := int64(0)
	for m := int64(0); m < perKey; m++ {
		key, d := CounterKey(m)
		if key != key0 {
			t.Fatalf("increment %d on %s, want %s", m, key, key0)
		}
		if prev != 0 && d != 4*prev {
			t.Fatalf("delta %d after %d: not ratio 4", d, prev)
		}
		prev = d
	}
	if key, d := CounterKey(perKey); key == key0 || d != 1 {
		t.Fatalf("increment %d: %s %+d", perKey, key, d)
	}
}

func TestValidate(t *testing.T) {
	c := DefaultConfig(linearizability.KindBank)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.Kind = "queue"
	if c.Validate() == nil {
		t.Fatal("unknown workload accepted")
	}
	c = DefaultConfig(linearizability.KindCounter)
	c.Redeliver = 2
	if c.Validate() == nil {
		t.Fatal("probability 2 accepted")
	}
}

// Once stop is closed no step may start, even when the limiter is behind
// and the slot is due at once: a Step that left its commit on stop keeps
// the session at the seq it did not consume.
func TestLimiterStopsAfterStop(t *testing.T) {
	l := &limiter{interval: 0}
	stop := make(chan struct{})
	close(stop)
	for i := 0; i < 1000; i++ {
		if l.wait(stop) {
			t.Fatalf("wait %d returned true after stop", i)
		}
	}
}
