package node

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
)

// Checkpoint cadence by recovery time. raft's own triggers (every
// SnapshotInterval if SnapshotThreshold entries accumulated) know nothing
// of what replaying those entries costs. With a recovery target the node
// also estimates how long a restart would spend replaying the log since
// its newest checkpoint (with NoSnapshotRestoreOnStart, raft re-applies
// every entry after the snapshot index) and takes a checkpoint before that
// estimate would exceed the target.
//
// The replay rate is measured, not configured: entries applied per second
// of time spent in the state machine's ApplyBatch, over a sliding window.
// Wall-clock progress of the applied index would not do: under a light
// load it measures the load, not how fast a replay goes, and would
// checkpoint an idle-ish node far too often.

// applySample is the state machine's progress at one instant.
type applySample struct {
	at      time.Time
	applied uint64        // applied index
	busy    time.Duration // cumulative time spent applying
}

// replayEstimator keeps the samples of the last window.
type replayEstimator struct {
	window  time.Duration
	samples []applySample // oldest first
	// replay is the last measured replay rate (entries per second of
	// apply time), kept while the node applies nothing.
	replay float64
}

// observe adds a sample and drops those that fell out of the window
// (keeping one at or before its start, so that the window is spanned).
func (e *replayEstimator) observe(s applySample) {
	if n := len(e.samples); n > 0 && (s.applied < e.samples[n-1].applied || s.busy < e.samples[n-1].busy) {
		e.samples = e.samples[:0] // the state was replaced (a restore): start over
	}
	e.samples = append(e.samples, s)
	cut := 0
	for cut+1 < len(e.samples) && !e.samples[cut+1].at.After(s.at.Add(-e.window)) {
		cut++
	}
	e.samples = e.samples[cut:]
	if first := e.samples[0]; s.applied > first.applied && s.busy > first.busy {
		e.replay = float64(s.applied-first.applied) / (s.busy - first.busy).Seconds()
	}
}

// arrival is entries applied per wall-clock second over the window.
func (e *replayEstimator) arrival() float64 {
	if len(e.samples) < 2 {
		return 0
	}
	first, last := e.samples[0], e.samples[len(e.samples)-1]
	if secs := last.at.Sub(first.at).Seconds(); secs > 0 && last.applied > first.applied {
		return float64(last.applied-first.applied) / secs
	}
	return 0
}

// cadence runs the estimate, exports it, and triggers checkpoints.
type cadence struct {
	target time.Duration // 0: estimate and export only
	tick   time.Duration
	now    func() time.Time
	// applied and busy read the state machine's progress; snapshot takes
	// a checkpoint now (raftnode.Node.Snapshot).
	applied  func() uint64
	busy     func() time.Duration
	snapshot func() (string, error)
	log      interface{ Warn(string, ...any) }

	mu        sync.Mutex
	est       replayEstimator
	lastIndex uint64        // newest complete checkpoint
	lastAt    time.Time     // when it was taken
	lastTook  time.Duration // how long creating it took
	cur       api.Recovery
	triggered int64
}

func newCadence(target time.Duration, now func() time.Time) *cadence {
	if now == nil {
		now = time.Now
	}
	tick := time.Second
	if target > 0 {
		tick = min(tick, max(target/20, 50*time.Millisecond))
	}
	return &cadence{target: target, tick: tick, now: now, est: replayEstimator{window: 30 * time.Second}}
}

// checkpointed records a checkpoint at index (created here, installed
// from a peer, or found at start) taken at 'at' in 'took'.
func (c *cadence) checkpointed(index uint64, at time.Time, took time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if index >= c.lastIndex {
		c.lastIndex, c.lastAt, c.lastTook = index, at, took
	}
}

// step samples the state machine, updates the estimate and reports
// whether a checkpoint is due: whether, by the time the next step could
// act (a tick, plus the time the last checkpoint took), the estimated
// replay would reach the target at the current arrival rate.
func (c *cadence) step() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.sampleLocked()
	if c.target <= 0 || r.EntriesSince == 0 || c.est.replay <= 0 {
		return false
	}
	lead := c.tick + c.lastTook
	growth := c.est.arrival() / c.est.replay // seconds of replay added per second
	predicted := r.EstimatedReplay + time.Duration(growth*float64(lead))
	return predicted >= c.target
}

