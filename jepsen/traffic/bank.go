package traffic

import (
	"errors"
	"fmt"
	"time"

	"github.com/cairn-db/cairn/api"
	pb "github.com/cairn-db/cairn/api/cairnpb"
	"github.com/cairn-db/cairn/jepsen/client"
	"github.com/cairn-db/cairn/linearizability"
)

// bankPrefix holds the accounts; read-all scans it in one page.
const bankPrefix = "bank/"

// bankInitKey marks the accounts as initialised (outside the prefix).
const bankInitKey = "bank-initialised"

// bank: transfers between a few accounts, each one atomic batch of two
// integer adds (unconditional: balances may go negative), and read-all
// scans at a random node. Every read must sum to the initial total and fit
// a linearization (BankModel).
type bank struct {
	cfg      Config
	nodes    []string
	accounts []string
}

func newBank(cfg Config, nodes []string) *bank {
	w := &bank{cfg: cfg, nodes: nodes}
	for i := 0; i < cfg.Accounts; i++ {
		w.accounts = append(w.accounts, fmt.Sprintf("%sacct-%d", bankPrefix, i))
	}
	return w
}

// Setup credits every account once. The batch also creates bankInitKey
// with a compare-and-set on its absence, so a retry after an unknown
// outcome cannot credit twice.
func (w *bank) Setup(c *client.Client) error {
	ops := []*pb.Op{api.CASOp([]byte(bankInitKey), nil, []byte("1"))}
	for _, a := range w.accounts {
		ops = append(ops, api.AddOp([]byte(a), w.cfg.Balance))
	}
	deadline := time.Now().Add(30 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		err = c.Unrecorded(ops...)
		if err == nil || errors.Is(err, api.ErrCASFailed) {
			return nil
		}
		time.Sleep(200 * time.Millisecond) // backoff; the batch is idempotent
	}
	return fmt.Errorf("bank setup: %w", err)
}

func (w *bank) Step(c *client.Client, st *ClientState, _ <-chan struct{}) {
	if st.Rand.Float64() < 0.5 {
		c.ReadAll(pick(st.Rand, w.nodes), bankPrefix)
		return
	}
	from := st.Rand.IntN(len(w.accounts))
	to := (from + 1 + st.Rand.IntN(len(w.accounts)-1)) % len(w.accounts)
	c.Transfer(w.accounts[from], w.accounts[to], int64(1+st.Rand.IntN(5)))
}

func (w *bank) Final(c *client.Client, deadline time.Time) error {
	return retryFinal(deadline, "all accounts", func() client.Record { return c.ReadAll(w.nodes[0], bankPrefix) })
}

func (w *bank) CheckOptions() linearizability.Options {
	init := map[string]int64{}
	for _, a := range w.accounts {
		init[a] = w.cfg.Balance
	}
	return linearizability.Options{Bank: linearizability.BankOptions{Initial: init}}
}
