package nemesis

import (
	"context"
	"errors"
	"math/rand/v2"

	"github.com/cairn-db/cairn/jepsen/cluster"
)

// A picker chooses the targets of a fault among running nodes.
type picker func(ctx context.Context, env *Env, rng *rand.Rand) ([]*cluster.Node, error)

func running(env *Env) []*cluster.Node {
	var out []*cluster.Node
	for _, n := range env.Cluster.Nodes() {
		if n.State() == cluster.StateRunning {
			out = append(out, n)
		}
	}
	return out
}

func pickRandom(_ context.Context, env *Env, rng *rand.Rand) ([]*cluster.Node, error) {
	r := running(env)
	if len(r) == 0 {
		return nil, errors.New("no running node")
	}
	return []*cluster.Node{r[rng.IntN(len(r))]}, nil
}

func pickLeader(ctx context.Context, env *Env, rng *rand.Rand) ([]*cluster.Node, error) {
	l, _, err := env.Cluster.Leader(ctx)
	if err != nil {
		return nil, err
	}
	return []*cluster.Node{l}, nil
}

func pickMajority(_ context.Context, env *Env, rng *rand.Rand) ([]*cluster.Node, error) {
	all := env.Cluster.Nodes()
	r := running(env)
	k := len(all)/2 + 1
	if len(r) < k {
		return nil, errors.New("fewer running nodes than a majority")
	}
	rng.Shuffle(len(r), func(i, j int) { r[i], r[j] = r[j], r[i] })
	return r[:k], nil
}

func ids(ns []*cluster.Node) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.ID
	}
	return out
}
