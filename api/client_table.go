package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/cairn-db/cairn/api/cairnpb"
	"github.com/cairn-db/cairn/window"
)

var (
	// ErrExists: the table (or other named thing) already exists.
	ErrExists = errors.New("cairn: already exists")
	// ErrTrimmed: a watch cannot resume from the given position because
	// the windows after it expired and were trimmed from the watch log.
	ErrTrimmed = errors.New("cairn: watch position trimmed")
)

// TableInfo describes a windowed table.
type TableInfo struct {
	Name string
	// Spec in canonical form, e.g. "tumbling 1m count lateness=10s retention=5m".
	Spec    string
	Created uint64 // raft index of the creation
	// Watermark (Unix ms) is meaningful only when HasWatermark is set.
	Watermark    int64
	HasWatermark bool
	Late         uint64 // events rejected as late, ever
	Closed       uint64 // windows published as final, ever
	Producers    int    // producer sources feeding the watermark
	// The watch log was trimmed through this position.
	Trimmed Position
}

func tableInfoFromPB(t *pb.TableInfo) TableInfo {
	return TableInfo{Name: t.GetName(), Spec: t.GetSpec(), Created: t.GetCreatedIndex(), Watermark: t.GetWatermark(),
		HasWatermark: t.GetHasWatermark(), Late: t.GetLate(), Closed: t.GetClosed(), Producers: int(t.GetProducers()),
		Trimmed: Position{Index: t.GetTrimIndex(), Ord: t.GetTrimOrd()}}
}

// WindowResult is one window of one key.
type WindowResult struct {
	Key        []byte
	Start, End int64 // [Start, End) in Unix ms
	Value      window.Value
	Closed     bool // final: the watermark reached End + allowed lateness
}

func windowValueFromPB(v *pb.WindowValue) window.Value {
	out := window.Value{Count: v.GetCount(), Overflow: v.GetOverflow()}
	switch k := v.GetKind().(type) {
	case *pb.WindowValue_Int:
		out.Kind, out.Int = window.ValueInt, k.Int
	case *pb.WindowValue_Float:
		out.Kind, out.Float = window.ValueFloat, k.Float
	}
	return out
}

func windowResultFromPB(w *pb.WindowResult) WindowResult {
	return WindowResult{Key: w.GetKey(), Start: w.GetStart(), End: w.GetEnd(), Value: windowValueFromPB(w.GetValue()), Closed: w.GetClosed()}
}

// Position is a place in a table's watch log: the raft index of the entry
// that closed a window and the window's rank among those it closed. The
// zero Position means "from the oldest retained result".
type Position struct {
	Index uint64
	Ord   uint32
}

// String renders "INDEX/ORD", the form ParsePosition reads.
func (p Position) String() string { return fmt.Sprintf("%d/%d", p.Index, p.Ord) }

// Less orders positions as the watch log does.
func (p Position) Less(o Position) bool {
	return p.Index < o.Index || (p.Index == o.Index && p.Ord < o.Ord)
}

// ParsePosition parses "INDEX/ORD" (or just "INDEX", meaning INDEX/0).
func ParsePosition(s string) (Position, error) {
	is, os, _ := strings.Cut(strings.TrimSpace(s), "/")
	i, err := strconv.ParseUint(is, 10, 64)
	if err != nil {
		return Position{}, fmt.Errorf("watch position %q: want INDEX/ORD, e.g. 1234/0", s)
	}
	var o uint64
	if os != "" {
		if o, err = strconv.ParseUint(os, 10, 32); err != nil {
			return Position{}, fmt.Errorf("watch position %q: want INDEX/ORD, e.g. 1234/0", s)
		}
	}
	return Position{Index: i, Ord: uint32(o)}, nil
}

// ClosedWindow is one final window result from Watch.
type ClosedWindow struct {
	Position   Position // pass it back to Watch to resume after this result
	Key        []byte
	Start, End int64
	Value      window.Value
	CloseTime  int64 // End + allowed lateness
	ExpireTime int64 // when it is evicted and trimmed from the watch log
}

func closedFromPB(c *pb.ClosedWindow) ClosedWindow {
	return ClosedWindow{Position: Position{Index: c.GetIndex(), Ord: c.GetOrd()}, Key: c.GetKey(), Start: c.GetStart(),
		End: c.GetEnd(), Value: windowValueFromPB(c.GetValue()), CloseTime: c.GetCloseTime(), ExpireTime: c.GetExpireTime()}
}

// tableErr adds the table sentinels to an error from call.
func tableErr(err error) error {
	switch {
	case err == nil:
		return nil
	case ReasonOf(err) == ReasonTrimmed:
		return &clientError{ErrTrimmed, err}
	case status.Code(err) == codes.AlreadyExists:
		return &clientError{ErrExists, err}
	}
	return err
}

// CreateTable creates a windowed table from a spec such as
// "tumbling 1m count lateness=10s retention=5m" and returns its canonical
// form. An existing table gives ErrExists; an invalid spec InvalidArgument
// with the parser's message. Not retried on an unknown outcome (a retry
// could not tell its own creation from someone else's).
func (c *Client) CreateTable(ctx context.Context, name, spec string) (string, error) {
	var resp *pb.CreateTableResponse
	err := c.call(ctx, retryUnsent, func(ctx context.Context, cc *grpc.ClientConn, o ...grpc.CallOption) (err error) {
		resp, err = pb.NewTableClient(cc).CreateTable(ctx, &pb.CreateTableRequest{Name: name, Spec: spec}, o...)
		return err
	})
	return resp.GetSpec(), tableErr(err)
}

// DropTable drops a table with all its windows; a missing one gives ErrNotFound.
func (c *Client) DropTable(ctx context.Context, name string) error {
	err := c.call(ctx, retryUnsent, func(ctx context.Context, cc *grpc.ClientConn, o ...grpc.CallOption) error {
		_, err := pb.NewTableClient(cc).DropTable(ctx, &pb.DropTableRequest{Name: name}, o...)
		return err
	})
	return tableErr(err)
}

// DescribeTable returns a table's spec, watermark and counters.
func (c *Client) DescribeTable(ctx context.Context, name string, opts ...ReadOption) (TableInfo, error) {
	var resp *pb.DescribeTableResponse
	req := &pb.DescribeTableRequest{Name: name, Consistency: consistency(opts)}
	err := c.call(ctx, retryRead, func(ctx context.Context, cc *grpc.ClientConn, o ...grpc.CallOption) (err error) {
		resp, err = pb.NewTableClient(cc).DescribeTable(ctx, req, o...)
		return err
	})
	if err != nil {
		return TableInfo{}, tableErr(err)
	}
	return tableInfoFromPB(resp.GetTable()), nil
}

// ListTables lists every table in name order.
func (c *Client) ListTables(ctx context.Context, opts ...ReadOption) ([]TableInfo, error) {
	var resp *pb.ListTablesResponse
	req := &pb.ListTablesRequest{Consistency: consistency(opts)}
	err := c.call(ctx, retryRead, func(ctx context.Context, cc *grpc.ClientConn, o ...grpc.CallOption) (err error) {
		resp, err = pb.NewTableClient(cc).ListTables(ctx, req, o...)
		return err
	})
	if err != nil {
		return nil, tableErr(err)
	}
	out := make([]TableInfo, len(resp.GetTables()))
	for i, t := range resp.GetTables() {
		out[i] = tableInfoFromPB(t)
	}
	return out, nil
}

// GetWindows returns key's stored windows (open, or closed and not yet
// evicted) that overlap [from, to) (Unix ms), ordered by start.
func (c *Client) GetWindows(ctx context.Context, table string, key []byte, from, to int64, opts ...ReadOption) ([]WindowResult, error) {
	var resp *pb.GetWindowsResponse
	req := &pb.GetWindowsRequest{Table: table, Key: key, From: from, To: to, Consistency: consistency(opts)}
	err := c.call(ctx, retryRead, func(ctx context.Context, cc *grpc.ClientConn, o ...grpc.CallOption) (err error) {
		resp, err = pb.NewTableClient(cc).GetWindows(ctx, req, o...)
		return err
	})
	if err != nil {
		return nil, tableErr(err)
	}
	out := make([]WindowResult, len(resp.GetWindows()))
	for i, w := range resp.GetWindows() {
		out[i] = windowResultFromPB(w)
	}
	return out, nil
}

// GetWindowKeys returns one page of the keys that have window [start, end)
// of a tumbling or hopping table, in key order, after pageToken (nil: from
// the first), at most limit (0: the server's page size). next is the token
// of the following page, nil when there is none. Each page is a consistent
// read; the whole listing is not.
func (c *Client) GetWindowKeys(ctx context.Context, table string, start, end int64, pageToken []byte, limit uint32, opts ...ReadOption) (page []WindowResult, next []byte, err error) {
	var resp *pb.GetWindowKeysResponse
	req := &pb.GetWindowKeysRequest{Table: table, Start: start, End: end, PageToken: pageToken, Limit: limit, Consistency: consistency(opts)}
	err = c.call(ctx, retryRead, func(ctx context.Context, cc *grpc.ClientConn, o ...grpc.CallOption) (err error) {
		resp, err = pb.NewTableClient(cc).GetWindowKeys(ctx, req, o...)
		return err
	})
	if err != nil {
		return nil, nil, tableErr(err)
	}
	page = make([]WindowResult, len(resp.GetWindows()))
	for i, w := range resp.GetWindows() {
		page[i] = windowResultFromPB(w)
	}
	if len(resp.GetNextPageToken()) > 0 {
		next = resp.GetNextPageToken()
	}
	return page, next, nil
}

