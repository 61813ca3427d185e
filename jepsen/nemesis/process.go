package nemesis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/cairn-db/cairn/jepsen/cluster"
)

// kill: kill -9 the picked nodes; Heal restarts them on their data and
// waits until they are ready.
type kill struct {
	name    string
	pick    picker
	victims []*cluster.Node
}

func (k *kill) Name() string { return k.name }

func (k *kill) Available(env *Env) (bool, string) {
	if k.name == "kill-majority" && len(env.Cluster.Nodes()) < 2 {
		return false, "needs at least 2 nodes"
	}
	return true, ""
}

func (k *kill) Inject(ctx context.Context, env *Env, rng *rand.Rand) (string, error) {
	targets, err := k.pick(ctx, env, rng)
	if err != nil {
		return "", err
	}
	for _, n := range targets {
		if err := env.Cluster.Kill(n); err != nil {
			return "", err
		}
		k.victims = append(k.victims, n)
	}
	return fmt.Sprintf("kill -9 %v", ids(targets)), nil
}

func (k *kill) Heal(ctx context.Context, env *Env) error {
	var errs []error
	for _, n := range k.victims {
		if !n.Live() {
			if err := env.Cluster.Restart(n); err != nil {
				errs = append(errs, err)
				continue
			}
		}
	}
	for _, n := range k.victims {
		if err := env.Cluster.WaitReady(ctx, n); err != nil {
			errs = append(errs, err)
		}
	}
	k.victims = nil
	return errors.Join(errs...)
}

// pause: SIGSTOP the picked node; Heal sends SIGCONT.
type pause struct {
	name    string
	pick    picker
	victims []*cluster.Node
}

func (p *pause) Name() string                  { return p.name }
func (p *pause) Available(*Env) (bool, string) { return true, "" }

func (p *pause) Inject(ctx context.Context, env *Env, rng *rand.Rand) (string, error) {
	targets, err := p.pick(ctx, env, rng)
	if err != nil {
		return "", err
	}
	for _, n := range targets {
		if err := env.Cluster.Pause(n); err != nil {
			return "", err
		}
		p.victims = append(p.victims, n)
	}
	return fmt.Sprintf("SIGSTOP %v", ids(targets)), nil
}

func (p *pause) Heal(_ context.Context, env *Env) error {
	var errs []error
	for _, n := range p.victims {
		errs = append(errs, env.Cluster.Resume(n))
	}
	p.victims = nil
	return errors.Join(errs...)
}
