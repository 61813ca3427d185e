package api

import (
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-db/cairn/fsm/command"
)

// Limits bound what a request may carry. Requests beyond them are rejected
// with InvalidArgument before anything reaches the log.
type Limits struct {
	MaxKeyBytes     int // default 4 KiB
	MaxValueBytes   int // default 1 MiB
	MaxBatchOps     int // default 10,000
	MaxRequestBytes int // default 3 MiB (gRPC's receive limit is 4 MiB)
	MaxScanLimit    int // default 10,000; also the page size when none is asked
	// MaxScanBytes ends a scan page once its keys and values add up to
	// this (default 2 MiB; a page always holds at least one key): 10,000
	// values of 1 KiB would exceed gRPC's default 4 MiB receive limit.
	MaxScanBytes int
	MaxOffsets   int // default 1,024 sources per commit
}

// DefaultLimits returns the defaults.
func DefaultLimits() Limits {
	return Limits{MaxKeyBytes: 4 << 10, MaxValueBytes: 1 << 20, MaxBatchOps: 10000, MaxRequestBytes: 3 << 20, MaxScanLimit: 10000, MaxScanBytes: 2 << 20, MaxOffsets: 1024}
}

// Validate reports unusable limits.
func (l Limits) Validate() error {
	if l.MaxKeyBytes < 1 || l.MaxValueBytes < 1 || l.MaxBatchOps < 1 || l.MaxRequestBytes < 1 || l.MaxScanLimit < 1 || l.MaxScanBytes < 1 || l.MaxOffsets < 1 {
		return fmt.Errorf("api: every limit must be >= 1: %+v", l)
	}
	return nil
}

func invalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}

func (l Limits) checkKey(k []byte) error {
	if len(k) == 0 {
		return invalid("key is empty")
	}
	if len(k) > l.MaxKeyBytes {
		return invalid("key of %d bytes exceeds the limit of %d bytes", len(k), l.MaxKeyBytes)
	}
	return nil
}

func (l Limits) checkValue(v []byte) error {
	if len(v) > l.MaxValueBytes {
		return invalid("value of %d bytes exceeds the limit of %d bytes", len(v), l.MaxValueBytes)
	}
	return nil
}

// checkBatch validates a batch before it is encoded into the log.
func (l Limits) checkBatch(b *command.Batch) error {
	if len(b.Ops) == 0 && len(b.Offsets) == 0 && len(b.Watermarks) == 0 {
		return invalid("batch has no operations")
	}
	if len(b.Ops) > l.MaxBatchOps {
		return invalid("batch of %d operations exceeds the limit of %d", len(b.Ops), l.MaxBatchOps)
	}
	if len(b.Offsets) > l.MaxOffsets || len(b.Watermarks) > l.MaxOffsets {
		return invalid("commit carries more than %d offsets or watermarks", l.MaxOffsets)
	}
	total := 0
	for i := range b.Ops {
		op := &b.Ops[i]
		if err := l.checkKey(op.Key); err != nil {
			return invalid("op %d: %s", i, status.Convert(err).Message())
		}
		if err := l.checkValue(op.Value); err != nil {
			return invalid("op %d: %s", i, status.Convert(err).Message())
		}
		if err := l.checkValue(op.Expect); err != nil {
			return invalid("op %d: expected %s", i, status.Convert(err).Message())
		}
		switch op.Kind {
		case command.OpPut, command.OpDelete, command.OpAdd, command.OpMin, command.OpMax, command.OpCAS:
		case command.OpWindowAdd:
			if op.Table == "" {
				return invalid("op %d: window add needs a table", i)
			}
		default:
			return invalid("op %d: unknown or unspecified kind", i)
		}
		total += len(op.Key) + len(op.Value) + len(op.Expect) + len(op.Table) + 24
	}
	seen := map[string]bool{}
	for _, o := range b.Offsets {
		if o.Source == "" {
			return invalid("offset with an empty source")
		}
		if seen[o.Source] {
			return invalid("offset source %q listed twice", o.Source)
		}
		seen[o.Source] = true
		total += len(o.Source) + 10
	}
	seen = map[string]bool{}
	for _, w := range b.Watermarks {
		if w.Source == "" {
			return invalid("watermark with an empty source")
		}
		if seen[w.Source] {
			return invalid("watermark source %q listed twice", w.Source)
		}
		seen[w.Source] = true
	}
	if total > l.MaxRequestBytes {
		return invalid("request of about %d bytes exceeds the limit of %d bytes", total, l.MaxRequestBytes)
	}
	return nil
}
