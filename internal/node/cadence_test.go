package node

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// fakeMachine is a state machine driven by a fake clock: it applies
// arrival entries per second of wall time, spending 1/replay seconds of
// apply time per entry.
type fakeMachine struct {
	now             time.Time
	applied         float64
	busy            time.Duration
	arrival, replay float64
}

func (m *fakeMachine) advance(d time.Duration) {
	m.now = m.now.Add(d)
	n := m.arrival * d.Seconds()
	m.applied += n
	m.busy += time.Duration(n / m.replay * float64(time.Second))
}

func newTestCadence(target time.Duration, m *fakeMachine) (*cadence, *[]uint64) {
	c := newCadence(target, func() time.Time { return m.now })
	var taken []uint64
	c.applied = func() uint64 { return uint64(m.applied) }
	c.busy = func() time.Duration { return m.busy }
	c.snapshot = func() (string, error) {
		taken = append(taken, uint64(m.applied))
		c.checkpointed(uint64(m.applied), m.now, 0)
		return "id", nil
	}
	c.checkpointed(0, m.now, 0)
	return c, &taken
}

// runFor steps the cadence every tick for d, taking the checkpoints it
// asks for, and returns the largest estimate it reported.
func runFor(c *cadence, m *fakeMachine, d time.Duration) time.Duration {
	var worst time.Duration
	for end := m.now.Add(d); m.now.Before(end); {
		m.advance(c.tick)
		due := c.step()
		worst = max(worst, c.Recovery().EstimatedReplay)
		if due {
			_, _ = c.snapshot()
		}
	}
	return worst
}

func TestReplayEstimate(t *testing.T) {
	m := &fakeMachine{now: time.Unix(1e9, 0), arrival: 1000, replay: 20000}
	c, taken := newTestCadence(0, m)
	for i := 0; i < 20; i++ {
		m.advance(time.Second)
		if c.step() {
			t.Fatal("a checkpoint was due without a recovery target")
		}
	}
	r := c.Recovery()
	if r.EntriesSince != 20000 || r.SinceCheckpoint != 20*time.Second || r.AppliedIndex != 20000 {
		t.Fatalf("recovery %+v", r)
	}
	// 20000 entries at 20000 entries per second of apply time: one second,
	// whatever the (lower) arrival rate.
	if r.ApplyRate < 19999 || r.ApplyRate > 20001 || r.EstimatedReplay < 999*time.Millisecond || r.EstimatedReplay > 1001*time.Millisecond {
		t.Fatalf("replay rate %.0f, estimate %v; want 20000/s, 1s", r.ApplyRate, r.EstimatedReplay)
	}
	if len(*taken) != 0 {
		t.Fatalf("checkpoints taken: %v", *taken)
	}
	// An idle node keeps the last measured rate; the estimate stays.
	m.arrival = 0
	for i := 0; i < 60; i++ {
		m.advance(time.Second)
		c.step()
	}
	if r := c.Recovery(); r.ApplyRate < 19999 || r.EstimatedReplay < 999*time.Millisecond || r.SinceCheckpoint != 80*time.Second {
		t.Fatalf("idle: %+v", r)
	}
	// The rate follows the window: applies get 4x as expensive.
	m.arrival, m.replay = 1000, 5000
	for i := 0; i < 40; i++ {
		m.advance(time.Second)
		c.step()
	}
	if r := c.Recovery(); r.ApplyRate < 4999 || r.ApplyRate > 5001 {
		t.Fatalf("after the window moved: rate %.0f, want 5000", r.ApplyRate)
	}
	// A checkpoint resets the count.
	c.checkpointed(uint64(m.applied), m.now, 0)
	if r := c.Recovery(); r.EntriesSince != 0 || r.EstimatedReplay != 0 || r.SinceCheckpoint != 0 {
		t.Fatalf("after a checkpoint: %+v", r)
	}
}

