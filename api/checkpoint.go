package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/cairn-db/cairn/api/cairnpb"
	"github.com/cairn-db/cairn/raftnode"
	"github.com/cairn-db/cairn/snapshot"
)

// The Checkpoint service: each node's catalog of checkpoints (its raft
// snapshots), served from any node. A request names the node whose catalog
// it addresses (empty: the leader); the node that receives it forwards it
// there when that is another node.

// Checkpoints is what the Checkpoint service needs of this node: its
// snapshot store (*snapshot.Store implements all but the last two methods),
// a way to take a raft snapshot now (raftnode.Node.Snapshot) and the
// node's recovery estimate. internal/node combines them.
type Checkpoints interface {
	Checkpoints() ([]snapshot.Info, error)
	Show(id string) (*snapshot.Detail, error)
	Verify(ctx context.Context, id string) (*snapshot.VerifyReport, error)
	Pin(id string) error
	Unpin(id string) error
	Quarantined() ([]snapshot.QuarantinedFile, error)
	Export(ctx context.Context, id, bucketURL string, progress func(snapshot.ExportProgress)) (snapshot.ExportStats, error)
	// Snapshot takes a raft snapshot now and returns its id; it fails with
	// raft.ErrNothingNewToSnapshot when nothing was applied since the last.
	Snapshot() (string, error)
	Recovery() Recovery
}

// Recovery is a node's estimate of what a restart would replay.
type Recovery struct {
	AppliedIndex    uint64
	CheckpointIndex uint64 // of the newest complete checkpoint
	EntriesSince    uint64
	SinceCheckpoint time.Duration
	EstimatedReplay time.Duration
	ApplyRate       float64       // entries per second of apply time
	Target          time.Duration // 0: no recovery target
}

// ProducersExtra is the key of the committed producer state in a
// checkpoint manifest's Extra; its value is a JSON []CheckpointProducer.
const ProducersExtra = "producers"

// CheckpointProducer is a producer's committed state at a checkpoint's
// index, as recorded in the manifest (JSON) and shown by the catalog.
type CheckpointProducer struct {
	Name    string         `json:"name"`
	Epoch   uint64         `json:"epoch"`
	LastSeq uint64         `json:"last_seq"`
	Offsets []SourceOffset `json:"offsets"`
}

// SourceOffset is a producer's committed offset for one source.
type SourceOffset struct {
	Source string `json:"source"`
	Offset int64  `json:"offset"`
}

// SetCheckpoints enables the Checkpoint service on this node (without it
// the service answers Unimplemented for this node's catalog).
func (s *Server) SetCheckpoints(c Checkpoints) {
	s.ckptMu.Lock()
	s.ckpt = c
	s.ckptMu.Unlock()
}

func (s *Server) checkpoints() Checkpoints {
	s.ckptMu.Lock()
	defer s.ckptMu.Unlock()
	return s.ckpt
}

// checkpointService implements pb.CheckpointServer (a separate type: its
// method names would be ambiguous on Server).
type checkpointService struct {
	pb.UnimplementedCheckpointServer
	s *Server
}

// target resolves the node a checkpoint request addresses. It returns
// the local catalog, or a connection to the node to forward to and the
// request's node field set to that node's id (so that the receiver does
// not resolve "the leader" again).
func (c *checkpointService) target(ctx context.Context, node string) (Checkpoints, *grpc.ClientConn, string, error) {
	node, err := c.resolveNode(node)
	if err != nil {
		return nil, nil, "", err
	}
	ck, conn, err := c.nodeConn(ctx, node, false)
	return ck, conn, node, err
}

// resolveNode turns a role ("", NodeLeader, NodeFollower) into a node id.
func (c *checkpointService) resolveNode(node string) (string, error) {
	switch node {
	case "", NodeLeader:
		id, _ := c.s.raft.Leader()
		if id == "" {
			return "", toStatus(raftnode.ErrNoLeader)
		}
		return id, nil
	case NodeFollower:
		return c.follower()
	}
	return node, nil
}

