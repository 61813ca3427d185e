package api

import (
	"context"
	"strconv"

	"google.golang.org/grpc"

	pb "github.com/cairn-db/cairn/api/cairnpb"
)

// Value is a typed value read from cairn.
type Value struct {
	Bytes []byte
	Int   int64
	IsInt bool
}

// String renders integers in decimal and bytes as text.
func (v Value) String() string {
	if v.IsInt {
		return itoa(v.Int)
	}
	return string(v.Bytes)
}

func valueFromPB(v *pb.Value) Value {
	if i, ok := v.GetKind().(*pb.Value_Int); ok {
		return Value{Int: i.Int, IsInt: true}
	}
	return Value{Bytes: v.GetBytes()}
}

// ReadOption tunes a read.
type ReadOption func(*pb.Consistency)

// WithConsistency picks linearizable (default), lease or stale.
func WithConsistency(c pb.Consistency) ReadOption { return func(p *pb.Consistency) { *p = c } }

func consistency(opts []ReadOption) pb.Consistency {
	c := pb.Consistency_LINEARIZABLE
	for _, o := range opts {
		o(&c)
	}
	return c
}

// Put writes key=value and returns the Raft index it was applied at. A
// Put whose outcome is unknown returns ErrUnknownOutcome (not retried:
// a blind retry could overwrite a later write).
func (c *Client) Put(ctx context.Context, key, value []byte) (uint64, error) {
	var resp *pb.PutResponse
	err := c.call(ctx, retryUnsent, func(ctx context.Context, cc *grpc.ClientConn, o ...grpc.CallOption) (err error) {
		resp, err = pb.NewKVClient(cc).Put(ctx, &pb.PutRequest{Key: key, Value: value}, o...)
		return err
	})
	return resp.GetIndex(), err
}

// Delete removes key.
func (c *Client) Delete(ctx context.Context, key []byte) (uint64, error) {
	var resp *pb.DeleteResponse
	err := c.call(ctx, retryUnsent, func(ctx context.Context, cc *grpc.ClientConn, o ...grpc.CallOption) (err error) {
		resp, err = pb.NewKVClient(cc).Delete(ctx, &pb.DeleteRequest{Key: key}, o...)
		return err
	})
	return resp.GetIndex(), err
}

// Get reads key; a missing key gives ErrNotFound. The index is the applied
// index the read was served at.
func (c *Client) Get(ctx context.Context, key []byte, opts ...ReadOption) (Value, uint64, error) {
	var resp *pb.GetResponse
	req := &pb.GetRequest{Key: key, Consistency: consistency(opts)}
	err := c.call(ctx, retryRead, func(ctx context.Context, cc *grpc.ClientConn, o ...grpc.CallOption) (err error) {
		resp, err = pb.NewKVClient(cc).Get(ctx, req, o...)
		return err
	})
	if err != nil {
		return Value{}, 0, err
	}
	return valueFromPB(resp.GetValue()), resp.GetIndex(), nil
}

// KeyValue is one scanned entry.
type KeyValue struct {
	Key   []byte
	Value Value
}

// ScanOptions select a range: Prefix, or [Start, End). Limit 0 = server page size.
type ScanOptions struct {
	Prefix, Start, End []byte
	Limit              uint32
	Consistency        pb.Consistency
}

