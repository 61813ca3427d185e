package api

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Which failures a call that is safe to repeat retries. ResourceExhausted
// is gRPC's message size limit: the same call would exceed it again (the
// client used to retry it until its 30 s budget ran out).
func TestTransient(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{status.Error(codes.Unavailable, "not the leader"), true},
		{status.Error(codes.DeadlineExceeded, "attempt timed out"), true},
		{status.Error(codes.Aborted, "aborted"), true},
		{status.Error(codes.ResourceExhausted, "grpc: received message larger than max (10485856 vs. 4194304)"), false},
		{status.Error(codes.InvalidArgument, "value too large"), false},
		{status.Error(codes.FailedPrecondition, "fenced"), false},
		{status.Error(codes.Canceled, "canceled"), false},
		{context.Canceled, false},
		{errors.New("plain"), false},
	} {
		if got := transient(tc.err); got != tc.want {
			t.Errorf("transient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