// nodeConn returns the local catalog when node is this node, else a
// connection to node. A call that was forwarded here is forwarded again
// only when again is set (see Create); otherwise it fails as Unavailable,
// so that no request travels in circles.
func (c *checkpointService) nodeConn(ctx context.Context, node string, again bool) (Checkpoints, *grpc.ClientConn, error) {
	s := c.s
	if node == s.cfg.NodeID {
		ck := s.checkpoints()
		if ck == nil {
			return nil, nil, status.Errorf(codes.Unimplemented, "node %s does not serve checkpoints", node)
		}
		return ck, nil, nil
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get(mdForwarded)) > 0 && !again {
		return nil, nil, status.Errorf(codes.Unavailable, "checkpoint request for %s forwarded to %s; retry", node, s.cfg.NodeID)
	}
	addrs, err := s.state.NodeAddrs()
	if err != nil {
		return nil, nil, toStatus(err)
	}
	addr := addrs[node]
	if addr == "" {
		if members, err := s.raft.Members(); err == nil {
			for _, m := range members {
				if m.ID == node {
					return nil, nil, status.Errorf(codes.Unavailable, "node %s has not announced its client address yet; retry", node)
				}
			}
		}
		return nil, nil, statusWithReason(codes.NotFound, ReasonNotFound, fmt.Sprintf("node %s is not a member", node), nil)
	}
	conn, err := s.peerConn(addr)
	if err != nil {
		return nil, nil, status.Errorf(codes.Unavailable, "node %s at %s: %v", node, addr, err)
	}
	return nil, conn, nil
}

// Role names a checkpoint request may give instead of a node id.
const (
	// NodeLeader is the current leader (as is "").
	NodeLeader = "leader"
	// NodeFollower is a voting follower: the first by id, so that
	// repeated requests (create, then export "latest") reach the same node
	// while the leader stays. A checkpoint
	// taken there keeps its work off the leader, which every write waits
	// for (docs/benchmarks-checkpoints.md).
	NodeFollower = "follower"
)

// follower resolves NodeFollower.
func (c *checkpointService) follower() (string, error) {
	s := c.s
	leader, _ := s.raft.Leader()
	if leader == "" {
		return "", toStatus(raftnode.ErrNoLeader)
	}
	members, err := s.raft.Members()
	if err != nil {
		return "", toStatus(err)
	}
	var ids []string
	for _, m := range members {
		if m.Voter && m.ID != leader {
			ids = append(ids, m.ID)
		}
	}
	if len(ids) == 0 {
		return "", status.Errorf(codes.FailedPrecondition,
			"no voting follower (leader %s, %d members): name a node, or the leader", leader, len(members))
	}
	slices.Sort(ids)
	return ids[0], nil
}

// ckptStatus maps snapshot errors to gRPC errors.
func ckptStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, snapshot.ErrNotFound):
		return statusWithReason(codes.NotFound, ReasonNotFound, err.Error(), nil)
	case errors.Is(err, snapshot.ErrIncomplete), errors.Is(err, snapshot.ErrNotManifest):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, snapshot.ErrCorrupt):
		return status.Error(codes.DataLoss, err.Error())
	case errors.Is(err, snapshot.ErrExists):
		return statusWithReason(codes.AlreadyExists, ReasonExists, err.Error(), nil)
	case errors.Is(err, snapshot.ErrBadURL):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, raft.ErrRaftShutdown):
		return status.Error(codes.Unavailable, "node is shutting down")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return toStatus(err)
	}
	return status.Errorf(codes.Internal, "%v", err)
}

// resolve maps a user-given id (the node's snapshot id, a checkpoint id
// from the creating node, or "latest") to this node's snapshot id.
func resolve(ck Checkpoints, id string) (string, error) {
	if id == "" {
		return "", status.Error(codes.InvalidArgument, "a checkpoint id is required")
	}
	if id != "latest" {
		if _, err := ck.Show(id); err == nil {
			return id, nil
		} else if !errors.Is(err, snapshot.ErrNotFound) {
			return "", ckptStatus(err)
		}
	}
	infos, err := ck.Checkpoints()
	if err != nil {
		return "", ckptStatus(err)
	}
	for _, in := range infos {
		if id == "latest" && !in.Pending || in.CheckpointID == id {
			return in.ID, nil
		}
	}
	return "", ckptStatus(fmt.Errorf("%w: %s", snapshot.ErrNotFound, id))
}

