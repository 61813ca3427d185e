package cluster

import (
	"context"
	"sync"
	"time"
)

// LeaderSample is one observed change of leadership: from At on, Leader
// (empty: none) led in Term.
type LeaderSample struct {
	At     int64  `json:"at_ns"` // run clock
	Leader string `json:"leader"`
	Term   uint64 `json:"term"`
}

// Monitor polls every running node's local status and records each change
// of the leader the cluster reports (the highest-term self-declared leader).
type Monitor struct {
	c     *Cluster
	now   func() int64
	every time.Duration

	mu      sync.Mutex
	samples []LeaderSample
	done    chan struct{}
	cancel  context.CancelFunc
}

// StartMonitor begins polling; now is the run clock.
func (c *Cluster) StartMonitor(now func() int64, every time.Duration) *Monitor {
	ctx, cancel := context.WithCancel(context.Background())
	m := &Monitor{c: c, now: now, every: every, done: make(chan struct{}), cancel: cancel}
	go m.loop(ctx)
	return m
}

func (m *Monitor) loop(ctx context.Context) {
	defer close(m.done)
	t := time.NewTicker(m.every)
	defer t.Stop()
	for {
		leader, term := "", uint64(0)
		if n, tm, err := m.c.Leader(ctx); err == nil {
			leader, term = n.ID, tm
		}
		m.mu.Lock()
		if k := len(m.samples); k == 0 || m.samples[k-1].Leader != leader || m.samples[k-1].Term != term {
			m.samples = append(m.samples, LeaderSample{At: m.now(), Leader: leader, Term: term})
		}
		m.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Stop ends polling and returns the samples.
func (m *Monitor) Stop() []LeaderSample {
	m.cancel()
	<-m.done
	return m.Samples()
}

// Samples returns the changes recorded so far.
func (m *Monitor) Samples() []LeaderSample {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]LeaderSample(nil), m.samples...)
}

// Changes counts transitions to a different leader (ignoring gaps with no
// leader: A, none, A is not a change; A, none, B is one).
func Changes(samples []LeaderSample) int {
	n, last := 0, ""
	for _, s := range samples {
		if s.Leader == "" {
			continue
		}
		if last != "" && s.Leader != last {
			n++
		}
		last = s.Leader
	}
	return n
}
