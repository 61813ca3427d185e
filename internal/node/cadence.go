package node

import (
	"context"
	"errors"
	"io"
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

// Checkpoints by log bytes. Whatever the estimate says, a restart reads
// the raft log since the newest checkpoint twice before the node is ready:
// raft.NewRaft scans every entry after the snapshot index for
// configuration changes, and once a leader is known the entries are read
// again and handed to the state machine (which skips those it already
// holds). Both cost time in proportion to the log's bytes, not to its
// entry count (raft's SnapshotThreshold) nor to the apply time the
// estimate measures: 518 entries of 2 MiB took 7.6-9.0 s to scan
// (docs/benchmarks.md, "Restart to ready"). So the cadence also counts the
// bytes of the entries applied since the newest checkpoint and takes a
// checkpoint once they reach maxBytes (raftnode.Config.SnapshotBytes).

// byteMark is the cumulative count of applied log bytes at an applied
// index, noted when the state machine was asked for a checkpoint there.
type byteMark struct{ index, bytes uint64 }

// cadence runs the estimate, exports it, and triggers checkpoints.
type cadence struct {
	target   time.Duration // 0: estimate and export only
	maxBytes uint64        // log bytes since the newest checkpoint that trigger one (0: off)
	tick     time.Duration
	now      func() time.Time
	// applied and busy read the state machine's progress; bytes the log
	// bytes it has applied in this process; snapshot takes a checkpoint
	// now (raftnode.Node.Snapshot).
	applied  func() uint64
	busy     func() time.Duration
	bytes    func() uint64
	snapshot func() (string, error)
	log      interface{ Warn(string, ...any) }

	mu        sync.Mutex
	est       replayEstimator
	lastIndex uint64        // newest complete checkpoint
	lastAt    time.Time     // when it was taken
	lastTook  time.Duration // how long creating it took
	lastBytes uint64        // applied log bytes (bytes()) at lastIndex
	marks     []byteMark    // noted at the state machine's Snapshot, oldest first
	cur       api.Recovery
	triggered int64
	bySize    int64     // of triggered: because of maxBytes
	notBefore time.Time // no new trigger before this (after a failed checkpoint)
}

// retryAfter is how long the cadence waits after a checkpoint it asked
// for failed before it asks again.
const retryAfter = 10 * time.Second

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

// setMaxBytes turns on the trigger by log bytes (0: off). The cadence then
// looks at least four times a second: a bulk load writes tens of MB/s.
func (c *cadence) setMaxBytes(n uint64) {
	c.maxBytes = n
	if n > 0 {
		c.tick = min(c.tick, 250*time.Millisecond)
	}
}

// mark notes the applied log bytes at index, where the state machine was
// just asked for a checkpoint (or restored one), so that checkpointed can
// tell exactly which bytes the checkpoint covers.
func (c *cadence) mark(index, bytes uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.marks = append(c.marks, byteMark{index, bytes})
	if len(c.marks) > 16 { // checkpoints that never completed
		c.marks = c.marks[len(c.marks)-16:]
	}
}

// checkpointed records a checkpoint at index (created here, installed
// from a peer, or found at start) taken at 'at' in 'took'.
func (c *cadence) checkpointed(index uint64, at time.Time, took time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if index < c.lastIndex {
		return
	}
	c.lastIndex, c.lastAt, c.lastTook = index, at, took
	// The bytes the checkpoint covers: those applied up to the newest mark
	// at or below its index (raft's snapshot index can be a little higher
	// than the state machine's last entry: no-op and barrier entries carry
	// no data). Without a mark (found at start, installed from a peer),
	// everything applied so far counts as covered.
	covered, found := uint64(0), false
	keep := c.marks[:0]
	for _, m := range c.marks {
		switch {
		case m.index <= index:
			covered, found = m.bytes, true
		default:
			keep = append(keep, m)
		}
	}
	c.marks = keep
	if !found && c.bytes != nil {
		covered = c.bytes()
	}
	c.lastBytes = max(c.lastBytes, covered)
}

// bytesSinceLocked is the log bytes applied since the newest checkpoint.
func (c *cadence) bytesSinceLocked() uint64 {
	if c.bytes == nil {
		return 0
	}
	if b := c.bytes(); b > c.lastBytes {
		return b - c.lastBytes
	}
	return 0
}

// BytesSince is the log bytes applied since the newest checkpoint.
func (c *cadence) BytesSince() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytesSinceLocked()
}

// step samples the state machine, updates the estimate and reports
// whether a checkpoint is due: whether the log bytes since the newest
// checkpoint reached maxBytes, or whether, by the time the next step could
// act (a tick, plus the time the last checkpoint took), the estimated
// replay would reach the target at the current arrival rate.
func (c *cadence) step() bool {
	due, _ := c.due()
	return due
}

// due is step, and says whether it was the byte count that made a
// checkpoint due.
func (c *cadence) due() (due, bySize bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.sampleLocked()
	if c.now().Before(c.notBefore) {
		return false, false
	}
	if c.maxBytes > 0 && c.bytesSinceLocked() >= c.maxBytes {
		return true, true
	}
	if c.target <= 0 || r.EntriesSince == 0 || c.est.replay <= 0 {
		return false, false
	}
	lead := c.tick + c.lastTook
	growth := c.est.arrival() / c.est.replay // seconds of replay added per second
	predicted := r.EstimatedReplay + time.Duration(growth*float64(lead))
	return predicted >= c.target, false
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
		c.trigger()
	}
}