func infoToPB(d *snapshot.Detail) *pb.CheckpointInfo {
	in := d.Info
	out := &pb.CheckpointInfo{Id: in.ID, CheckpointId: in.CheckpointID, Index: in.Index, Term: in.Term,
		DurationUs: in.Duration.Microseconds(), StateBytes: in.StateBytes, Files: int32(in.Files),
		NewFiles: int32(in.NewFiles), NewBytes: in.NewBytes, SharedFiles: int32(in.SharedFiles), SharedBytes: in.SharedBytes,
		SourceNode: in.Source.NodeID, SourceAddress: in.Source.Addr, Pinned: in.Pinned, Pending: in.Pending,
		Missing: int32(in.Missing), Verification: verifyToPB(&in.Verified), Manifest: d.Manifest != nil}
	if !in.Created.IsZero() {
		out.CreatedUnixMs = in.Created.UnixMilli()
	}
	if m := d.Manifest; m != nil {
		out.Previous = m.Previous
		if m.RebuiltFrom != nil {
			out.RebuiltFrom = m.RebuiltFrom.NodeID
		}
		if si, _ := m.State(); si != m.Index {
			out.StateIndex = si
		}
		if raw, ok := m.Extra[ProducersExtra]; ok {
			var ps []CheckpointProducer
			if err := json.Unmarshal(raw, &ps); err == nil {
				for _, p := range ps {
					q := &pb.ProducerState{Name: p.Name, Epoch: p.Epoch, LastSeq: p.LastSeq}
					for _, o := range p.Offsets {
						q.Offsets = append(q.Offsets, &pb.ProducerOffset{Source: o.Source, Offset: o.Offset})
					}
					out.Producers = append(out.Producers, q)
				}
			}
		}
	}
	return out
}

func filesToPB(fs []snapshot.File) []*pb.CheckpointFile {
	out := make([]*pb.CheckpointFile, len(fs))
	for i, f := range fs {
		out[i] = &pb.CheckpointFile{Name: f.Name, Size: f.Size, Checksum: f.Checksum}
	}
	return out
}

func verifyToPB(r *snapshot.VerifyReport) *pb.Verification {
	v := &pb.Verification{Status: string(r.Status), FilesChecked: int64(r.FilesChecked), BytesChecked: r.BytesChecked,
		Missing: filesToPB(r.Missing), Corrupt: filesToPB(r.Corrupt), Keys: r.Keys, Problem: r.Problem}
	if v.Status == "" {
		v.Status = string(snapshot.VerifyUnverified)
	}
	if !r.At.IsZero() {
		v.AtUnixMs = r.At.UnixMilli()
	}
	return v
}

func recoveryToPB(r Recovery) *pb.RecoveryEstimate {
	return &pb.RecoveryEstimate{AppliedIndex: r.AppliedIndex, CheckpointIndex: r.CheckpointIndex, EntriesSince: r.EntriesSince,
		SecondsSince: r.SinceCheckpoint.Seconds(), EstimatedReplaySeconds: r.EstimatedReplay.Seconds(), ApplyRate: r.ApplyRate,
		TargetSeconds: r.Target.Seconds()}
}

func (c *checkpointService) show(ck Checkpoints, id string) (*snapshot.Detail, error) {
	d, err := ck.Show(id)
	return d, ckptStatus(err)
}

// List implements Checkpoint.List.
func (c *checkpointService) List(ctx context.Context, req *pb.ListCheckpointsRequest) (*pb.ListCheckpointsResponse, error) {
	ck, conn, node, err := c.target(ctx, req.GetNode())
	if err != nil {
		return nil, err
	}
	if conn != nil {
		return pb.NewCheckpointClient(conn).List(c.s.forwardCtx(ctx, node), &pb.ListCheckpointsRequest{Node: node})
	}
	infos, err := ck.Checkpoints()
	if err != nil {
		return nil, ckptStatus(err)
	}
	resp := &pb.ListCheckpointsResponse{Node: node, Recovery: recoveryToPB(ck.Recovery())}
	for _, in := range infos {
		d, err := ck.Show(in.ID)
		if errors.Is(err, snapshot.ErrNotFound) {
			continue // removed by retention since the listing
		}
		if err != nil {
			return nil, ckptStatus(err)
		}
		resp.Checkpoints = append(resp.Checkpoints, infoToPB(d))
	}
	q, err := ck.Quarantined()
	if err != nil {
		return nil, ckptStatus(err)
	}
	for _, f := range q {
		resp.Quarantined = append(resp.Quarantined, &pb.QuarantinedFile{Name: f.Name, Size: f.Size, MovedUnixMs: f.Moved.UnixMilli()})
	}
	return resp, nil
}

