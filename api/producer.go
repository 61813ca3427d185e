package api

import (
	"context"
	"errors"

	pb "github.com/cairn-db/cairn/api/cairnpb"
	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/fsm/command"
)

// RegisterProducer implements Producer.RegisterProducer: a new epoch that
// fences every older instance of the name, plus its committed offsets.
func (s *Server) RegisterProducer(ctx context.Context, req *pb.RegisterProducerRequest) (*pb.RegisterProducerResponse, error) {
	if req.GetName() == "" {
		return nil, invalid("producer name is empty")
	}
	if len(req.GetName()) > s.cfg.Limits.MaxKeyBytes {
		return nil, invalid("producer name of %d bytes exceeds the limit of %d", len(req.GetName()), s.cfg.Limits.MaxKeyBytes)
	}
	res, err := s.apply(ctx, &command.Command{Type: command.TypeRegisterProducer,
		RegisterProducer: &command.RegisterProducer{RequestID: req.GetRequestId(), Name: req.GetName()}})
	if isRedirect(err) {
		return forward(s, ctx, err, req, pb.NewProducerClient, pb.ProducerClient.RegisterProducer)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	if err := resultError(res); err != nil {
		return nil, err
	}
	out := &pb.RegisterProducerResponse{ProducerId: res.Producer, Epoch: res.Epoch, Index: res.Index}
	// The registration is applied here (we are the leader), so the state
	// read now includes it and every commit before it.
	if info, err := s.state.Producer(req.GetName()); err == nil {
		out.Offsets = offsetsToPB(info.Offsets)
	}
	return out, nil
}

// Commit implements Producer.Commit: ops + offsets + watermarks, once.
func (s *Server) Commit(ctx context.Context, req *pb.CommitRequest) (*pb.CommitResponse, error) {
	if req.GetProducerId() == 0 || req.GetEpoch() == 0 || req.GetSeq() == 0 {
		return nil, invalid("commit needs producer_id, epoch and seq (all >= 1): register the producer first")
	}
	b := &command.Batch{
		RequestID:  req.GetRequestId(),
		Producer:   &command.Producer{ID: req.GetProducerId(), Epoch: req.GetEpoch(), Seq: req.GetSeq()},
		Ops:        opsFromPB(req.GetOps()),
		Offsets:    offsetsFromPB(req.GetOffsets()),
		Watermarks: watermarksFromPB(req.GetWatermarks()),
	}
	res, err := s.write(ctx, b)
	if isRedirect(err) {
		return forward(s, ctx, err, req, pb.NewProducerClient, pb.ProducerClient.Commit)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.CommitResponse{Index: res.Index, Duplicate: res.Duplicate, Nums: res.Nums, Late: res.Late}, nil
}

// GetOffsets implements Producer.GetOffsets.
func (s *Server) GetOffsets(ctx context.Context, req *pb.GetOffsetsRequest) (*pb.GetOffsetsResponse, error) {
	if req.GetName() == "" {
		return nil, invalid("producer name is empty")
	}
	if err := s.readBarrier(ctx, req.GetConsistency()); err != nil {
		if isRedirect(err) {
			return forward(s, ctx, err, req, pb.NewProducerClient, pb.ProducerClient.GetOffsets)
		}
		return nil, toStatus(err)
	}
	info, err := s.state.Producer(req.GetName())
	if errors.Is(err, fsm.ErrNotFound) {
		return nil, statusWithReason(codesNotFound, ReasonNotFound, "no producer named "+req.GetName(), nil)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.GetOffsetsResponse{ProducerId: info.ID, Epoch: info.Epoch, LastSeq: info.LastSeq,
		Offsets: offsetsToPB(info.Offsets), Watermarks: watermarksToPB(info.Watermarks), Expired: info.Expired,
		Index: info.LastIndex}, nil
}
