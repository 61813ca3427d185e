package nemesis

import (
	"context"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

func TestExpand(t *testing.T) {
	got, err := Expand("kill, transfer,kill-leader")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"kill-leader", "kill-majority", "kill-node", "transfer"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if got, _ := Expand("none"); len(got) != 0 {
		t.Fatalf("none: %v", got)
	}
	if _, err := Expand("kill,bogus"); err == nil {
		t.Fatal("unknown nemesis accepted")
	}
	all, _ := Expand("all")
	if len(all) != len(Catalogue()) {
		t.Fatalf("all = %v, catalogue has %d", all, len(Catalogue()))
	}
}

// fake records the order of injections and ends the run after limit.
type fake struct {
	name  string
	log   *[]string
	limit int
	stop  chan struct{}
}

func (f *fake) Name() string                  { return f.name }
func (f *fake) Available(*Env) (bool, string) { return true, "" }
func (f *fake) Heal(context.Context, *Env) error {
	return nil
}
func (f *fake) Inject(_ context.Context, _ *Env, rng *rand.Rand) (string, error) {
	*f.log = append(*f.log, f.name)
	if len(*f.log) == f.limit {
		close(f.stop)
	}
	return "detail", nil
}

func schedule(seed uint64) []string {
	var log []string
	stop := make(chan struct{})
	var ns []Nemesis
	for _, n := range []string{"a", "b", "c", "d"} {
		ns = append(ns, &fake{name: n, log: &log, limit: 12, stop: stop})
	}
	clock := int64(0)
	evs := Run(context.Background(), &Env{}, ns, Schedule{Seed: seed, Quiet: time.Millisecond, Hold: time.Millisecond, HealTimeout: time.Second},
		func() int64 { clock++; return clock }, stop)
	if len(evs) != 12 {
		panic("wrong number of events")
	}
	for _, e := range evs {
		if e.End < e.Start {
			panic("event ends before it starts")
		}
	}
	return log
}

func TestScheduleIsSeeded(t *testing.T) {
	a, b, c := schedule(7), schedule(7), schedule(8)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("same seed, different schedules: %v vs %v", a, b)
	}
	if reflect.DeepEqual(a, c) {
		t.Fatalf("different seeds, same schedule: %v", a)
	}
}