// Show implements Checkpoint.Show.
func (c *checkpointService) Show(ctx context.Context, req *pb.ShowCheckpointRequest) (*pb.ShowCheckpointResponse, error) {
	ck, conn, node, err := c.target(ctx, req.GetNode())
	if err != nil {
		return nil, err
	}
	if conn != nil {
		return pb.NewCheckpointClient(conn).Show(c.s.forwardCtx(ctx, node), &pb.ShowCheckpointRequest{Node: node, Id: req.GetId()})
	}
	id, err := resolve(ck, req.GetId())
	if err != nil {
		return nil, err
	}
	d, err := c.show(ck, id)
	if err != nil {
		return nil, err
	}
	resp := &pb.ShowCheckpointResponse{Node: node, Checkpoint: infoToPB(d), ConfigurationIndex: d.Meta.ConfigurationIndex}
	for _, srv := range d.Meta.Configuration.Servers {
		resp.Configuration = append(resp.Configuration, &pb.RaftServer{Id: string(srv.ID), Address: string(srv.Address), Suffrage: srv.Suffrage.String()})
	}
	if d.Manifest != nil {
		resp.Files, resp.PebbleFormat = filesToPB(d.Manifest.Files), d.Manifest.PebbleFormat
	}
	return resp, nil
}

// Create implements Checkpoint.Create: a raft snapshot of the addressed
// node (snapshots are per node; the leader's are the ones followers
// install). When nothing was applied since the newest checkpoint, that
// one is returned with created unset.
//
// Whichever node takes it, the checkpoint holds every write acknowledged
// before the call: the leader names the index (a read index: its commit
// index, its leadership confirmed by a heartbeat round) and the node
// snapshots once it has applied that far. A follower's applied index alone
// may lag what the leader has acknowledged, and even a leader's may lag
// what was acknowledged by a leader that has since been deposed. So a
// request that reaches a follower without an index goes to the leader
// first, which then forwards it, with the index, to the node that takes
// the checkpoint: at most two hops (the second hop carries an index, and a
// node is never asked to forward such a request again).
func (c *checkpointService) Create(ctx context.Context, req *pb.CreateCheckpointRequest) (*pb.CreateCheckpointResponse, error) {
	node, err := c.resolveNode(req.GetNode())
	if err != nil {
		return nil, err
	}
	min, named := req.GetMinIndex(), false
	if min == 0 {
		min, err = c.s.raft.ReadIndex(ctx)
		if errors.Is(err, raftnode.ErrNotLeader) {
			return forward(c.s, ctx, err, &pb.CreateCheckpointRequest{Node: node}, pb.NewCheckpointClient, pb.CheckpointClient.Create)
		}
		if err != nil {
			return nil, toStatus(err)
		}
		named = true
	}
	ck, conn, err := c.nodeConn(ctx, node, named)
	if err != nil {
		return nil, err
	}
	if conn != nil {
		return pb.NewCheckpointClient(conn).Create(c.s.forwardCtx(ctx, node), &pb.CreateCheckpointRequest{Node: node, MinIndex: min})
	}
	if err := c.s.raft.WaitApplied(ctx, min); err != nil {
		return nil, toStatus(err)
	}
	created := true
	id, err := ck.Snapshot()
	if errors.Is(err, raft.ErrNothingNewToSnapshot) {
		created = false
		id, err = resolve(ck, "latest")
	}
	if err != nil {
		return nil, ckptStatus(err)
	}
	d, err := c.show(ck, id)
	if err != nil {
		return nil, err
	}
	return &pb.CreateCheckpointResponse{Node: node, Checkpoint: infoToPB(d), Created: created}, nil
}

// Verify implements Checkpoint.Verify.
func (c *checkpointService) Verify(ctx context.Context, req *pb.VerifyCheckpointRequest) (*pb.VerifyCheckpointResponse, error) {
	ck, conn, node, err := c.target(ctx, req.GetNode())
	if err != nil {
		return nil, err
	}
	if conn != nil {
		return pb.NewCheckpointClient(conn).Verify(c.s.forwardCtx(ctx, node), &pb.VerifyCheckpointRequest{Node: node, Id: req.GetId()})
	}
	id, err := resolve(ck, req.GetId())
	if err != nil {
		return nil, err
	}
	r, err := ck.Verify(ctx, id)
	if err != nil {
		return nil, ckptStatus(err)
	}
	return &pb.VerifyCheckpointResponse{Node: node, Id: id, Verification: verifyToPB(r)}, nil
}

