package nemesis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/cairn-db/cairn/jepsen/netfault"
)

// A splitter divides the nodes into groups that cannot talk to each other.
type splitter func(ctx context.Context, env *Env, rng *rand.Rand) ([][]string, error)

func splitLeader(ctx context.Context, env *Env, _ *rand.Rand) ([][]string, error) {
	l, _, err := env.Cluster.Leader(ctx)
	if err != nil {
		return nil, err
	}
	return isolate(env, l.ID), nil
}

func splitFollower(ctx context.Context, env *Env, rng *rand.Rand) ([][]string, error) {
	l, _, err := env.Cluster.Leader(ctx)
	if err != nil {
		return nil, err
	}
	var fs []string
	for _, n := range env.Cluster.Nodes() {
		if n.ID != l.ID {
			fs = append(fs, n.ID)
		}
	}
	if len(fs) == 0 {
		return nil, errors.New("no follower")
	}
	return isolate(env, fs[rng.IntN(len(fs))]), nil
}

// splitHalves: a random minority (⌊n/2⌋ nodes) against the majority.
func splitHalves(_ context.Context, env *Env, rng *rand.Rand) ([][]string, error) {
	all := ids(env.Cluster.Nodes())
	rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	k := len(all) / 2
	return [][]string{all[:k], all[k:]}, nil
}

func isolate(env *Env, id string) [][]string {
	var rest []string
	for _, n := range env.Cluster.Nodes() {
		if n.ID != id {
			rest = append(rest, n.ID)
		}
	}
	return [][]string{{id}, rest}
}

func netAvailable(env *Env) (bool, string) {
	if env.Net == nil {
		reason := "packet filtering unavailable"
		if env.NetErr != nil {
			reason = env.NetErr.Error()
		}
		return false, reason
	}
	return true, ""
}

// partition drops all packets between groups of nodes (iptables).
type partition struct {
	name  string
	split splitter
}

func (p *partition) Name() string                      { return p.name }
func (p *partition) Available(env *Env) (bool, string) { return netAvailable(env) }

func (p *partition) Inject(ctx context.Context, env *Env, rng *rand.Rand) (string, error) {
	if env.Net == nil {
		return "", env.NetErr
	}
	groups, err := p.split(ctx, env, rng)
	if err != nil {
		return "", err
	}
	if err := env.Net.Partition(groups); err != nil {
		return "", errors.Join(err, env.Net.Heal())
	}
	return fmt.Sprintf("partition %v", groups), nil
}

func (p *partition) Heal(_ context.Context, env *Env) error { return healNet(env) }

// netem degrades every node-to-node link: netem delay and loss when the
// kernel has sch_netem, otherwise random loss with iptables.
type netem struct{}

func (netem) Name() string                      { return "netem" }
func (netem) Available(env *Env) (bool, string) { return netAvailable(env) }

func (netem) Inject(_ context.Context, env *Env, rng *rand.Rand) (string, error) {
	if env.Net == nil {
		return "", env.NetErr
	}
	var links []netfault.Link
	for _, a := range env.Cluster.Nodes() {
		for _, b := range env.Cluster.Nodes() {
			if a != b {
				links = append(links, netfault.Link{From: a.ID, To: b.ID})
			}
		}
	}
	if env.LatencyErr == nil {
		spec := fmt.Sprintf("delay %dms %dms loss %d%%", 20+rng.IntN(80), 10+rng.IntN(20), 1+rng.IntN(5))
		if err := env.Net.Delay(links, spec); err != nil {
			return "", errors.Join(err, env.Net.Heal())
		}
		return "netem " + spec + " on every node link", nil
	}
	p := 0.1 + 0.2*rng.Float64()
	if err := env.Net.Loss(links, p); err != nil {
		return "", errors.Join(err, env.Net.Heal())
	}
	return fmt.Sprintf("drop %.0f%% of packets on every node link (iptables; no latency: %v)", p*100, env.LatencyErr), nil
}

func (netem) Heal(_ context.Context, env *Env) error { return healNet(env) }

// healNet removes every rule; network nemeses share it (one fault at a
// time, so whatever is in force belongs to the one being healed).
func healNet(env *Env) error {
	if env.Net == nil {
		return nil
	}
	return env.Net.Heal()
}