// Scan returns one page of keys in order and the key to continue from
// (nil when done).
func (c *Client) Scan(ctx context.Context, so ScanOptions) ([]KeyValue, []byte, error) {
	var resp *pb.ScanResponse
	req := &pb.ScanRequest{Prefix: so.Prefix, Start: so.Start, End: so.End, Limit: so.Limit, Consistency: so.Consistency}
	err := c.call(ctx, retryRead, func(ctx context.Context, cc *grpc.ClientConn, o ...grpc.CallOption) (err error) {
		resp, err = pb.NewKVClient(cc).Scan(ctx, req, o...)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	out := make([]KeyValue, len(resp.GetKvs()))
	for i, kv := range resp.GetKvs() {
		out[i] = KeyValue{Key: kv.GetKey(), Value: valueFromPB(kv.GetValue())}
	}
	return out, resp.GetNext(), nil
}

// Op constructors for Batch and producer commits.
func PutOp(key, value []byte) *pb.Op { return &pb.Op{Kind: pb.Op_PUT, Key: key, Value: value} }

// DeleteOp deletes key.
func DeleteOp(key []byte) *pb.Op { return &pb.Op{Kind: pb.Op_DELETE, Key: key} }

// AddOp adds n to the integer at key (missing = 0).
func AddOp(key []byte, n int64) *pb.Op { return &pb.Op{Kind: pb.Op_ADD, Key: key, Num: n} }

// MinOp keeps the minimum of the integer at key and n.
func MinOp(key []byte, n int64) *pb.Op { return &pb.Op{Kind: pb.Op_MIN, Key: key, Num: n} }

// MaxOp keeps the maximum of the integer at key and n.
func MaxOp(key []byte, n int64) *pb.Op { return &pb.Op{Kind: pb.Op_MAX, Key: key, Num: n} }

// CASOp sets key to value if it holds expect (expect nil: if it is absent).
func CASOp(key, expect, value []byte) *pb.Op {
	return &pb.Op{Kind: pb.Op_CAS, Key: key, Expect: expect, ExpectAbsent: expect == nil, Value: value}
}

// WindowAddOp adds n at event time t (Unix ms) to key in a windowed table.
func WindowAddOp(table string, key []byte, t, n int64) *pb.Op {
	return &pb.Op{Kind: pb.Op_WINDOW_ADD, Table: table, Key: key, Time: t, Num: n}
}

// Batch applies ops atomically (all or none). A failed compare-and-set
// gives ErrCASFailed. Not retried on an unknown outcome.
func (c *Client) Batch(ctx context.Context, ops ...*pb.Op) (*pb.BatchResponse, error) {
	var resp *pb.BatchResponse
	err := c.call(ctx, retryUnsent, func(ctx context.Context, cc *grpc.ClientConn, o ...grpc.CallOption) (err error) {
		resp, err = pb.NewKVClient(cc).Batch(ctx, &pb.BatchRequest{Ops: ops}, o...)
		return err
	})
	return resp, err
}

// BatchWithID is Batch with a request id recorded in the log entry, so a
// checker can later tell whether an unknown outcome was committed.
func (c *Client) BatchWithID(ctx context.Context, id uint64, ops ...*pb.Op) (*pb.BatchResponse, error) {
	var resp *pb.BatchResponse
	err := c.call(ctx, retryUnsent, func(ctx context.Context, cc *grpc.ClientConn, o ...grpc.CallOption) (err error) {
		resp, err = pb.NewKVClient(cc).Batch(ctx, &pb.BatchRequest{Ops: ops, RequestId: id}, o...)
		return err
	})
	return resp, err
}

// Status returns every member's status as seen through one node.
func (c *Client) Status(ctx context.Context) (*pb.StatusResponse, error) {
	var resp *pb.StatusResponse
	err := c.call(ctx, retryRead, func(ctx context.Context, cc *grpc.ClientConn, o ...grpc.CallOption) (err error) {
		resp, err = pb.NewClusterClient(cc).Status(ctx, &pb.StatusRequest{}, o...)
		return err
	})
	return resp, err
}

// AddNode adds a member (voter unless nonVoter).
func (c *Client) AddNode(ctx context.Context, id, raftAddr, grpcAddr string, nonVoter bool) error {
	return c.call(ctx, retryUnsent, func(ctx context.Context, cc *grpc.ClientConn, o ...grpc.CallOption) error {
		_, err := pb.NewClusterClient(cc).AddNode(ctx, &pb.AddNodeRequest{Id: id, RaftAddress: raftAddr, GrpcAddress: grpcAddr, NonVoter: nonVoter}, o...)
		return err
	})
}

// RemoveNode removes a member.
func (c *Client) RemoveNode(ctx context.Context, id string) error {
	return c.call(ctx, retryUnsent, func(ctx context.Context, cc *grpc.ClientConn, o ...grpc.CallOption) error {
		_, err := pb.NewClusterClient(cc).RemoveNode(ctx, &pb.RemoveNodeRequest{Id: id}, o...)
		return err
	})
}

// TransferLeader moves leadership to id (empty: any up-to-date follower).
func (c *Client) TransferLeader(ctx context.Context, id string) (string, error) {
	var resp *pb.TransferLeaderResponse
	err := c.call(ctx, retryUnsent, func(ctx context.Context, cc *grpc.ClientConn, o ...grpc.CallOption) (err error) {
		resp, err = pb.NewClusterClient(cc).TransferLeader(ctx, &pb.TransferLeaderRequest{Id: id}, o...)
		return err
	})
	return resp.GetLeaderId(), err
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
