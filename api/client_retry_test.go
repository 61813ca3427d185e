package api

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-db/cairn/fsm/command"
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

// An entry a replica's stopped state machine could not apply is committed:
// the server says its outcome is unknown, and a client that sent a write
// reports ErrUnknownOutcome, not a failure; no attempt counts as unsent.
func TestStoppedStateMachineIsAnUnknownOutcome(t *testing.T) {
	err := resultError(&command.Result{Index: 7, Code: command.CodeStopped, Message: "committed, but this node's state machine stopped"})
	if status.Code(err) != codes.Unavailable || ReasonOf(err) != ReasonUnknownOutcome {
		t.Fatalf("resultError = %v (%s), want Unavailable with %s", err, ReasonOf(err), ReasonUnknownOutcome)
	}
	if notSent(err) {
		t.Fatalf("notSent(%v): a committed write counted as never sent", err)
	}
	c := &Client{}
	for _, policy := range []retryPolicy{retryUnsent, retrySafe} {
		if got := c.wrap(err, policy, true); !errors.Is(got, ErrUnknownOutcome) {
			t.Errorf("policy %v: wrap = %v, want ErrUnknownOutcome", policy, got)
		}
	}
}

// ClientConfig{Endpoints: ...} works as it reads: zero durations are the
// defaults; negative ones and an inverted backoff are refused by name.
func TestClientConfigZeroMeansDefault(t *testing.T) {
	c, err := NewClient(ClientConfig{Endpoints: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatalf("zero durations: %v", err)
	}
	if d := DefaultClientConfig("x"); c.cfg.AttemptTimeout != d.AttemptTimeout || c.cfg.RetryBudget != d.RetryBudget ||
		c.cfg.BackoffMin != d.BackoffMin || c.cfg.BackoffMax != d.BackoffMax {
		t.Fatalf("defaults not filled in: %+v", c.cfg)
	}
	_ = c.Close()
	for _, bad := range []ClientConfig{
		{Endpoints: []string{"x"}, RetryBudget: -1},
		{Endpoints: []string{"x"}, BackoffMin: time.Second, BackoffMax: time.Millisecond},
		{},
	} {
		if _, err := NewClient(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