func (c *checkpointService) pin(ctx context.Context, req *pb.PinCheckpointRequest, unpin bool) (*pb.PinCheckpointResponse, error) {
	ck, conn, node, err := c.target(ctx, req.GetNode())
	if err != nil {
		return nil, err
	}
	if conn != nil {
		fwd := &pb.PinCheckpointRequest{Node: node, Id: req.GetId()}
		if unpin {
			return pb.NewCheckpointClient(conn).Unpin(c.s.forwardCtx(ctx, node), fwd)
		}
		return pb.NewCheckpointClient(conn).Pin(c.s.forwardCtx(ctx, node), fwd)
	}
	id, err := resolve(ck, req.GetId())
	if err != nil {
		return nil, err
	}
	if unpin {
		err = ck.Unpin(id)
	} else {
		err = ck.Pin(id)
	}
	if err != nil {
		return nil, ckptStatus(err)
	}
	resp := &pb.PinCheckpointResponse{Node: node}
	if d, err := ck.Show(id); err == nil { // unpinned: retention may have removed it at once
		resp.Checkpoint = infoToPB(d)
	}
	return resp, nil
}

// Pin implements Checkpoint.Pin: the checkpoint is kept until Unpin,
// whatever the retention.
func (c *checkpointService) Pin(ctx context.Context, req *pb.PinCheckpointRequest) (*pb.PinCheckpointResponse, error) {
	return c.pin(ctx, req, false)
}

// Unpin implements Checkpoint.Unpin; retention runs at once.
func (c *checkpointService) Unpin(ctx context.Context, req *pb.PinCheckpointRequest) (*pb.PinCheckpointResponse, error) {
	return c.pin(ctx, req, true)
}

// exportProgressEvery bounds how often progress is streamed (the last
// message is always sent).
const exportProgressEvery = 200 * time.Millisecond

// Export implements Checkpoint.Export: the addressed node uploads the
// checkpoint to the bucket, streaming progress.
func (c *checkpointService) Export(req *pb.ExportCheckpointRequest, stream pb.Checkpoint_ExportServer) error {
	ctx := stream.Context()
	ck, conn, node, err := c.target(ctx, req.GetNode())
	if err != nil {
		return err
	}
	if req.GetUrl() == "" {
		return status.Error(codes.InvalidArgument, "a bucket URL is required")
	}
	if conn != nil {
		fwd, err := pb.NewCheckpointClient(conn).Export(c.s.forwardCtx(ctx, node),
			&pb.ExportCheckpointRequest{Node: node, Id: req.GetId(), Url: req.GetUrl()})
		if err != nil {
			return err
		}
		for {
			p, err := fwd.Recv()
			if errors.Is(err, io.EOF) {
				return status.Errorf(codes.Unavailable, "export on %s: stream ended before completion", node)
			}
			if err != nil {
				return err
			}
			if err := stream.Send(p); err != nil {
				return err
			}
			if p.GetDone() {
				return nil
			}
		}
	}
	id, err := resolve(ck, req.GetId())
	if err != nil {
		return err
	}
	d, err := c.show(ck, id)
	if err != nil {
		return err
	}
	base := &pb.ExportProgress{Node: node, Id: id, CheckpointId: d.CheckpointID}
	var (
		mu      sync.Mutex
		last    time.Time
		sendErr error
	)
	toPB := func(p snapshot.ExportProgress) *pb.ExportProgress {
		return &pb.ExportProgress{Node: base.Node, Id: base.Id, CheckpointId: base.CheckpointId,
			FilesDone: int64(p.FilesDone), FilesTotal: int64(p.FilesTotal), FilesUploaded: int64(p.FilesUploaded),
			FilesSkipped: int64(p.FilesSkipped), BytesUploaded: p.BytesUploaded, BytesSkipped: p.BytesSkipped,
			BytesTotal: p.BytesTotal, ElapsedUs: p.Elapsed.Microseconds(), Rate: p.Rate}
	}
	var final snapshot.ExportProgress
	st, err := ck.Export(ctx, id, req.GetUrl(), func(p snapshot.ExportProgress) {
		mu.Lock()
		defer mu.Unlock()
		final = p
		if sendErr != nil || time.Since(last) < exportProgressEvery {
			return
		}
		last = time.Now()
		sendErr = stream.Send(toPB(p))
	})
	if err != nil {
		return ckptStatus(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if sendErr != nil {
		return sendErr
	}
	done := toPB(final)
	done.Done = true
	done.FilesUploaded, done.FilesSkipped = int64(st.FilesUploaded), int64(st.FilesSkipped)
	done.BytesUploaded, done.BytesSkipped = st.BytesUploaded, st.BytesSkipped
	done.ElapsedUs = st.Duration.Microseconds()
	if secs := st.Duration.Seconds(); secs > 0 {
		done.Rate = float64(st.BytesUploaded) / secs
	}
	return stream.Send(done)
}