// trigger takes a checkpoint if one is due.
func (c *cadence) trigger() {
	due, bySize := c.due()
	if !due {
		return
	}
	c.mu.Lock()
	c.triggered++
	if bySize {
		c.bySize++
	}
	c.mu.Unlock()
	_, err := c.snapshot()
	switch {
	case err == nil:
	case errors.Is(err, raft.ErrNothingNewToSnapshot):
		// The newest checkpoint already covers everything applied (the
		// bytes were counted before it was noticed): nothing to wait for.
		c.mu.Lock()
		if c.bytes != nil {
			c.lastBytes = max(c.lastBytes, c.bytes())
		}
		c.mu.Unlock()
	default:
		c.mu.Lock()
		c.notBefore = c.now().Add(retryAfter)
		c.mu.Unlock()
		if c.log != nil {
			c.log.Warn("checkpoint for the recovery target or log size failed", "err", err, "retry_in", retryAfter)
		}
	}
}

// timedFSM measures the time the state machine spends applying, which
// the cadence turns into a replay rate, and counts the log bytes it
// applies, which the cadence compares with maxBytes.
type timedFSM struct {
	*fsm.FSM
	busy  atomic.Int64  // nanoseconds
	bytes atomic.Uint64 // of the entries' data
	cad   *cadence      // told of every Snapshot and Restore (nil: no one)
}

// wrap returns the state machine to hand to raft, connected to the
// cadence's byte count.
func (c *cadence) wrap(f *fsm.FSM) *timedFSM {
	t := &timedFSM{FSM: f, cad: c}
	c.bytes = t.appliedBytes
	return t
}

func (t *timedFSM) ApplyBatch(logs []*raft.Log) []interface{} {
	start := time.Now()
	out := t.FSM.ApplyBatch(logs)
	t.busy.Add(int64(time.Since(start)))
	var n uint64
	for _, l := range logs {
		n += uint64(len(l.Data) + len(l.Extensions))
	}
	t.bytes.Add(n)
	return out
}

// Snapshot notes the bytes applied so far at the index the checkpoint will
// cover. raft calls it on the goroutine that applies, so nothing is
// applied in between.
func (t *timedFSM) Snapshot() (raft.FSMSnapshot, error) {
	if t.cad != nil {
		t.cad.mark(t.FSM.AppliedIndex(), t.bytes.Load())
	}
	return t.FSM.Snapshot()
}

// Restore installs a checkpoint from a peer; what was applied before it
// is covered by it.
func (t *timedFSM) Restore(rc io.ReadCloser) error {
	err := t.FSM.Restore(rc)
	if err == nil && t.cad != nil {
		t.cad.mark(t.FSM.AppliedIndex(), t.bytes.Load())
	}
	return err
}

func (t *timedFSM) appliedBytes() uint64 { return t.bytes.Load() }

func (t *timedFSM) Apply(l *raft.Log) interface{} { return t.ApplyBatch([]*raft.Log{l})[0] }

func (t *timedFSM) busyTime() time.Duration { return time.Duration(t.busy.Load()) }

// cadenceCollector exports the estimate at scrape time.
type cadenceCollector struct {
	c                                    *cadence
	replay, entries, since, rate, target *prometheus.Desc
	bytes, maxBytes                      *prometheus.Desc
	triggered, bySize                    *prometheus.Desc
}

func newCadenceCollector(c *cadence) *cadenceCollector {
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	return &cadenceCollector{c: c,
		replay:    d("cairn_checkpoint_estimated_replay_seconds", "Estimated time a restart would spend replaying the log since the newest checkpoint."),
		entries:   d("cairn_checkpoint_entries_since_last", "Log entries applied since the newest checkpoint."),
		since:     d("cairn_checkpoint_seconds_since_last", "Seconds since the newest checkpoint was taken."),
		rate:      d("cairn_checkpoint_replay_rate_entries_per_second", "Measured entries applied per second of apply time (the replay rate of the estimate)."),
		target:    d("cairn_checkpoint_recovery_target_seconds", "The recovery target (0: none)."),
		triggered: d("cairn_checkpoint_recovery_triggered_total", "Checkpoints started by the cadence: the estimate approached the recovery target, or the log bytes since the newest checkpoint reached the limit."),
		bytes:     d("cairn_checkpoint_log_bytes_since_last", "Bytes of log entries applied since the newest checkpoint (what a restart reads twice)."),
		maxBytes:  d("cairn_checkpoint_log_bytes_limit", "Log bytes since the newest checkpoint that trigger a new one (0: off)."),
		bySize:    d("cairn_checkpoint_log_bytes_triggered_total", "Checkpoints started because the log bytes since the newest checkpoint reached the limit."),
	}
}

func (k *cadenceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{k.replay, k.entries, k.since, k.rate, k.target, k.triggered, k.bytes, k.maxBytes, k.bySize} {
		ch <- d
	}
}

func (k *cadenceCollector) Collect(ch chan<- prometheus.Metric) {
	r := k.c.Recovery()
	k.c.mu.Lock()
	trig, bySize, since := k.c.triggered, k.c.bySize, k.c.bytesSinceLocked()
	k.c.mu.Unlock()
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	g(k.replay, r.EstimatedReplay.Seconds())
	g(k.entries, float64(r.EntriesSince))
	g(k.since, r.SinceCheckpoint.Seconds())
	g(k.rate, r.ApplyRate)
	g(k.target, k.c.target.Seconds())
	g(k.bytes, float64(since))
	g(k.maxBytes, float64(k.c.maxBytes))
	ch <- prometheus.MustNewConstMetric(k.triggered, prometheus.CounterValue, float64(trig))
	ch <- prometheus.MustNewConstMetric(k.bySize, prometheus.CounterValue, float64(bySize))
}
