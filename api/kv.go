package api

import (
	"context"

	pb "github.com/cairn-db/cairn/api/cairnpb"
	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/fsm/command"
	"github.com/cairn-db/cairn/internal/faulty"
)

// write validates a batch, submits it, and forwards to the leader when this
// node is a follower. fwd performs the forwarded call.
func (s *Server) write(ctx context.Context, b *command.Batch) (*command.Result, error) {
	if err := s.cfg.Limits.checkBatch(b); err != nil {
		return nil, err
	}
	var res *command.Result
	var err error
	if s.coalesce != nil && mergeable(b) && s.raft.IsLeader() && !faulty.Enabled(faulty.AckBeforeCommit) {
		res, err = s.coalesce.write(ctx, b)
	} else {
		res, err = s.apply(ctx, &command.Command{Type: command.TypeBatch, Batch: b})
	}
	if err != nil {
		return nil, err
	}
	if err := resultError(res); err != nil {
		return nil, err
	}
	return res, nil
}

// Put implements KV.Put.
func (s *Server) Put(ctx context.Context, req *pb.PutRequest) (*pb.PutResponse, error) {
	res, err := s.write(ctx, &command.Batch{RequestID: req.GetRequestId(),
		Ops: []command.Op{{Kind: command.OpPut, Key: req.GetKey(), Value: req.GetValue()}}})
	if isRedirect(err) {
		return forward(s, ctx, err, req, pb.NewKVClient, pb.KVClient.Put)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.PutResponse{Index: res.Index}, nil
}

// Delete implements KV.Delete.
func (s *Server) Delete(ctx context.Context, req *pb.DeleteRequest) (*pb.DeleteResponse, error) {
	res, err := s.write(ctx, &command.Batch{RequestID: req.GetRequestId(),
		Ops: []command.Op{{Kind: command.OpDelete, Key: req.GetKey()}}})
	if isRedirect(err) {
		return forward(s, ctx, err, req, pb.NewKVClient, pb.KVClient.Delete)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.DeleteResponse{Index: res.Index}, nil
}

// Batch implements KV.Batch: an atomic multi-key write.
func (s *Server) Batch(ctx context.Context, req *pb.BatchRequest) (*pb.BatchResponse, error) {
	res, err := s.write(ctx, &command.Batch{RequestID: req.GetRequestId(), Ops: opsFromPB(req.GetOps())})
	if isRedirect(err) {
		return forward(s, ctx, err, req, pb.NewKVClient, pb.KVClient.Batch)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.BatchResponse{Index: res.Index, Nums: res.Nums}, nil
}

// Get implements KV.Get.
func (s *Server) Get(ctx context.Context, req *pb.GetRequest) (*pb.GetResponse, error) {
	if err := s.cfg.Limits.checkKey(req.GetKey()); err != nil {
		return nil, err
	}
	if err := s.readBarrier(ctx, req.GetConsistency()); err != nil {
		if isRedirect(err) {
			return forward(s, ctx, err, req, pb.NewKVClient, pb.KVClient.Get)
		}
		return nil, toStatus(err)
	}
	v, idx, err := s.state.Get(req.GetKey())
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.GetResponse{Value: valueToPB(v), Index: idx}, nil
}

// Scan implements KV.Scan.
func (s *Server) Scan(ctx context.Context, req *pb.ScanRequest) (*pb.ScanResponse, error) {
	limit := int(req.GetLimit())
	if limit == 0 || limit > s.cfg.Limits.MaxScanLimit {
		limit = s.cfg.Limits.MaxScanLimit
	}
	if len(req.GetEnd()) > 0 && string(req.GetEnd()) <= string(req.GetStart()) {
		return nil, invalid("scan end must be after start")
	}
	if err := s.readBarrier(ctx, req.GetConsistency()); err != nil {
		if isRedirect(err) {
			return forward(s, ctx, err, req, pb.NewKVClient, pb.KVClient.Scan)
		}
		return nil, toStatus(err)
	}
	sr := fsm.ScanRequest{Prefix: req.GetPrefix(), Start: req.GetStart(), Limit: limit, MaxBytes: s.cfg.Limits.MaxScanBytes}
	if len(req.GetEnd()) > 0 {
		sr.End = req.GetEnd()
	}
	kvs, next, idx, err := s.state.Scan(sr)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &pb.ScanResponse{Next: next, Index: idx, Kvs: make([]*pb.KeyValue, len(kvs))}
	for i, kv := range kvs {
		out.Kvs[i] = &pb.KeyValue{Key: kv.Key, Value: valueToPB(kv.Value)}
	}
	return out, nil
}
