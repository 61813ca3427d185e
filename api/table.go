package api

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/cairn-db/cairn/api/cairnpb"
	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/fsm/command"
	"github.com/cairn-db/cairn/window"
)

// Windowed tables: the Table service. Writes (create, drop) go through the
// log like KV writes and are forwarded to the leader; reads take the usual
// consistency levels. Watch is served by any node from its applied state:
// the watch log is part of the replicated state, so every replica holds the
// same results at the same positions.

// ReasonTrimmed: a watch resume position is older than the retained log.
const ReasonTrimmed = "TRIMMED"

const (
	maxSpecBytes = 1024
	// watchBatch is how many closed windows one read of the watch log takes.
	watchBatch = 512
	// A node that has known no leader for watchNoLeader ends its watch
	// streams, so that subscribers move to a node that still hears the
	// cluster (a partitioned follower would otherwise keep them waiting).
	watchNoLeader = 3 * time.Second
	watchTick     = time.Second
	// mdWatch is the header a node sends when it accepts a watch stream.
	mdWatch = "cairn-watch"
)

// tableStatus maps table read errors to gRPC errors.
func tableStatus(table string, err error) error {
	switch {
	case errors.Is(err, fsm.ErrNoTable):
		return statusWithReason(codes.NotFound, ReasonNotFound, fmt.Sprintf("table %q does not exist", table), nil)
	case errors.Is(err, fsm.ErrTrimmed):
		return statusWithReason(codes.FailedPrecondition, ReasonTrimmed, fmt.Sprintf("cannot resume the watch of table %q: %v; "+
			"the windows after that position expired before they were read: start again from the oldest retained result "+
			"(position 0/0), or give the table a longer retention", table, err), nil)
	}
	return toStatus(err)
}

func checkTableName(name string) error {
	if err := fsm.ValidTableName(name); err != nil {
		return invalid("%v", err)
	}
	return nil
}

// CreateTable implements Table.CreateTable. The spec is parsed and
// validated here, so a bad spec never reaches the log.
func (s *Server) CreateTable(ctx context.Context, req *pb.CreateTableRequest) (*pb.CreateTableResponse, error) {
	if err := checkTableName(req.GetName()); err != nil {
		return nil, err
	}
	if len(req.GetSpec()) > maxSpecBytes {
		return nil, invalid("table spec of %d bytes exceeds the limit of %d", len(req.GetSpec()), maxSpecBytes)
	}
	spec, err := window.ParseSpec(req.GetSpec())
	if err != nil {
		return nil, invalid("table %q: %v", req.GetName(), err)
	}
	canon := spec.String()
	res, err := s.apply(ctx, &command.Command{Type: command.TypeCreateTable,
		CreateTable: &command.CreateTable{Name: req.GetName(), Spec: []byte(canon)}})
	if isRedirect(err) {
		return forward(s, ctx, err, req, pb.NewTableClient, pb.TableClient.CreateTable)
	}
	if err == nil {
		err = resultError(res)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.CreateTableResponse{Index: res.Index, Spec: canon}, nil
}

// DropTable implements Table.DropTable: the table and all its windows and
// watch log go in one log entry.
func (s *Server) DropTable(ctx context.Context, req *pb.DropTableRequest) (*pb.DropTableResponse, error) {
	if err := checkTableName(req.GetName()); err != nil {
		return nil, err
	}
	res, err := s.apply(ctx, &command.Command{Type: command.TypeDropTable, DropTable: &command.DropTable{Name: req.GetName()}})
	if isRedirect(err) {
		return forward(s, ctx, err, req, pb.NewTableClient, pb.TableClient.DropTable)
	}
	if err == nil {
		err = resultError(res)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.DropTableResponse{Index: res.Index}, nil
}

func tableInfoToPB(t fsm.TableInfo) *pb.TableInfo {
	return &pb.TableInfo{Name: t.Name, Spec: t.Spec.String(), CreatedIndex: t.Created,
		Watermark: t.Watermark, HasWatermark: t.Watermark != window.MinWatermark,
		Late: t.Late, Closed: t.Closed, Producers: uint32(t.Producers), TrimIndex: t.TrimIndex, TrimOrd: t.TrimOrd}
}

// DescribeTable implements Table.DescribeTable.
func (s *Server) DescribeTable(ctx context.Context, req *pb.DescribeTableRequest) (*pb.DescribeTableResponse, error) {
	if err := checkTableName(req.GetName()); err != nil {
		return nil, err
	}
	if err := s.readBarrier(ctx, req.GetConsistency()); err != nil {
		if isRedirect(err) {
			return forward(s, ctx, err, req, pb.NewTableClient, pb.TableClient.DescribeTable)
		}
		return nil, toStatus(err)
	}
	info, err := s.state.Table(req.GetName())
	if err != nil {
		return nil, tableStatus(req.GetName(), err)
	}
	return &pb.DescribeTableResponse{Table: tableInfoToPB(info)}, nil
}

// ListTables implements Table.ListTables.
func (s *Server) ListTables(ctx context.Context, req *pb.ListTablesRequest) (*pb.ListTablesResponse, error) {
	if err := s.readBarrier(ctx, req.GetConsistency()); err != nil {
		if isRedirect(err) {
			return forward(s, ctx, err, req, pb.NewTableClient, pb.TableClient.ListTables)
		}
		return nil, toStatus(err)
	}
	ts, err := s.state.Tables()
	if err != nil {
		return nil, toStatus(err)
	}
	out := &pb.ListTablesResponse{Tables: make([]*pb.TableInfo, len(ts))}
	for i, t := range ts {
		out.Tables[i] = tableInfoToPB(t)
	}
	return out, nil
}

func windowValueToPB(v window.Value) *pb.WindowValue {
	out := &pb.WindowValue{Count: v.Count, Overflow: v.Overflow}
	switch v.Kind {
	case window.ValueInt:
		out.Kind = &pb.WindowValue_Int{Int: v.Int}
	case window.ValueFloat:
		out.Kind = &pb.WindowValue_Float{Float: v.Float}
	}
	return out
}

func windowResultToPB(w fsm.WindowResult) *pb.WindowResult {
	return &pb.WindowResult{Key: w.Key, Start: w.Start, End: w.End, Value: windowValueToPB(w.Value), Closed: w.Closed}
}

// GetWindows implements Table.GetWindows.
func (s *Server) GetWindows(ctx context.Context, req *pb.GetWindowsRequest) (*pb.GetWindowsResponse, error) {
	if err := checkTableName(req.GetTable()); err != nil {
		return nil, err
	}
	if err := s.cfg.Limits.checkKey(req.GetKey()); err != nil {
		return nil, err
	}
	if req.GetTo() <= req.GetFrom() {
		return nil, invalid("window query: to (%d) must be after from (%d)", req.GetTo(), req.GetFrom())
	}
	if err := s.readBarrier(ctx, req.GetConsistency()); err != nil {
		if isRedirect(err) {
			return forward(s, ctx, err, req, pb.NewTableClient, pb.TableClient.GetWindows)
		}
		return nil, toStatus(err)
	}
	ws, err := s.state.Windows(req.GetTable(), req.GetKey(), req.GetFrom(), req.GetTo())
	if err != nil {
		return nil, tableStatus(req.GetTable(), err)
	}
	out := &pb.GetWindowsResponse{Windows: make([]*pb.WindowResult, len(ws))}
	for i, w := range ws {
		out.Windows[i] = windowResultToPB(w)
	}
	return out, nil
}

// checkWindowOf reports whether [start, end) is a window of spec.
func checkWindowOf(table string, spec window.Spec, start, end int64) error {
	step := spec.Size
	switch spec.Kind {
	case window.Tumbling:
	case window.Hopping:
		step = spec.Slide
	default:
		return invalid("table %q has %s windows: keys can be listed per window only for tumbling and hopping tables", table, spec.Kind)
	}
	if start < window.MinTime || start > window.MaxTime {
		return invalid("window start %d is outside the supported range [%d, %d]", start, window.MinTime, window.MaxTime)
	}
	if end-start != spec.Size || start%step != 0 {
		return invalid("[%d, %d) is not a window of table %q (%s): windows are %s long and start at multiples of %s",
			start, end, table, spec, window.FormatDuration(spec.Size), window.FormatDuration(step))
	}
	return nil
}

// GetWindowKeys implements Table.GetWindowKeys: one page of the keys that
// have window [start, end), in key order.
func (s *Server) GetWindowKeys(ctx context.Context, req *pb.GetWindowKeysRequest) (*pb.GetWindowKeysResponse, error) {
	if err := checkTableName(req.GetTable()); err != nil {
		return nil, err
	}
	if err := s.readBarrier(ctx, req.GetConsistency()); err != nil {
		if isRedirect(err) {
			return forward(s, ctx, err, req, pb.NewTableClient, pb.TableClient.GetWindowKeys)
		}
		return nil, toStatus(err)
	}
	info, err := s.state.Table(req.GetTable())
	if err != nil {
		return nil, tableStatus(req.GetTable(), err)
	}
	if err := checkWindowOf(req.GetTable(), info.Spec, req.GetStart(), req.GetEnd()); err != nil {
		return nil, err
	}
	limit := int(req.GetLimit())
	if limit == 0 || limit > s.cfg.Limits.MaxScanLimit {
		limit = s.cfg.Limits.MaxScanLimit
	}
	var after []byte
	if len(req.GetPageToken()) > 0 {
		after = req.GetPageToken()
	}
	ws, err := s.state.WindowKeys(req.GetTable(), req.GetStart(), req.GetEnd(), after, limit+1)
	if err != nil {
		return nil, tableStatus(req.GetTable(), err)
	}
	out := &pb.GetWindowKeysResponse{}
	if len(ws) > limit {
		ws = ws[:limit]
		out.NextPageToken = ws[limit-1].Key
	}
	out.Windows = make([]*pb.WindowResult, len(ws))
	for i, w := range ws {
		out.Windows[i] = windowResultToPB(w)
	}
	return out, nil
}

func closedToPB(c *fsm.ClosedResult) *pb.ClosedWindow {
	return &pb.ClosedWindow{Index: c.Index, Ord: c.Ord, Key: c.Key, Start: c.Start, End: c.End,
		Value: windowValueToPB(c.Value), CloseTime: c.CloseTime, ExpireTime: c.Expire}
}

// Watch implements Table.Watch: every final window result after the resume
// position, in watch-log order, then more as this node applies them. It
// ends only on error: the client's context, the table being dropped, this
// node shutting down or losing the cluster (Unavailable: resume elsewhere).
func (s *Server) Watch(req *pb.WatchRequest, stream pb.Table_WatchServer) error {
	ctx := stream.Context()
	name := req.GetTable()
	if err := checkTableName(name); err != nil {
		return err
	}
	info, err := s.state.Table(name)
	if errors.Is(err, fsm.ErrNoTable) {
		// This node may not have applied the creation yet: ask the leader
		// (a linearizable describe, forwarded when we are a follower) and
		// wait until the creation is applied here.
		bctx, cancel := context.WithTimeout(ctx, s.cfg.ForwardTimeout)
		d, derr := s.DescribeTable(bctx, &pb.DescribeTableRequest{Name: name})
		if derr == nil {
			derr = toStatus(s.raft.WaitApplied(bctx, d.GetTable().GetCreatedIndex()))
		}
		cancel()
		if derr != nil {
			return derr
		}
		info, err = s.state.Table(name)
	}
	if err != nil {
		return tableStatus(name, err)
	}
	idx, ord := req.GetResumeIndex(), req.GetResumeOrd()
	if (idx != 0 || ord != 0) && idx <= info.Created {
		// Every result of this table was published after its creation.
		return statusWithReason(codes.FailedPrecondition, ReasonTrimmed, fmt.Sprintf("watch position %d/%d is older than table %q "+
			"(created at index %d): it belongs to a table of the same name that was dropped", idx, ord, name, info.Created), nil)
	}
	// The header tells the client the stream is established.
	if err := stream.SendHeader(metadata.Pairs(mdWatch, s.cfg.NodeID)); err != nil {
		return err
	}
	tick := time.NewTicker(watchTick)
	defer tick.Stop()
	var noLeader time.Time
	for {
		// Take the channel before reading, so an apply between the read
		// and the wait is not missed.
		applied := s.state.Notify()
		cur, err := s.state.Table(name)
		if err == nil && cur.Created != info.Created {
			err = fmt.Errorf("%w: %q was dropped and created again", fsm.ErrNoTable, name)
		}
		if err != nil {
			return tableStatus(name, err)
		}
		res, err := s.state.ClosedSince(name, idx, ord, watchBatch)
		if err != nil {
			return tableStatus(name, err)
		}
		for i := range res {
			if err := stream.Send(closedToPB(&res[i])); err != nil {
				return err
			}
			idx, ord = res[i].Index, res[i].Ord
		}
		if len(res) == watchBatch {
			continue
		}
	wait:
		for {
			select {
			case <-applied:
				break wait
			case <-ctx.Done():
				return status.FromContextError(ctx.Err()).Err()
			case <-s.closing:
				return status.Error(codes.Unavailable, "node is shutting down; resume the watch on another node")
			case now := <-tick.C:
				if id, _ := s.raft.Leader(); id != "" {
					noLeader = time.Time{}
				} else if noLeader.IsZero() {
					noLeader = now
				} else if now.Sub(noLeader) >= watchNoLeader {
					return statusWithReason(codes.Unavailable, ReasonNoLeader, fmt.Sprintf("node %s has known no leader for %v; resume the watch on another node",
						s.cfg.NodeID, now.Sub(noLeader).Round(time.Second)), nil)
				}
			}
		}
	}
}
