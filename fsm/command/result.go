package command

import "fmt"

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
	var e encoder
	e.b = dst
	e.byte(1) // result encoding version
	e.uvarint(r.Index)
	e.byte(byte(r.Code))
	e.str(r.Message)
	e.bool(r.Duplicate)
	e.uvarint(uint64(len(r.Nums)))
	for _, n := range r.Nums {
		e.varint(n)
	}
	e.uvarint(r.Producer)
	e.uvarint(r.Epoch)
	e.uvarint(r.Late)
	e.uvarint(r.LastSeq)
	return e.b
}

// DecodeResult decodes a result written by EncodeResult.
func DecodeResult(b []byte) (*Result, error) {
	d := decoder{b: b}
	if v := d.byte(); v != 1 && d.err == nil {
		return nil, fmt.Errorf("%w: result version %d", ErrVersion, v)
	}
	r := &Result{}
	r.Index = d.uvarint()
	r.Code = Code(d.byte())
	r.Message = d.str()
	r.Duplicate = d.bool()
	n := d.count(1)
	if n > 0 {
		r.Nums = make([]int64, n)
		for i := range r.Nums {
			r.Nums[i] = d.varint()
		}
	}
	r.Producer = d.uvarint()
	r.Epoch = d.uvarint()
	r.Late = d.uvarint()
	r.LastSeq = d.uvarint()
	if err := d.finish(); err != nil {
		return nil, err
	}
	return r, nil
}