func TestCadenceKeepsReplayUnderTarget(t *testing.T) {
	for _, tc := range []struct {
		name            string
		target          time.Duration
		arrival, replay float64
		took            time.Duration // what each checkpoint takes
	}{
		{"light load", 10 * time.Second, 500, 20000, 0},
		{"heavy load", 10 * time.Second, 15000, 20000, 0},
		{"slow checkpoints", 2 * time.Second, 8000, 10000, 800 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &fakeMachine{now: time.Unix(1e9, 0), arrival: tc.arrival, replay: tc.replay}
			c, taken := newTestCadence(tc.target, m)
			// A checkpoint covers the index at its start and completes
			// tc.took later (the cadence waits for it).
			c.snapshot = func() (string, error) {
				start, at := uint64(m.applied), m.now
				*taken = append(*taken, start)
				m.advance(tc.took)
				c.checkpointed(start, at, tc.took)
				return "id", nil
			}
			worst := runFor(c, m, 30*time.Minute)
			if worst >= tc.target {
				t.Fatalf("estimate reached %v, target %v", worst, tc.target)
			}
			// Not more often than needed: at least target/growth apart
			// would be ideal; the cadence may start lead (a tick plus
			// the checkpoint's duration) earlier.
			growth := tc.arrival / tc.replay // seconds of replay per second
			ideal := tc.target.Seconds() / growth
			lead := (c.tick + tc.took).Seconds()
			least, most := int(30*60/ideal), int(30*60/(ideal-lead-c.tick.Seconds())*1.05)+2
			if n := len(*taken); n < least || n > most {
				t.Fatalf("%d checkpoints in 30 minutes, want %d..%d (worst estimate %v)", n, least, most, worst)
			}
			t.Logf("%d checkpoints (ideal %d), worst estimate %v of %v", len(*taken), least, worst, tc.target)
		})
	}
}

func TestCadenceNothingToDo(t *testing.T) {
	m := &fakeMachine{now: time.Unix(1e9, 0), arrival: 0, replay: 1000}
	c, taken := newTestCadence(time.Second, m)
	runFor(c, m, time.Hour)
	if len(*taken) != 0 {
		t.Fatalf("checkpoints on an idle node: %v", *taken)
	}
	// A rate was never measured: no estimate, no checkpoint.
	if r := c.Recovery(); r.EstimatedReplay != 0 || r.ApplyRate != 0 {
		t.Fatalf("recovery %+v", r)
	}
}

func TestReplayEstimatorWindow(t *testing.T) {
	e := &replayEstimator{window: 10 * time.Second}
	base := time.Unix(0, 0)
	for i := 0; i <= 30; i++ {
		e.observe(applySample{at: base.Add(time.Duration(i) * time.Second), applied: uint64(i * 100), busy: time.Duration(i) * 10 * time.Millisecond})
	}
	if len(e.samples) != 11 || e.arrival() != 100 || e.replay != 10000 {
		t.Fatalf("window of %d samples, arrival %.1f, replay %.1f", len(e.samples), e.arrival(), e.replay)
	}
	// A restore moves the index back: the window starts over.
	e.observe(applySample{at: base.Add(31 * time.Second), applied: 5, busy: 400 * time.Millisecond})
	if len(e.samples) != 1 {
		t.Fatalf("after a reset: %d samples", len(e.samples))
	}
}

