package nemesis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/cairn-db/cairn/jepsen/cluster"
)

// membership removes a node through the Cluster API while writes go on,
// stops it and wipes its data; Heal starts it empty with --join so that it
// is added back as a voter and catches up from the leader.
//
// A removal whose outcome is unknown (the call timed out and the node is
// still listed) is not a failure to forget: raft may still append it —
// raftnode lets a configuration change wait up to 30 s to be enqueued —
// and commit it later, leaving a running node outside the configuration
// that never becomes ready (jepsen kill run, seed 1795388799). Heal then
// waits until the removal is settled (removalSettled) and, if it happened,
// wipes and rejoins the node like a removal that succeeded.
type membership struct {
	victim *cluster.Node
	unsure *cluster.Node // removal with an unknown outcome
	since  time.Time     // when that removal was asked for
}

// removeWindow: after it, a removal asked for at the start can no longer
// be appended to the log (raftnode.RemoveNode's enqueue timeout is 30 s).
const removeWindow = 31 * time.Second

func (*membership) Name() string { return "membership" }

func (*membership) Available(env *Env) (bool, string) {
	if len(env.Cluster.Nodes()) < 3 {
		return false, "needs at least 3 nodes (a 2-node cluster cannot lose a member and keep a majority)"
	}
	return true, ""
}

func (m *membership) Inject(ctx context.Context, env *Env, rng *rand.Rand) (string, error) {
	r := running(env)
	if len(r) < len(env.Cluster.Nodes()) {
		return "", errors.New("not every node is running")
	}
	v := r[rng.IntN(len(r))]
	since := time.Now()
	env.Cluster.ExpectExit(v, true) // a removed node exits by itself
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	err := env.Admin.RemoveNode(cctx, v.ID)
	cancel()
	if err != nil {
		// The outcome may be unknown: look at the configuration.
		if members, merr := env.Cluster.Members(ctx, other(env, v)); merr != nil || members[v.ID] {
			m.unsure, m.since = v, since
			return "", fmt.Errorf("remove %s (outcome unknown; settled when healed): %w", v.ID, err)
		}
	}
	if err := m.takeOut(env, v); err != nil {
		return "", err
	}
	return fmt.Sprintf("removed %s from the configuration, stopped and wiped it", v.ID), nil
}

// takeOut stops and wipes v, removed from the configuration; Heal rejoins it.
func (m *membership) takeOut(env *Env, v *cluster.Node) error {
	m.victim = v
	if err := env.Cluster.Stop(v, 5*time.Second); err != nil {
		return err
	}
	return env.Cluster.Wipe(v)
}

func (m *membership) Heal(ctx context.Context, env *Env) error {
	if u := m.unsure; u != nil {
		m.unsure = nil
		removed, err := waitRemovalSettled(ctx, env, u, m.since.Add(removeWindow))
		if err != nil {
			return fmt.Errorf("removal of %s with an unknown outcome: %w", u.ID, err)
		}
		if !removed {
			env.Cluster.ExpectExit(u, false) // still a member: an exit is an anomaly again
			return nil
		}
		if err := m.takeOut(env, u); err != nil {
			return err
		}
	}
	v := m.victim
	if v == nil {
		return nil
	}
	m.victim = nil
	return Rejoin(ctx, env, v)
}

// removalSettled decides a removal of id whose outcome was unknown, from
// the configuration of a leader that is ready (it committed an entry of
// its own term, so no entry of an earlier term it lacks can commit any
// more). If that configuration lacks id, the removal is in the log and
// commits once a quorum of the new configuration is up. If it holds id,
// the removal is not there — but it is settled only once no request can
// be appended any more (after the deadline).
func removalSettled(leaderReady bool, members map[string]bool, id string, now, deadline time.Time) (settled, removed bool) {
	if !leaderReady || members == nil {
		return false, false
	}
	if !members[id] {
		return true, true
	}
	return !now.Before(deadline), false
}

// waitRemovalSettled polls the leader until removalSettled decides.
func waitRemovalSettled(ctx context.Context, env *Env, v *cluster.Node, deadline time.Time) (removed bool, err error) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		var members map[string]bool
		ready := false
		if l, _, lerr := env.Cluster.Leader(ctx); lerr == nil {
			if ready, _ = env.Cluster.Ready(ctx, l); ready {
				if m, merr := env.Cluster.Members(ctx, l); merr == nil {
					members = m
				}
			}
		}
		if settled, removed := removalSettled(ready, members, v.ID, time.Now(), deadline); settled {
			return removed, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-t.C:
		}
	}
}