func (c *cadence) sampleLocked() api.Recovery {
	if c.applied == nil {
		return c.cur // not started
	}
	now := c.now()
	applied := c.applied()
	c.est.observe(applySample{at: now, applied: applied, busy: c.busy()})
	r := api.Recovery{AppliedIndex: applied, CheckpointIndex: c.lastIndex, ApplyRate: c.est.replay, Target: c.target}
	if applied > c.lastIndex {
		r.EntriesSince = applied - c.lastIndex
	}
	if !c.lastAt.IsZero() {
		r.SinceCheckpoint = now.Sub(c.lastAt)
	}
	if c.est.replay > 0 {
		r.EstimatedReplay = time.Duration(float64(r.EntriesSince) / c.est.replay * float64(time.Second))
	}
	c.cur = r
	return r
}

// Recovery returns the current estimate.
func (c *cadence) Recovery() api.Recovery {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sampleLocked()
}

// run steps every tick until ctx ends, taking a checkpoint when one is due.
func (c *cadence) run(ctx context.Context) {
	t := time.NewTicker(c.tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !c.step() {
			continue
		}
		c.mu.Lock()
		c.triggered++
		c.mu.Unlock()
		if _, err := c.snapshot(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) && c.log != nil {
			c.log.Warn("checkpoint for the recovery target failed", "err", err)
		}
	}
}

// timedFSM measures the time the state machine spends applying, which
// the cadence turns into a replay rate.
type timedFSM struct {
	*fsm.FSM
	busy atomic.Int64 // nanoseconds
}

func (t *timedFSM) ApplyBatch(logs []*raft.Log) []interface{} {
	start := time.Now()
	out := t.FSM.ApplyBatch(logs)
	t.busy.Add(int64(time.Since(start)))
	return out
}

func (t *timedFSM) Apply(l *raft.Log) interface{} { return t.ApplyBatch([]*raft.Log{l})[0] }

func (t *timedFSM) busyTime() time.Duration { return time.Duration(t.busy.Load()) }

// cadenceCollector exports the estimate at scrape time.
type cadenceCollector struct {
	c                                    *cadence
	replay, entries, since, rate, target *prometheus.Desc
	triggered                            *prometheus.Desc
}

func newCadenceCollector(c *cadence) *cadenceCollector {
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	return &cadenceCollector{c: c,
		replay:    d("cairn_checkpoint_estimated_replay_seconds", "Estimated time a restart would spend replaying the log since the newest checkpoint."),
		entries:   d("cairn_checkpoint_entries_since_last", "Log entries applied since the newest checkpoint."),
		since:     d("cairn_checkpoint_seconds_since_last", "Seconds since the newest checkpoint was taken."),
		rate:      d("cairn_checkpoint_replay_rate_entries_per_second", "Measured entries applied per second of apply time (the replay rate of the estimate)."),
		target:    d("cairn_checkpoint_recovery_target_seconds", "The recovery target (0: none)."),
		triggered: d("cairn_checkpoint_recovery_triggered_total", "Checkpoints started because the estimate approached the recovery target."),
	}
}

func (k *cadenceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{k.replay, k.entries, k.since, k.rate, k.target, k.triggered} {
		ch <- d
	}
}

func (k *cadenceCollector) Collect(ch chan<- prometheus.Metric) {
	r := k.c.Recovery()
	k.c.mu.Lock()
	trig := k.c.triggered
	k.c.mu.Unlock()
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	g(k.replay, r.EstimatedReplay.Seconds())
	g(k.entries, float64(r.EntriesSince))
	g(k.since, r.SinceCheckpoint.Seconds())
	g(k.rate, r.ApplyRate)
	g(k.target, k.c.target.Seconds())
	ch <- prometheus.MustNewConstMetric(k.triggered, prometheus.CounterValue, float64(trig))
}
