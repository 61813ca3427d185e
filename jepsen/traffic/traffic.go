// Package traffic generates the client load of a run: a workload
// (register, counter, bank, window) executed by concurrent recording
// clients at a bounded total rate, each client with its own RNG derived
// from the run's seed, then the final reads once the cluster has
// recovered.
package traffic

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/cairn-db/cairn/jepsen/client"
	"github.com/cairn-db/cairn/linearizability"
)

// Config tunes a workload.
type Config struct {
	Kind    linearizability.Kind
	Clients int
	Rate    float64 // operations per second, all clients together
	Seed    uint64
	// Register and window: number of keys.
	Keys int
	// Bank: number of accounts and their initial balance.
	Accounts int
	Balance  int64
	// Counter and window: probability that a client re-sends an
	// acknowledged commit once more (a reply lost on the way back: the
	// store must answer it as a duplicate), and that it restarts its
	// producer (registers again, fencing the old epoch) after an operation.
	Redeliver float64
	Restart   float64
}

// DefaultConfig returns the defaults for kind.
func DefaultConfig(kind linearizability.Kind) Config {
	return Config{Kind: kind, Clients: 5, Rate: 50, Keys: 5, Accounts: 5, Balance: 100, Redeliver: 0.1, Restart: 0.02}
}

// Validate reports an unusable configuration.
func (c Config) Validate() error {
	switch c.Kind {
	case linearizability.KindRegister, linearizability.KindCounter, linearizability.KindBank, linearizability.KindWindow:
	default:
		return fmt.Errorf("unknown workload %q (register, counter, bank or window)", c.Kind)
	}
	if c.Clients < 1 || c.Rate <= 0 || c.Keys < 1 || c.Accounts < 2 || c.Balance < 0 {
		return fmt.Errorf("traffic: bad config %+v", c)
	}
	if c.Redeliver < 0 || c.Redeliver > 1 || c.Restart < 0 || c.Restart > 1 {
		return fmt.Errorf("traffic: probabilities must be in [0,1]")
	}
	return nil
}

// Workload is one kind of traffic.
type Workload interface {
	// Setup prepares the initial state (outside the history).
	Setup(c *client.Client) error
	// Step performs one logical operation for client c (possibly several
	// attempts, each recorded). stop closes when the run is over.
	Step(c *client.Client, st *ClientState, stop <-chan struct{})
	// Final issues the final reads with c (marked final when successful)
	// and reports whether every one of them succeeded.
	Final(c *client.Client, deadline time.Time) error
	// CheckOptions are the options Check needs for this workload.
	CheckOptions() linearizability.Options
}

// ClientState is a logical client's own state between steps.
type ClientState struct {
	Rand    *rand.Rand
	Session *client.Session // counter, window
	// Watermark is the last watermark the client's producer sent (window).
	Watermark int64
}

// New returns the workload for cfg.
func New(cfg Config, nodes []string) (Workload, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch cfg.Kind {
	case linearizability.KindRegister:
		return newRegister(cfg, nodes), nil
	case linearizability.KindCounter:
		return newCounter(cfg, nodes), nil
	case linearizability.KindWindow:
		return newWindow(cfg, nodes), nil
	default:
		return newBank(cfg, nodes), nil
	}
}

// limiter spaces operations of all clients at 1/rate.
type limiter struct {
	mu       sync.Mutex
	next     time.Time
	interval time.Duration
}

// wait blocks until the caller's slot; false once stop is closed, even if
// the slot has come too (select would pick either at random, and a step
// started after stop could reuse the seq an abandoned commit left unused).
func (l *limiter) wait(stop <-chan struct{}) bool {
	select {
	case <-stop:
		return false
	default:
	}
	l.mu.Lock()
	now := time.Now()
	if l.next.Before(now) {
		l.next = now
	}
	at := l.next
	l.next = l.next.Add(l.interval)
	l.mu.Unlock()
	t := time.NewTimer(time.Until(at))
	defer t.Stop()
	select {
	case <-stop:
		return false
	case <-t.C:
		return true
	}
}

// Run drives the clients until stop closes, then waits for their last
// operations to finish (each bounded by the client timeout). A panicking
// client stops only itself; the first panic is returned.
func Run(ctx context.Context, w Workload, clients []*client.Client, cfg Config, stop <-chan struct{}) error {
	lim := &limiter{interval: time.Duration(float64(time.Second) / cfg.Rate)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if p := recover(); p != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("client %d panicked: %v", c.ID, p)
					}
					mu.Unlock()
				}
			}()
			st := &ClientState{Rand: ClientRand(cfg.Seed, c.ID)}
			for ctx.Err() == nil && lim.wait(stop) {
				w.Step(c, st, stop)
			}
		}()
	}
	wg.Wait()
	return first
}

// ClientRand is client id's generator for seed.
func ClientRand(seed uint64, id int) *rand.Rand {
	return rand.New(rand.NewPCG(seed, 0x6a657073656e0000|uint64(id)))
}

// retryFinal repeats read until it succeeds or the deadline passes.
func retryFinal(deadline time.Time, what string, read func() client.Record) error {
	var last client.Record
	for time.Now().Before(deadline) {
		last = read()
		if last.Outcome == linearizability.OutcomeOK {
			return nil
		}
		time.Sleep(100 * time.Millisecond) // backoff between recorded attempts
	}
	return fmt.Errorf("final read of %s did not succeed before the deadline: %s", what, last.Error)
}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }
