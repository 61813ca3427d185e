package traffic

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/cairn-db/cairn/jepsen/client"
	"github.com/cairn-db/cairn/linearizability"
)

// The window workload's table: tumbling windows of WindowSize, sum, with
// an allowed lateness above the disorder the clients generate and a
// retention longer than a run (every window of a run shorter than an hour
// is still stored at the final reads, and the watch log is never trimmed
// under the watcher).
const (
	WindowTable     = "jepsen-window"
	WindowSize      = time.Second
	WindowLateness  = 2 * time.Second
	WindowRetention = time.Hour
	// windowDisorder: an event's time is up to this much before the
	// client's clock, so events arrive out of order across windows; the
	// watermark a client sends is its clock minus this, so none of its
	// later events is ever below it.
	windowDisorder = 1500 * time.Millisecond
	// windowSource is every producer's source name for the watermark.
	windowSource = "events"
	// windowSlots is how many events one (key, window) takes: their values
	// are 4^0 … 4^30, so every sum decodes into how many times each event
	// is counted (linearizability.CheckWindows) and stays below 2^62.
	windowSlots = 31
)

// WindowSpec is the table spec the workload creates.
func WindowSpec() string {
	return fmt.Sprintf("tumbling %s sum lateness=%s retention=%s", WindowSize, WindowLateness, WindowRetention)
}

type windowSlot struct {
	key   string
	start int64
}

// windowed: exactly-once producers writing out-of-order events into a
// windowed table. Client c owns producer "jepsen-w<c>"; a step either
// reads a key's windows at a random node or commits 1-3 events with the
// client's watermark, retried with the same seq like the counter. A watch
// from the table's first result records every closed window.
type windowed struct {
	cfg   Config
	nodes []string
	keys  []string

	mu      sync.Mutex
	slots   map[windowSlot]int // events handed out per (key, window start)
	maxTime int64              // latest event time handed out
	full    int                // events not generated: every key's window was full
	watcher *client.Watcher
}

func newWindow(cfg Config, nodes []string) *windowed {
	w := &windowed{cfg: cfg, nodes: nodes, slots: map[windowSlot]int{}}
	for i := 0; i < cfg.Keys; i++ {
		w.keys = append(w.keys, fmt.Sprintf("win-%d", i))
	}
	return w
}

func windowProducer(c int) string { return fmt.Sprintf("jepsen-w%d", c) }

func windowStart(t int64) int64 {
	size := WindowSize.Milliseconds()
	return t - ((t%size)+size)%size
}

// events hands out up to n events with times in [max(wm, now-disorder),
// now] on random keys, each with the next unused value of its (key,
// window). A key whose window is full is skipped for another; an event no
// key has room for is dropped.
func (w *windowed) events(r *rand.Rand, now, wm int64, n int) []linearizability.WindowEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []linearizability.WindowEvent
	for i := 0; i < n; i++ {
		t := max(wm, now-r.Int64N(windowDisorder.Milliseconds()+1))
		first := r.IntN(len(w.keys))
		placed := false
		for j := 0; j < len(w.keys) && !placed; j++ {
			key := w.keys[(first+j)%len(w.keys)]
			s := windowSlot{key, windowStart(t)}
			if k := w.slots[s]; k < windowSlots {
				w.slots[s] = k + 1
				out = append(out, linearizability.WindowEvent{Key: key, Time: t, Value: int64(1) << (2 * k)})
				w.maxTime = max(w.maxTime, t)
				placed = true
			}
		}
		if !placed {
			w.full++
		}
	}
	return out
}

// Setup creates the table, starts the watch, and makes every client's
// producer join the table's watermark with one acknowledged commit. A
// producer takes part in the table watermark from its first commit with an
// event there; were a producer to join later, the others could have moved
// the table watermark past its first events and made them late. Once all
// have joined, the table watermark is at most every producer's own, and
// each producer's events are at or above its own: no event is ever late.
func (w *windowed) Setup(c *client.Client) error {
	deadline := time.Now().Add(30 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = c.CreateTable(WindowTable, WindowSpec()); err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond) // backoff; creating is idempotent here
	}
	if err != nil {
		return fmt.Errorf("window setup: create table: %w", err)
	}
	if w.watcher, err = c.StartWatch(WindowTable, c.ID+1); err != nil {
		return fmt.Errorf("window setup: watch: %w", err)
	}
	r := ClientRand(w.cfg.Seed, c.ID)
	for i := 0; i < w.cfg.Clients; i++ {
		err := w.commitUntilOK(c, windowProducer(i), deadline, func() ([]linearizability.WindowEvent, int64) {
			now := c.EventTime()
			wm := now - windowDisorder.Milliseconds()
			return w.events(r, now, wm, 1), wm
		})
		if err != nil {
			return fmt.Errorf("window setup: producer %s did not join the table: %w", windowProducer(i), err)
		}
	}
	return nil
}