// fnError carries an error returned by the Watch callback.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

// Watch calls fn with every final window result of table after position
// from (the zero Position: from the oldest retained result), in the watch
// log's order, until ctx ends or fn returns an error; it returns that
// error (ctx.Err() when ctx ended).
//
// Any node can serve a watch. When the stream breaks (the node stops, the
// connection drops, the node loses the cluster), Watch reconnects to the
// next endpoint and resumes strictly after the last result fn accepted, so
// every result is delivered exactly once across disconnects and leader
// changes. ClosedWindow.Position is the resume token: a consumer that
// persists the position of what it processed can restart with it.
//
// Watch gives up with ErrUnavailable when no node served it for the
// client's RetryBudget, with ErrTrimmed when the results after from have
// expired (evicted before they were read), and with ErrNotFound when the
// table does not exist or was dropped.
func (c *Client) Watch(ctx context.Context, table string, from Position, fn func(ClosedWindow) error) error {
	c.calls.Add(1)
	pos := from
	backoff := c.cfg.BackoffMin
	giveUp := time.Now().Add(c.cfg.RetryBudget)
	// Start where the other calls go (any node will do), then rotate.
	start, ep := c.pick(), uint64(0)
	for i, e := range c.cfg.Endpoints {
		if e == start {
			ep = uint64(i)
		}
	}
	for {
		addr := c.cfg.Endpoints[ep%uint64(len(c.cfg.Endpoints))]
		established, err := c.watchOnce(ctx, addr, table, &pos, fn)
		var fe fnError
		switch {
		case errors.As(err, &fe):
			return fe.err
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil && !transient(err) && status.Code(err) != codes.Canceled:
			return tableErr(c.wrap(err, retryRead, false))
		}
		if established {
			backoff = c.cfg.BackoffMin
			giveUp = time.Now().Add(c.cfg.RetryBudget)
		}
		if time.Now().After(giveUp) {
			return c.wrap(err, retryRead, false)
		}
		c.retries.Add(1)
		c.log.Debug("watch: reconnecting", "table", table, "from", pos.String(), "node", addr, "err", err)
		ep++
		d := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff = min(backoff*2, c.cfg.BackoffMax)
	}
}

// watchOnce runs one watch stream against addr, advancing *pos past every
// result fn accepts. established reports whether the node accepted the
// stream (so the retry budget starts over).
func (c *Client) watchOnce(ctx context.Context, addr, table string, pos *Position, fn func(ClosedWindow) error) (established bool, err error) {
	cc, err := c.conn(addr)
	if err != nil {
		return false, status.Error(codes.Unavailable, err.Error())
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := pb.NewTableClient(cc).Watch(sctx, &pb.WatchRequest{Table: table, ResumeIndex: pos.Index, ResumeOrd: pos.Ord})
	if err != nil {
		return false, err
	}
	// The server sends its header once it accepted the stream; a node that
	// does not answer in time is skipped.
	t := time.AfterFunc(c.cfg.AttemptTimeout, cancel)
	md, err := stream.Header()
	if !t.Stop() {
		return false, status.Error(codes.Unavailable, "watch: no answer from "+addr)
	}
	if err != nil {
		return false, err
	}
	// Without the header the stream failed at once; Recv returns why.
	established = len(md.Get(mdWatch)) > 0
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return established, status.Error(codes.Unavailable, "watch stream ended by "+addr)
		}
		if err != nil {
			return established, err
		}
		if ctx.Err() != nil {
			// Results already received after the caller stopped are not
			// delivered.
			return established, ctx.Err()
		}
		cw := closedFromPB(m)
		if !pos.Less(cw.Position) {
			// The server resumes strictly after pos; anything else would
			// deliver a result twice.
			return true, fnError{fmt.Errorf("cairn: watch of %q: %s sent position %s, not after %s", table, addr, cw.Position, *pos)}
		}
		if err := fn(cw); err != nil {
			return true, fnError{err}
		}
		*pos = cw.Position
	}
}
