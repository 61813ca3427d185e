package traffic

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/cairn-db/cairn/jepsen/client"
	"github.com/cairn-db/cairn/linearizability"
)

// perKey increments go to one counter key, with deltas 4^0 … 4^30: the
// deltas of a key are identifiable (each divides the next with ratio 4), so
// every read decodes into how many times each increment was applied and a
// duplicate is attributed exactly (linearizability/README.md).
const perKey = 31

// maxAttempts of one commit (counter, window) before the client gives up
// on it and restarts its producer (a new epoch fences the abandoned
// attempts).
const maxAttempts = 6

// counter: exactly-once increments through producer sessions. Each client
// owns producer "jepsen-c<id>"; an increment is retried with the same seq
// until its outcome is known; a fenced or restarted producer registers
// again. Reads of recent keys go to a random node.
type counter struct {
	cfg   Config
	nodes []string
	next  atomic.Int64 // increments handed out
}

func newCounter(cfg Config, nodes []string) *counter { return &counter{cfg: cfg, nodes: nodes} }

func (w *counter) Setup(*client.Client) error { return nil }

// CounterKey is the key and delta of the m-th increment.
func CounterKey(m int64) (string, int64) {
	return fmt.Sprintf("ctr-%03d", m/perKey), int64(1) << (2 * (m % perKey))
}

func (w *counter) keys() int64 { return (w.next.Load()-1)/perKey + 1 }

func (w *counter) Step(c *client.Client, st *ClientState, stop <-chan struct{}) {
	if st.Session == nil {
		s, err := c.Register(fmt.Sprintf("jepsen-c%d", c.ID), 5*time.Second)
		if err != nil {
			return // try again next step
		}
		st.Session = s
	}
	if st.Rand.Float64() < 0.4 {
		n := max(w.keys(), 1)
		k := n - 1 - int64(st.Rand.IntN(int(min(n, 3))))
		key, _ := CounterKey(k * perKey)
		c.ReadCounter(pick(st.Rand, w.nodes), key)
		return
	}
	m := w.next.Add(1) - 1
	key, delta := CounterKey(m)
	commitNext(w.cfg, st, stop, func(s *client.Session, seq uint64) client.CommitResult {
		_, res := c.Commit(s, seq, key, delta)
		return res
	})
}

// commitNext sends the next commit of st.Session (seq one past the last
// acknowledged) with send, retrying the same seq until its outcome is
// known. Acknowledged: the session moves on; with probability
// cfg.Redeliver the commit is sent once more (a reply lost on the way
// back: the store must answer it as a duplicate), and with probability
// cfg.Restart the producer restarts (a new epoch). Fenced or rejected, or
// still unknown after maxAttempts: the session is dropped, so the next step
// registers again and the new epoch fences the abandoned attempts. When
// stop closes the commit is left unknown: the run is over.
func commitNext(cfg Config, st *ClientState, stop <-chan struct{}, send func(s *client.Session, seq uint64) client.CommitResult) {
	s := st.Session
	seq := s.Seq + 1
	for attempt := 0; ; attempt++ {
		switch send(s, seq) {
		case client.CommitOK:
			s.Seq = seq
			if st.Rand.Float64() < cfg.Redeliver {
				if send(s, seq) == client.CommitReopen {
					st.Session = nil
				}
			}
			if st.Rand.Float64() < cfg.Restart {
				st.Session = nil
			}
			return
		case client.CommitReopen, client.CommitRejected:
			st.Session = nil
			return
		}
		if attempt+1 == maxAttempts {
			st.Session = nil // give up on this commit; its fate is in the log
			return
		}
		select {
		case <-stop:
			return
		case <-time.After(time.Duration(50+st.Rand.IntN(100)) * time.Millisecond): // backoff before the retry
		}
	}
}

func (w *counter) Final(c *client.Client, deadline time.Time) error {
	n := w.keys()
	if w.next.Load() == 0 {
		n = 0
	}
	for k := int64(0); k < n; k++ {
		key, _ := CounterKey(k * perKey)
		node := w.nodes[int(k)%len(w.nodes)]
		if err := retryFinal(deadline, key, func() client.Record { return c.ReadCounter(node, key) }); err != nil {
			return err
		}
	}
	return nil
}

func (w *counter) CheckOptions() linearizability.Options { return linearizability.Options{} }
