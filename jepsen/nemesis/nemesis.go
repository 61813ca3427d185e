// Package nemesis injects faults into a running cluster: process kills and
// pauses, packet-dropping partitions, lossy or slow links, membership
// churn and leadership transfers. Each nemesis says whether it can run
// here (Available), injects a fault (Inject) and removes it (Heal). A
// seeded schedule alternates quiet periods and faults, one fault at a
// time, and HealAll restores a fully connected, fully running cluster.
package nemesis

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/jepsen/cluster"
	"github.com/cairn-db/cairn/jepsen/netfault"
)

// Env is what nemeses act on.
type Env struct {
	Cluster *cluster.Cluster
	// Net drops packets between nodes; nil when unavailable (NetErr says why).
	Net    *netfault.Net
	NetErr error
	// LatencyErr says why tc netem latency is unavailable (nil: available).
	LatencyErr error
	// Admin is a client over every node for membership, leadership and
	// checkpoint calls.
	Admin *api.Client
	// TrailingLogs is the nodes' --trailing-logs (the snapshot nemesis
	// compacts the leader's log past a follower by that much).
	TrailingLogs uint64
	Logf         func(format string, args ...any)
}

func (e *Env) logf(format string, args ...any) {
	if e.Logf != nil {
		e.Logf(format, args...)
	}
}

// Nemesis is one kind of fault.
type Nemesis interface {
	Name() string
	// Available says whether the fault can be injected here, and if not why.
	Available(env *Env) (bool, string)
	// Inject starts the fault and describes what it did.
	Inject(ctx context.Context, env *Env, rng *rand.Rand) (string, error)
	// Heal ends the fault. It is safe to call when nothing is injected.
	Heal(ctx context.Context, env *Env) error
}

// Catalogue returns a fresh instance of every nemesis, by name.
func Catalogue() map[string]Nemesis {
	all := []Nemesis{
		&kill{name: "kill-node", pick: pickRandom},
		&kill{name: "kill-leader", pick: pickLeader},
		&kill{name: "kill-majority", pick: pickMajority},
		&pause{name: "pause-node", pick: pickRandom},
		&pause{name: "pause-leader", pick: pickLeader},
		&partition{name: "partition-leader", split: splitLeader},
		&partition{name: "partition-follower", split: splitFollower},
		&partition{name: "partition-halves", split: splitHalves},
		&netem{},
		&membership{},
		&transfer{},
		&snapshotNemesis{},
	}
	m := map[string]Nemesis{}
	for _, n := range all {
		m[n.Name()] = n
	}
	return m
}

// Aliases expand short names on the command line.
var Aliases = map[string][]string{
	"kill":      {"kill-node", "kill-leader", "kill-majority"},
	"pause":     {"pause-node", "pause-leader"},
	"partition": {"partition-leader", "partition-follower", "partition-halves"},
	"all": {"kill-node", "kill-leader", "kill-majority", "pause-node", "pause-leader",
		"partition-leader", "partition-follower", "partition-halves", "netem", "membership", "transfer", "snapshot"},
}

// Expand resolves a comma-separated list of nemesis names and aliases
// ("none" or "" for no faults) into sorted, de-duplicated names.
func Expand(list string) ([]string, error) {
	cat := Catalogue()
	set := map[string]bool{}
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		switch {
		case f == "" || f == "none":
		case Aliases[f] != nil:
			for _, a := range Aliases[f] {
				set[a] = true
			}
		case cat[f] != nil:
			set[f] = true
		default:
			return nil, fmt.Errorf("unknown nemesis %q (known: %s)", f, strings.Join(Names(), ", "))
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

// Names lists every nemesis and alias.
func Names() []string {
	var out []string
	for n := range Catalogue() {
		out = append(out, n)
	}
	for a := range Aliases {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// Event is one fault on the timeline (run clock, nanoseconds).
type Event struct {
	Name        string `json:"name"`
	Detail      string `json:"detail"`
	Start       int64  `json:"start_ns"`
	End         int64  `json:"end_ns"`
	InjectError string `json:"inject_error,omitempty"`
	HealError   string `json:"heal_error,omitempty"`
	// Snapshot is what a snapshot-nemesis injection did and observed.
	Snapshot *SnapshotFault `json:"snapshot,omitempty"`
}

// Schedule alternates quiet periods and faults.
type Schedule struct {
	Seed uint64
	// Quiet and Hold are the mean lengths of the pause between faults and
	// of a fault; each is drawn uniformly from [mean/2, 3·mean/2].
	Quiet, Hold time.Duration
	// HealTimeout bounds one Heal.
	HealTimeout time.Duration
}

// Run injects faults from nemeses on the schedule until stop closes or ctx
// ends, healing each before the next; it returns the timeline. now is the
// run clock.
func Run(ctx context.Context, env *Env, nemeses []Nemesis, s Schedule, now func() int64, stop <-chan struct{}) []Event {
	if len(nemeses) == 0 {
		return nil
	}
	rng := rand.New(rand.NewPCG(s.Seed, 0x6e656d65736973))
	draw := func(mean time.Duration) time.Duration {
		return mean/2 + time.Duration(rng.Int64N(int64(mean)+1))
	}
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-stop:
			return false
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	var events []Event
	for wait(draw(s.Quiet)) {
		n := nemeses[rng.IntN(len(nemeses))]
		ev := Event{Name: n.Name(), Start: now()}
		detail, err := n.Inject(ctx, env, rng)
		ev.Detail = detail
		if err != nil {
			ev.InjectError = err.Error()
			env.logf("nemesis %s: inject failed: %v", n.Name(), err)
		} else {
			env.logf("nemesis %s: %s", n.Name(), detail)
			wait(draw(s.Hold))
		}
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.HealTimeout)
		if err := n.Heal(hctx, env); err != nil {
			ev.HealError = err.Error()
			env.logf("nemesis %s: heal failed: %v", n.Name(), err)
		}
		cancel()
		if sn, ok := n.(*snapshotNemesis); ok {
			if f := sn.outcome(); f != nil {
				ev.Snapshot = f
				ev.Detail += "; " + f.Summary()
				env.logf("nemesis %s: %s", n.Name(), f.Summary())
			}
		}
		ev.End = now()
		events = append(events, ev)
	}
	return events
}
