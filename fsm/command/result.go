package command

import (
	"fmt"

	"github.com/cairn-db/cairn/internal/wire"
)

// Code is the deterministic outcome of applying one command. Every replica
// computes the same Code for the same entry.
type Code byte

// Result codes. Persisted inside dedup records: never renumber.
const (
	CodeOK              Code = 0
	CodeFenced          Code = 1 // producer epoch is older than the current one
	CodeSequenceGap     Code = 2 // producer sequence number skips ahead or is reordered
	CodeUnknownProducer Code = 3 // producer id unknown or its session expired
	CodeCASFailed       Code = 4 // a compare-and-set precondition did not hold; nothing applied
	CodeTypeMismatch    Code = 5 // numeric op on a non-numeric value; nothing applied
	CodeInvalid         Code = 6 // a well-formed command that cannot apply (unknown table, bad spec)
	CodeCorrupt         Code = 7 // the entry could not be decoded; state unchanged
	CodeExists          Code = 8 // create of something that exists
	CodeNotFound        Code = 9 // drop of something that does not exist
	// CodeStopped: this replica's state machine stopped on a storage
	// failure before applying the entry. Unlike every other code it is not
	// the entry's deterministic outcome: the entry is committed, the other
	// replicas apply it, and this one does after a restart. Never stored.
	CodeStopped Code = 10
)

func (c Code) String() string {
	switch c {
	case CodeOK:
		return "ok"
	case CodeFenced:
		return "fenced"
	case CodeSequenceGap:
		return "sequence-gap"
	case CodeUnknownProducer:
		return "unknown-producer"
	case CodeCASFailed:
		return "cas-failed"
	case CodeTypeMismatch:
		return "type-mismatch"
	case CodeInvalid:
		return "invalid"
	case CodeCorrupt:
		return "corrupt"
	case CodeExists:
		return "exists"
	case CodeNotFound:
		return "not-found"
	case CodeStopped:
		return "stopped"
	}
	return fmt.Sprintf("code(%d)", byte(c))
}

// Result is what the state machine returns for one entry.
type Result struct {
	Index     uint64  // Raft index at which the command was applied (for a duplicate: the original's)
	Code      Code    // outcome
	Message   string  // human-readable detail for a non-OK code
	Duplicate bool    // a retried producer write: not applied again, original result returned
	Nums      []int64 // per op: the new value for add/min/max, 0 otherwise
	Producer  uint64  // RegisterProducer: the producer id
	Epoch     uint64  // RegisterProducer: the new epoch
	Late      uint64  // window events rejected as late (not applied)
	LastSeq   uint64  // the producer's last applied sequence number after this entry
}

// OK reports whether the command took effect (or had taken effect, for a duplicate).
func (r *Result) OK() bool { return r.Code == CodeOK }

// EncodeResult appends the canonical encoding of r to dst.
func EncodeResult(dst []byte, r *Result) []byte {
	var e wire.Encoder
	e.B = dst
	e.Byte(1) // result encoding version
	e.Uvarint(r.Index)
	e.Byte(byte(r.Code))
	e.Str(r.Message)
	e.Bool(r.Duplicate)
	e.Uvarint(uint64(len(r.Nums)))
	for _, n := range r.Nums {
		e.Varint(n)
	}
	e.Uvarint(r.Producer)
	e.Uvarint(r.Epoch)
	e.Uvarint(r.Late)
	e.Uvarint(r.LastSeq)
	return e.B
}

// DecodeResult decodes a result written by EncodeResult.
func DecodeResult(b []byte) (*Result, error) {
	d := wire.Decoder{B: b}
	if v := d.Byte(); v != 1 && d.Err == nil {
		return nil, fmt.Errorf("%w: result version %d", ErrVersion, v)
	}
	r := &Result{}
	r.Index = d.Uvarint()
	r.Code = Code(d.Byte())
	r.Message = d.Str()
	r.Duplicate = d.Bool()
	n := d.Count(1)
	if n > 0 {
		r.Nums = make([]int64, n)
		for i := range r.Nums {
			r.Nums[i] = d.Varint()
		}
	}
	r.Producer = d.Uvarint()
	r.Epoch = d.Uvarint()
	r.Late = d.Uvarint()
	r.LastSeq = d.Uvarint()
	if err := d.Finish(); err != nil {
		return nil, err
	}
	return r, nil
}