// commitUntilOK registers producer name (a new epoch, fencing every older
// attempt) and commits what next returns as seq 1, retrying the same seq
// until it is acknowledged; a reopened session registers again and asks
// next for a new commit.
func (w *windowed) commitUntilOK(c *client.Client, name string, deadline time.Time, next func() ([]linearizability.WindowEvent, int64)) error {
	var last error = errors.New("deadline passed")
	for time.Now().Before(deadline) {
		s, err := c.Register(name, time.Until(deadline))
		if err != nil {
			return err
		}
		evs, wm := next()
		for time.Now().Before(deadline) {
			rec, res := c.WindowCommit(s, 1, WindowTable, windowSource, evs, wm)
			if res == client.CommitOK {
				return nil
			}
			last = errors.New(rec.Error)
			if res != client.CommitRetry {
				break
			}
			time.Sleep(100 * time.Millisecond) // backoff before the retry
		}
	}
	return last
}

func (w *windowed) Step(c *client.Client, st *ClientState, stop <-chan struct{}) {
	if st.Session == nil {
		s, err := c.Register(windowProducer(c.ID), 5*time.Second)
		if err != nil {
			return // try again next step
		}
		st.Session = s
	}
	if st.Rand.Float64() < 0.2 {
		c.ReadWindows(pick(st.Rand, w.nodes), WindowTable, pick(st.Rand, w.keys))
		return
	}
	now := c.EventTime()
	st.Watermark = max(st.Watermark, now-windowDisorder.Milliseconds())
	evs := w.events(st.Rand, now, st.Watermark, 1+st.Rand.IntN(3))
	wm := st.Watermark
	commitNext(w.cfg, st, stop, func(s *client.Session, seq uint64) client.CommitResult {
		_, res := c.WindowCommit(s, seq, WindowTable, windowSource, evs, wm)
		return res
	})
}

// Final fences every producer (a registration: no attempt still in flight
// can apply after it), sends each a watermark past every window's end plus
// the lateness so that every window closes, reads every key's windows
// (final), and waits until the watch has delivered as many windows as the
// final reads returned closed, then stops it.
func (w *windowed) Final(c *client.Client, deadline time.Time) error {
	defer func() {
		if w.watcher != nil {
			w.watcher.Stop()
		}
	}()
	w.mu.Lock()
	last := w.maxTime
	w.mu.Unlock()
	if last == 0 {
		last = c.EventTime()
	}
	flush := windowStart(last) + WindowSize.Milliseconds() + WindowLateness.Milliseconds()
	var errs []error
	for i := 0; i < w.cfg.Clients; i++ {
		if err := w.commitUntilOK(c, windowProducer(i), deadline, func() ([]linearizability.WindowEvent, int64) { return nil, flush }); err != nil {
			errs = append(errs, fmt.Errorf("final watermark of %s: %w", windowProducer(i), err))
		}
	}
	closed := 0
	for k, key := range w.keys {
		node := w.nodes[k%len(w.nodes)]
		var rec client.Record
		for time.Now().Before(deadline) {
			if rec = c.ReadWindows(node, WindowTable, key); rec.Outcome == linearizability.OutcomeOK {
				break
			}
			time.Sleep(100 * time.Millisecond) // backoff between recorded attempts
		}
		if rec.Outcome != linearizability.OutcomeOK {
			errs = append(errs, fmt.Errorf("final read of %s did not succeed before the deadline: %s", key, rec.Error))
			continue
		}
		for _, win := range rec.Windows {
			if win.Closed {
				closed++
			}
		}
	}
	if w.watcher != nil {
		for w.watcher.Delivered() < closed && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond) // poll the watcher's progress
		}
		if n := w.watcher.Delivered(); n < closed {
			errs = append(errs, fmt.Errorf("the watch delivered %d windows, the final reads returned %d closed", n, closed))
		}
	}
	return errors.Join(errs...)
}

func (w *windowed) CheckOptions() linearizability.Options {
	return linearizability.Options{Window: linearizability.WindowOptions{Size: WindowSize.Milliseconds(),
		Lateness: WindowLateness.Milliseconds(), Retention: WindowRetention.Milliseconds(), NoLate: true, Watched: true}}
}
