package api

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/fsm/command"
	"github.com/cairn-db/cairn/raftnode"
)

// Error reasons carried in an ErrorInfo detail so that clients can tell
// failures apart without parsing messages.
const (
	ReasonFenced          = "FENCED"
	ReasonSequenceGap     = "SEQUENCE_GAP"
	ReasonUnknownProducer = "UNKNOWN_PRODUCER"
	ReasonCASFailed       = "CAS_FAILED"
	ReasonTypeMismatch    = "TYPE_MISMATCH"
	ReasonUnknownOutcome  = "UNKNOWN_OUTCOME"
	ReasonNotLeader       = "NOT_LEADER"
	ReasonNoLeader        = "NO_LEADER"
	ReasonExists          = "EXISTS"
	ReasonNotFound        = "NOT_FOUND"
)

const errorDomain = "cairn"

func statusWithReason(c codes.Code, reason, msg string, meta map[string]string) error {
	st := status.New(c, msg)
	if ds, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: errorDomain, Metadata: meta}); err == nil {
		return ds.Err()
	}
	return st.Err()
}

// ReasonOf returns the ErrorInfo reason of a gRPC error, or "".
func ReasonOf(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return ""
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == errorDomain {
			return info.Reason
		}
	}
	return ""
}

func metaOf(err error) map[string]string {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == errorDomain {
			return info.Metadata
		}
	}
	return nil
}

// resultError maps a non-OK FSM result to a gRPC error.
func resultError(r *command.Result) error {
	switch r.Code {
	case command.CodeOK:
		return nil
	case command.CodeFenced:
		return statusWithReason(codes.FailedPrecondition, ReasonFenced, "fenced by a newer instance: "+r.Message, nil)
	case command.CodeSequenceGap:
		return statusWithReason(codes.FailedPrecondition, ReasonSequenceGap, r.Message, nil)
	case command.CodeUnknownProducer:
		return statusWithReason(codes.FailedPrecondition, ReasonUnknownProducer, r.Message, nil)
	case command.CodeCASFailed:
		return statusWithReason(codes.FailedPrecondition, ReasonCASFailed, "compare-and-set failed, nothing applied: "+r.Message, nil)
	case command.CodeTypeMismatch:
		return statusWithReason(codes.FailedPrecondition, ReasonTypeMismatch, "nothing applied: "+r.Message, nil)
	case command.CodeInvalid:
		return status.Error(codes.InvalidArgument, r.Message)
	case command.CodeExists:
		return statusWithReason(codes.AlreadyExists, ReasonExists, r.Message, nil)
	case command.CodeNotFound:
		return statusWithReason(codes.NotFound, ReasonNotFound, r.Message, nil)
	case command.CodeStopped:
		// Committed, result unknown here: an unknown outcome, not a failure.
		return statusWithReason(codes.Unavailable, ReasonUnknownOutcome, "outcome unknown: "+r.Message, nil)
	}
	return status.Errorf(codes.Internal, "command not applied: %s (%s)", r.Message, r.Code)
}

// toStatus maps raftnode/fsm/context errors to gRPC errors. Anything whose
// outcome is unknown says so: it is never reported as a plain failure.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return err
	}
	var nl *raftnode.NotLeaderError
	switch {
	case errors.As(err, &nl):
		return statusWithReason(codes.Unavailable, ReasonNotLeader, fmt.Sprintf("not the leader; leader is %s", nl.LeaderID), map[string]string{"leader_id": nl.LeaderID})
	case errors.Is(err, raftnode.ErrNoLeader):
		return statusWithReason(codes.Unavailable, ReasonNoLeader, "no leader (election in progress or no quorum); retry", nil)
	case errors.Is(err, raftnode.ErrNotReady):
		return statusWithReason(codes.Unavailable, ReasonNoLeader, "leader is catching up; retry", nil)
	case errors.Is(err, raftnode.ErrNotSubmitted):
		return status.Errorf(codes.Unavailable, "not submitted, safe to retry: %v", err)
	case errors.Is(err, raftnode.ErrClosed):
		return status.Error(codes.Unavailable, "node is shutting down")
	case errors.Is(err, raftnode.ErrNoMember):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, raftnode.ErrMemberConflict):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, raftnode.ErrBadAddress):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, raftnode.ErrUnknownOutcome):
		return statusWithReason(codes.DeadlineExceeded, ReasonUnknownOutcome, "outcome unknown, the write may or may not have been applied: "+err.Error(), nil)
	case errors.Is(err, context.DeadlineExceeded):
		return statusWithReason(codes.DeadlineExceeded, ReasonUnknownOutcome, "deadline exceeded; a write may or may not have been applied", nil)
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "canceled")
	case errors.Is(err, fsm.ErrNotFound):
		return status.Error(codes.NotFound, "not found")
	case errors.Is(err, fsm.ErrClosed):
		return status.Error(codes.Unavailable, "state machine closed")
	}
	return status.Errorf(codes.Internal, "%v", err)
}