// The trigger by log bytes: a table of byte counts applied between ticks,
// and the ticks at which the cadence asks for a checkpoint.
func TestCadenceLogBytesTrigger(t *testing.T) {
	const MiB = 1 << 20
	zeros := func(n int) []uint64 { return make([]uint64, n) }
	retryTicks := int(retryAfter / (250 * time.Millisecond))
	for _, tc := range []struct {
		name      string
		limit     uint64
		snapErr   error    // what every checkpoint returns
		writes    []uint64 // bytes applied before each tick
		wantTaken []int    // ticks at which a checkpoint was asked for
		wantSince uint64   // log bytes since the newest checkpoint at the end
	}{
		{name: "off", limit: 0, writes: []uint64{100 * MiB, 100 * MiB, 100 * MiB}, wantSince: 300 * MiB},
		{name: "below the limit", limit: 64 * MiB, writes: []uint64{32 * MiB, 31 * MiB, 0, 0}, wantSince: 63 * MiB},
		{name: "at the limit, then counted afresh", limit: 64 * MiB,
			writes: []uint64{32 * MiB, 32 * MiB, 32 * MiB, 32 * MiB, MiB}, wantTaken: []int{1, 3}, wantSince: MiB},
		{name: "one entry larger than the limit", limit: 64 * MiB, writes: []uint64{200 * MiB, 0, 0}, wantTaken: []int{0}},
		{name: "nothing new to checkpoint: the count is covered", limit: 64 * MiB, snapErr: raft.ErrNothingNewToSnapshot,
			writes: []uint64{64 * MiB, 0, 0, 0}, wantTaken: []int{0}},
		{name: "a failed checkpoint is retried after retryAfter, not every tick", limit: 64 * MiB, snapErr: errors.New("disk full"),
			writes: append([]uint64{64 * MiB}, zeros(retryTicks+1)...), wantTaken: []int{0, retryTicks}, wantSince: 64 * MiB},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Unix(1e9, 0)
			var index, bytes uint64
			c := newCadence(0, func() time.Time { return now })
			c.setMaxBytes(tc.limit)
			if tc.limit > 0 && c.tick != 250*time.Millisecond {
				t.Fatalf("tick %v with a byte limit", c.tick)
			}
			c.applied = func() uint64 { return index }
			c.busy = func() time.Duration { return 0 }
			c.bytes = func() uint64 { return bytes }
			var taken []int
			tick := 0
			c.snapshot = func() (string, error) {
				taken = append(taken, tick)
				if tc.snapErr != nil {
					return "", tc.snapErr
				}
				c.mark(index, bytes) // what timedFSM.Snapshot does
				c.checkpointed(index, now, 0)
				return "id", nil
			}
			c.checkpointed(0, now, 0)
			for tick = range tc.writes {
				if tc.writes[tick] > 0 {
					index++
					bytes += tc.writes[tick]
				}
				now = now.Add(250 * time.Millisecond)
				c.trigger()
			}
			if !slices.Equal(taken, tc.wantTaken) {
				t.Fatalf("checkpoints at ticks %v, want %v", taken, tc.wantTaken)
			}
			if got := c.BytesSince(); got != tc.wantSince {
				t.Fatalf("bytes since the newest checkpoint %d, want %d", got, tc.wantSince)
			}
		})
	}
}

// Which bytes a checkpoint covers: those applied up to its index, as noted
// when the state machine was asked for it, not those applied while it was
// being written.
func TestCadenceCheckpointCoversBytesUpToItsIndex(t *testing.T) {
	type op struct {
		apply      uint64 // apply one entry of this many bytes
		mark       bool   // the state machine is asked for a checkpoint here
		checkpoint uint64 // a checkpoint at this index completes (0: none)
	}
	for _, tc := range []struct {
		name      string
		ops       []op
		wantSince uint64
	}{
		{"entries applied while the checkpoint is written stay counted",
			[]op{{apply: 10}, {apply: 10, mark: true}, {apply: 5}, {apply: 7}, {checkpoint: 2}}, 12},
		{"raft's index past the last entry (no-op entries) uses the mark below it",
			[]op{{apply: 10, mark: true}, {checkpoint: 3}}, 0},
		{"a checkpoint without a mark (installed, or found at start) covers everything so far",
			[]op{{apply: 10}, {apply: 10}, {checkpoint: 2}, {apply: 3}}, 3},
		{"an older checkpoint completing late changes nothing",
			[]op{{apply: 10, mark: true}, {apply: 10, mark: true}, {checkpoint: 2}, {checkpoint: 1}, {apply: 4}}, 4},
		{"a mark above the completed checkpoint is kept for its own",
			[]op{{apply: 10, mark: true}, {apply: 20, mark: true}, {checkpoint: 1}, {apply: 1}, {checkpoint: 2}}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var index, bytes uint64
			c := newCadence(0, nil)
			c.setMaxBytes(1 << 30)
			c.bytes = func() uint64 { return bytes }
			c.checkpointed(0, time.Now(), 0)
			for _, o := range tc.ops {
				if o.apply > 0 {
					index++
					bytes += o.apply
				}
				if o.mark {
					c.mark(index, bytes)
				}
				if o.checkpoint > 0 {
					c.checkpointed(o.checkpoint, time.Now(), 0)
				}
			}
			if got := c.BytesSince(); got != tc.wantSince {
				t.Fatalf("bytes since the newest checkpoint %d, want %d", got, tc.wantSince)
			}
		})
	}
}
