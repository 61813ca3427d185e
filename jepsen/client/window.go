package client

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/cairn-db/cairn/api"
	pb "github.com/cairn-db/cairn/api/cairnpb"
	"github.com/cairn-db/cairn/linearizability"
)

// EventTime is the run clock as event time: Unix milliseconds of the run's
// start plus the monotonic time since, so it never goes back.
func (c *Client) EventTime() int64 {
	return c.pool.Rec.Start().UnixMilli() + c.pool.Rec.Now()/int64(time.Millisecond)
}

// CreateTable creates a windowed table outside the history (workload
// setup); a table of that name that already exists is accepted.
func (c *Client) CreateTable(name, spec string) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.pool.Timeout)
	defer cancel()
	_, err := c.kv.CreateTable(ctx, name, spec)
	if errors.Is(err, api.ErrExists) {
		return nil
	}
	return err
}

// WindowCommit sends one attempt of producer commit seq of session s: the
// events as window ops on table, and watermark wm for the producer's
// source. Like Commit, attempts go to one node and move on after a
// failure; the record carries the store's late count, duplicate flag and
// log index when acknowledged.
func (c *Client) WindowCommit(s *Session, seq uint64, table, source string, evs []linearizability.WindowEvent, wm int64) (Record, CommitResult) {
	rid, id := c.next()
	r, ctx, cancel := c.begin(linearizability.Op{ID: id, Type: linearizability.OpWindowCommit, Events: evs, Watermark: wm,
		Producer: strconv.FormatUint(s.ID, 10), Epoch: s.Epoch, Seq: seq})
	defer cancel()
	ops := make([]*pb.Op, len(evs))
	for i, e := range evs {
		ops[i] = api.WindowAddOp(table, []byte(e.Key), e.Time, e.Value)
	}
	node := c.pool.Nodes[c.prod]
	conn, err := c.pool.conn(node.Addr)
	var resp *pb.CommitResponse
	if err == nil {
		resp, err = pb.NewProducerClient(conn).Commit(ctx, &pb.CommitRequest{ProducerId: s.ID, Epoch: s.Epoch, Seq: seq,
			Ops: ops, Watermarks: []*pb.Watermark{{Source: source, Time: wm}}, RequestId: rid})
	}
	if err == nil {
		late := int64(resp.GetLate())
		r.Late, r.Duplicate, r.LogIndex = &late, resp.GetDuplicate(), resp.GetIndex()
		return c.finish(&r, linearizability.OutcomeOK, nil), CommitOK
	}
	c.prod = c.rng.IntN(len(c.pool.Nodes))
	outcome, res := commitOutcome(err)
	return c.finish(&r, outcome, err), res
}

// ReadWindows reads every stored window of key in table at node
// (linearizable).
func (c *Client) ReadWindows(node, table, key string) Record {
	_, id := c.next()
	r, ctx, cancel := c.begin(linearizability.Op{ID: id, Type: linearizability.OpWindowRead, Key: key})
	defer cancel()
	r.Node = node
	ws, err := c.pool.readers[node].GetWindows(ctx, table, []byte(key), math.MinInt64, math.MaxInt64)
	if err != nil {
		return c.finish(&r, readOutcome(err), err)
	}
	r.Windows = []linearizability.WindowValue{}
	for _, w := range ws {
		r.Windows = append(r.Windows, linearizability.WindowValue{Start: w.Start, End: w.End, Value: w.Value.Int,
			Count: int64(w.Value.Count), Closed: w.Closed})
	}
	return c.finish(&r, linearizability.OutcomeOK, nil)
}

// Watcher records every closed window one watch stream delivers, as
// logical client ID: one record per delivery, resuming strictly after the
// last delivery it recorded when the stream gives up (so a window is
// recorded twice only if the store delivered it twice).
type Watcher struct {
	ID     int
	pool   *Pool
	cli    *api.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	n         uint32
	delivered int
	restarts  int
	lastErr   error
}

// StartWatch starts watching table from its oldest retained result, as
// logical client id (records go to c's recorder), through every node (the
// stream moves to another node when it breaks).
func (c *Client) StartWatch(table string, id int) (*Watcher, error) {
	p := c.pool
	eps := make([]string, len(p.Nodes))
	for i, n := range p.Nodes {
		eps[i] = n.Addr
	}
	cli, err := newAPIClient(30*time.Second, p.TLS, eps...)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &Watcher{ID: id, pool: p, cli: cli, cancel: cancel, done: make(chan struct{})}
	go w.run(ctx, table)
	return w, nil
}

func (w *Watcher) run(ctx context.Context, table string) {
	defer close(w.done)
	var pos api.Position
	for ctx.Err() == nil {
		err := w.cli.Watch(ctx, table, pos, func(cw api.ClosedWindow) error {
			pos = cw.Position
			w.record(cw)
			return nil
		})
		if ctx.Err() != nil {
			return
		}
		w.mu.Lock()
		w.restarts++
		w.lastErr = err
		w.mu.Unlock()
		select { // the client gave up (no node for its budget): start again
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (w *Watcher) record(cw api.ClosedWindow) {
	w.mu.Lock()
	w.n++
	w.delivered++
	id, _ := OpID(RequestID(w.ID, w.n))
	w.mu.Unlock()
	now := w.pool.Rec.Now()
	key := string(cw.Key)
	w.pool.Rec.Add(Record{Op: linearizability.Op{ID: id, Client: w.ID, Type: linearizability.OpWatch, Key: key,
		Windows: []linearizability.WindowValue{{Key: key, Start: cw.Start, End: cw.End, Value: cw.Value.Int,
			Count: int64(cw.Value.Count), Closed: true}},
		Position: cw.Position.String(), Call: now, Return: now, Outcome: linearizability.OutcomeOK}})
}

// Delivered is how many windows the watch has delivered so far.
func (w *Watcher) Delivered() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.delivered
}

// Stop ends the watch and waits for it; it returns a description of the
// stream's restarts, if any.
func (w *Watcher) Stop() string {
	w.cancel()
	<-w.done
	_ = w.cli.Close()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.restarts == 0 {
		return ""
	}
	return fmt.Sprintf("the watch stream gave up %d times and was restarted from its last position (last error: %v)", w.restarts, w.lastErr)
}
