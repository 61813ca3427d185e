package fsm

import (
	"fmt"

	"github.com/cairn-db/cairn/fsm/command"
	"github.com/cairn-db/cairn/internal/wire"
)

// producerRecord is the replicated state of one producer session: identity,
// fencing epoch, deduplication state (last sequence and its result) and the
// source offsets and watermarks committed with its state.
type producerRecord struct {
	ID         uint64
	Name       string
	Epoch      uint64
	LastSeq    uint64
	LastResult []byte // command.EncodeResult of the write with LastSeq
	LastIndex  uint64 // Raft index of the last write or registration
	LastTimeMs int64  // log-carried time (leader's AppendedAt) of the last activity
	Expired    bool   // dedup state dropped after ProducerIdleTTL of log time
	Offsets    []command.Offset
	Watermarks []command.Watermark
	Tables     []string // windowed tables this producer has written to (sorted)
}

func (r *producerRecord) encode() []byte {
	var e wire.Encoder
	e.Byte(1)
	e.Uvarint(r.ID)
	e.Str(r.Name)
	e.Uvarint(r.Epoch)
	e.Uvarint(r.LastSeq)
	e.Bytes(r.LastResult)
	e.Uvarint(r.LastIndex)
	e.Varint(r.LastTimeMs)
	e.Bool(r.Expired)
	e.Uvarint(uint64(len(r.Offsets)))
	for _, o := range r.Offsets {
		e.Str(o.Source)
		e.Varint(o.Offset)
	}
	e.Uvarint(uint64(len(r.Watermarks)))
	for _, w := range r.Watermarks {
		e.Str(w.Source)
		e.Varint(w.Time)
		e.Bool(w.Idle)
		e.Bool(w.Done)
	}
	e.Uvarint(uint64(len(r.Tables)))
	for _, t := range r.Tables {
		e.Str(t)
	}
	return e.B
}

func decodeProducerRecord(b []byte) (*producerRecord, error) {
	d := wire.Decoder{B: b}
	if v := d.Byte(); v != 1 && d.Err == nil {
		return nil, fmt.Errorf("%w: producer record version %d", ErrCorruptState, v)
	}
	r := &producerRecord{
		ID: d.Uvarint(), Name: d.Str(), Epoch: d.Uvarint(), LastSeq: d.Uvarint(),
	}
	r.LastResult = append([]byte(nil), d.Bytes()...)
	r.LastIndex = d.Uvarint()
	r.LastTimeMs = d.Varint()
	r.Expired = d.Bool()
	if n := d.Count(2); n > 0 {
		r.Offsets = make([]command.Offset, n)
		for i := range r.Offsets {
			r.Offsets[i] = command.Offset{Source: d.Str(), Offset: d.Varint()}
		}
	}
	if n := d.Count(4); n > 0 {
		r.Watermarks = make([]command.Watermark, n)
		for i := range r.Watermarks {
			r.Watermarks[i] = command.Watermark{Source: d.Str(), Time: d.Varint(), Idle: d.Bool(), Done: d.Bool()}
		}
	}
	if n := d.Count(1); n > 0 {
		r.Tables = make([]string, n)
		for i := range r.Tables {
			r.Tables[i] = d.Str()
		}
	}
	if err := d.Finish(); err != nil {
		return nil, fmt.Errorf("%w: producer record: %v", ErrCorruptState, err)
	}
	return r, nil
}

// mergeBySource merges upd into cur; both are sorted by source and so is the
// result (deterministic: no map iteration). combine picks the value kept when
// both hold a source.
func mergeBySource[T any](cur, upd []T, src func(T) string, combine func(old, new T) T) []T {
	out := make([]T, 0, len(cur)+len(upd))
	i, j := 0, 0
	for i < len(cur) || j < len(upd) {
		switch {
		case j == len(upd) || (i < len(cur) && src(cur[i]) < src(upd[j])):
			out = append(out, cur[i])
			i++
		case i == len(cur) || src(upd[j]) < src(cur[i]):
			out = append(out, upd[j])
			j++
		default:
			out = append(out, combine(cur[i], upd[j]))
			i++
			j++
		}
	}
	return out
}

// mergeOffsets sets each committed source's offset.
func mergeOffsets(cur, upd []command.Offset) []command.Offset {
	return mergeBySource(cur, upd, func(o command.Offset) string { return o.Source },
		func(_, n command.Offset) command.Offset { return n })
}

// mergeWatermarks sets each source's watermark; a watermark never moves back.
func mergeWatermarks(cur, upd []command.Watermark) []command.Watermark {
	return mergeBySource(cur, upd, func(w command.Watermark) string { return w.Source },
		func(o, n command.Watermark) command.Watermark {
			if n.Time < o.Time {
				n.Time = o.Time
			}
			return n
		})
}

// ProducerInfo is the public view of a producer session.
type ProducerInfo struct {
	ID         uint64
	Name       string
	Epoch      uint64
	LastSeq    uint64
	LastIndex  uint64
	Expired    bool
	Offsets    []command.Offset
	Watermarks []command.Watermark
}

func (r *producerRecord) info() *ProducerInfo {
	return &ProducerInfo{ID: r.ID, Name: r.Name, Epoch: r.Epoch, LastSeq: r.LastSeq, LastIndex: r.LastIndex,
		Expired: r.Expired, Offsets: r.Offsets, Watermarks: r.Watermarks}
}