// Rejoin starts a wiped node empty with --join through a running member
// and waits until it is a ready voter.
func Rejoin(ctx context.Context, env *Env, v *cluster.Node) error {
	via := other(env, v)
	if via == nil {
		return errors.New("no running member to join through")
	}
	if err := env.Cluster.Join(v, via.GRPCAddr); err != nil {
		return err
	}
	if err := env.Cluster.WaitReady(ctx, v); err != nil {
		return err
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		m, err := env.Cluster.Members(ctx, via)
		if err == nil && m[v.ID] {
			v.MarkJoined()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not become a voter: %w (members %v, err %v)", v.ID, ctx.Err(), m, err)
		case <-t.C:
		}
	}
}

// other returns a running node other than v.
func other(env *Env, v *cluster.Node) *cluster.Node {
	for _, n := range env.Cluster.Nodes() {
		if n != v && n.State() == cluster.StateRunning {
			return n
		}
	}
	return nil
}

// transfer moves leadership to another node about every 0.5–1.5 s until
// healed (leadership churn).
type transfer struct {
	mu     sync.Mutex
	stop   chan struct{}
	done   chan struct{}
	count  int
	errors int
}

func (*transfer) Name() string                  { return "transfer" }
func (*transfer) Available(*Env) (bool, string) { return true, "" }

func (t *transfer) Inject(ctx context.Context, env *Env, rng *rand.Rand) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stop != nil {
		return "", errors.New("already churning")
	}
	t.stop, t.done, t.count, t.errors = make(chan struct{}), make(chan struct{}), 0, 0
	r := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
	stop, done := t.stop, t.done
	go func() {
		defer close(done)
		for {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			to, err := env.Admin.TransferLeader(cctx, "")
			cancel()
			t.mu.Lock()
			if err != nil {
				t.errors++
			} else {
				t.count++
			}
			t.mu.Unlock()
			if err == nil {
				if to == "" {
					to = "a node not yet known" // the old leader answered before it heard who won
				}
				env.logf("nemesis transfer: leadership to %s", to)
			}
			tm := time.NewTimer(500*time.Millisecond + time.Duration(r.Int64N(int64(time.Second))))
			select {
			case <-stop:
				tm.Stop()
				return
			case <-ctx.Done():
				tm.Stop()
				return
			case <-tm.C:
			}
		}
	}()
	return "leadership transfers every 0.5–1.5 s", nil
}

func (t *transfer) Heal(context.Context, *Env) error {
	t.mu.Lock()
	stop, done := t.stop, t.done
	t.stop = nil
	t.mu.Unlock()
	if stop == nil {
		return nil
	}
	close(stop)
	<-done
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.count == 0 && t.errors > 0 {
		return fmt.Errorf("all %d leadership transfers failed", t.errors)
	}
	return nil
}

// HealAll heals every nemesis, removes every network rule, continues
// paused nodes, restarts dead ones and re-joins removed ones, then waits
// until the cluster is healthy.
func HealAll(ctx context.Context, env *Env, nemeses []Nemesis, timeout time.Duration) error {
	var errs []error
	for _, n := range nemeses {
		if err := n.Heal(ctx, env); err != nil {
			errs = append(errs, fmt.Errorf("heal %s: %w", n.Name(), err))
		}
	}
	errs = append(errs, healNet(env))
	for _, n := range env.Cluster.Nodes() {
		switch n.State() {
		case cluster.StatePaused:
			errs = append(errs, env.Cluster.Resume(n))
		case cluster.StateKilled, cluster.StateStopped, cluster.StateExited:
			if !n.NeedsJoin() {
				errs = append(errs, env.Cluster.Restart(n))
			}
		}
	}
	for _, n := range env.Cluster.Nodes() {
		if n.NeedsJoin() {
			if n.Live() {
				if via := other(env, n); via != nil {
					if m, err := env.Cluster.Members(ctx, via); err == nil && m[n.ID] {
						n.MarkJoined() // the join went through after all
						continue
					}
				}
				errs = append(errs, env.Cluster.Stop(n, 5*time.Second))
			}
			errs = append(errs, env.Cluster.Wipe(n))
			cctx, cancel := context.WithTimeout(ctx, timeout)
			errs = append(errs, Rejoin(cctx, env, n))
			cancel()
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return env.Cluster.WaitHealthy(ctx, timeout)
}
