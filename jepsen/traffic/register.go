package traffic

import (
	"fmt"
	"sync"
	"time"

	"github.com/cairn-db/cairn/jepsen/client"
	"github.com/cairn-db/cairn/linearizability"
)

// register: put / get / cas on a few keys. Every value is unique
// ("c<client>-<n>"); cas expects the last value some client saw, so that
// a fair share of cas operations succeed. Reads go to a random node.
type register struct {
	keys  []string
	nodes []string
	mu    sync.Mutex
	last  map[string]string
	count map[int]int
}

func newRegister(cfg Config, nodes []string) *register {
	w := &register{nodes: nodes, last: map[string]string{}, count: map[int]int{}}
	for i := 0; i < cfg.Keys; i++ {
		w.keys = append(w.keys, fmt.Sprintf("reg-%d", i))
	}
	return w
}

func (w *register) Setup(*client.Client) error { return nil }

func (w *register) value(c *client.Client) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.count[c.ID]++
	return fmt.Sprintf("c%d-%d", c.ID, w.count[c.ID])
}

func (w *register) seen(key, v string) {
	w.mu.Lock()
	w.last[key] = v
	w.mu.Unlock()
}

func (w *register) Step(c *client.Client, st *ClientState, _ <-chan struct{}) {
	key := pick(st.Rand, w.keys)
	p := st.Rand.Float64()
	w.mu.Lock()
	expected, known := w.last[key]
	w.mu.Unlock()
	switch {
	case p < 0.5:
		if r := c.Get(pick(st.Rand, w.nodes), key); r.Outcome == linearizability.OutcomeOK && r.Found {
			w.seen(key, r.Result)
		}
	case p < 0.75 || !known:
		v := w.value(c)
		if r := c.Put(key, v); r.Outcome == linearizability.OutcomeOK {
			w.seen(key, v)
		}
	default:
		v := w.value(c)
		if r := c.CAS(key, expected, v); r.Outcome == linearizability.OutcomeOK && *r.Applied {
			w.seen(key, v)
		}
	}
}

func (w *register) Final(c *client.Client, deadline time.Time) error {
	for i, key := range w.keys {
		node := w.nodes[i%len(w.nodes)]
		if err := retryFinal(deadline, key, func() client.Record { return c.Get(node, key) }); err != nil {
			return err
		}
	}
	return nil
}

func (w *register) CheckOptions() linearizability.Options { return linearizability.Options{} }
