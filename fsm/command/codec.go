package command

import (
	"fmt"

	"github.com/golang/snappy"

	"github.com/cairn-db/cairn/internal/wire"
)

// CompressThreshold: payloads at least this large are snappy-compressed when
// that makes them smaller.
const CompressThreshold = 4096

// Encode returns the envelope bytes for c. It canonicalizes batches first.
func Encode(c *Command) ([]byte, error) {
	var e wire.Encoder
	e.B = make([]byte, 3, 64)
	e.B[0] = Version
	e.B[1] = byte(c.Type)
	switch c.Type {
	case TypeBatch:
		if c.Batch == nil {
			return nil, fmt.Errorf("command: batch command without batch")
		}
		encodeBatch(&e, c.Batch)
	case TypeRegisterProducer:
		if c.RegisterProducer == nil {
			return nil, fmt.Errorf("command: register command without body")
		}
		e.Uvarint(c.RegisterProducer.RequestID)
		e.Str(c.RegisterProducer.Name)
	case TypeSetNodeMeta:
		if c.SetNodeMeta == nil {
			return nil, fmt.Errorf("command: node meta command without body")
		}
		e.Str(c.SetNodeMeta.NodeID)
		e.Str(c.SetNodeMeta.GRPCAddr)
	case TypeCreateTable:
		if c.CreateTable == nil {
			return nil, fmt.Errorf("command: create table command without body")
		}
		e.Str(c.CreateTable.Name)
		e.Bytes(c.CreateTable.Spec)
	case TypeDropTable:
		if c.DropTable == nil {
			return nil, fmt.Errorf("command: drop table command without body")
		}
		e.Str(c.DropTable.Name)
	default:
		return nil, fmt.Errorf("%w: %d", ErrUnknownType, c.Type)
	}
	if payload := e.B[3:]; len(payload) >= CompressThreshold {
		if z := snappy.Encode(nil, payload); len(z) < len(payload) {
			e.B = append(e.B[:3], z...)
			e.B[2] |= FlagSnappy
		}
	}
	return e.B, nil
}

// MustEncode is Encode for commands built by code that knows they are valid
// (tests, internal callers); it panics on a programming error.
func MustEncode(c *Command) []byte {
	b, err := Encode(c)
	if err != nil {
		panic(err)
	}
	return b
}

func encodeBatch(e *wire.Encoder, b *Batch) {
	b.Canonicalize()
	e.Uvarint(b.RequestID)
	if p := b.Producer; p != nil {
		e.Byte(1)
		e.Uvarint(p.ID)
		e.Uvarint(p.Epoch)
		e.Uvarint(p.Seq)
	} else {
		e.Byte(0)
	}
	e.Uvarint(uint64(len(b.Ops)))
	for i := range b.Ops {
		op := &b.Ops[i]
		e.Byte(byte(op.Kind))
		e.Bytes(op.Key)
		switch op.Kind {
		case OpPut:
			e.Bytes(op.Value)
		case OpDelete:
		case OpAdd, OpMin, OpMax:
			e.Varint(op.Num)
		case OpCAS:
			e.Bool(op.ExpectAbsent)
			e.Bytes(op.Expect)
			e.Bytes(op.Value)
		case OpWindowAdd:
			e.Str(op.Table)
			e.Varint(op.Time)
			e.Varint(op.Num)
		}
	}
	e.Uvarint(uint64(len(b.Offsets)))
	for _, o := range b.Offsets {
		e.Str(o.Source)
		e.Varint(o.Offset)
	}
	e.Uvarint(uint64(len(b.Watermarks)))
	for _, w := range b.Watermarks {
		e.Str(w.Source)
		e.Varint(w.Time)
		var f byte
		if w.Idle {
			f |= 1
		}
		if w.Done {
			f |= 2
		}
		e.Byte(f)
	}
}

// Decode parses an envelope. Byte slices in the result alias data (no copy
// unless the payload was compressed). It never panics: garbage gives an
// error wrapping ErrCorrupt, ErrVersion or ErrUnknownType.
func Decode(data []byte) (*Command, error) {
	if len(data) < 3 {
		return nil, fmt.Errorf("%w: envelope of %d bytes", ErrCorrupt, len(data))
	}
	if data[0] != Version {
		return nil, fmt.Errorf("%w: %d", ErrVersion, data[0])
	}
	typ, flags, payload := Type(data[1]), data[2], data[3:]
	if flags&^FlagSnappy != 0 {
		return nil, fmt.Errorf("%w: unknown flags %#x", ErrCorrupt, flags)
	}
	if flags&FlagSnappy != 0 {
		n, err := snappy.DecodedLen(payload)
		if err != nil || n > 64<<20 {
			return nil, fmt.Errorf("%w: bad compressed payload", ErrCorrupt)
		}
		if payload, err = snappy.Decode(nil, payload); err != nil {
			return nil, fmt.Errorf("%w: bad compressed payload", ErrCorrupt)
		}
	}
	d := wire.Decoder{B: payload}
	c := &Command{Type: typ}
	switch typ {
	case TypeBatch:
		c.Batch = decodeBatch(&d)
	case TypeRegisterProducer:
		c.RegisterProducer = &RegisterProducer{RequestID: d.Uvarint(), Name: d.Str()}
	case TypeSetNodeMeta:
		c.SetNodeMeta = &SetNodeMeta{NodeID: d.Str(), GRPCAddr: d.Str()}
	case TypeCreateTable:
		c.CreateTable = &CreateTable{Name: d.Str(), Spec: d.Bytes()}
	case TypeDropTable:
		c.DropTable = &DropTable{Name: d.Str()}
	default:
		return nil, fmt.Errorf("%w: %d", ErrUnknownType, typ)
	}
	if err := d.Finish(); err != nil {
		return nil, err
	}
	return c, nil
}

func decodeBatch(d *wire.Decoder) *Batch {
	b := &Batch{RequestID: d.Uvarint()}
	switch d.Byte() {
	case 0:
	case 1:
		b.Producer = &Producer{ID: d.Uvarint(), Epoch: d.Uvarint(), Seq: d.Uvarint()}
	default:
		d.Fail("bad producer flag")
	}
	if n := d.Count(2); n > 0 {
		b.Ops = make([]Op, n)
		for i := range b.Ops {
			op := &b.Ops[i]
			op.Kind = OpKind(d.Byte())
			op.Key = d.Bytes()
			switch op.Kind {
			case OpPut:
				op.Value = d.Bytes()
			case OpDelete:
			case OpAdd, OpMin, OpMax:
				op.Num = d.Varint()
			case OpCAS:
				op.ExpectAbsent = d.Bool()
				op.Expect = d.Bytes()
				op.Value = d.Bytes()
			case OpWindowAdd:
				op.Table = d.Str()
				op.Time = d.Varint()
				op.Num = d.Varint()
			default:
				d.Fail(fmt.Sprintf("unknown op kind %d", op.Kind))
			}
			if d.Err != nil {
				return b
			}
		}
	}
	if n := d.Count(2); n > 0 {
		b.Offsets = make([]Offset, n)
		for i := range b.Offsets {
			b.Offsets[i] = Offset{Source: d.Str(), Offset: d.Varint()}
		}
	}
	if n := d.Count(3); n > 0 {
		b.Watermarks = make([]Watermark, n)
		for i := range b.Watermarks {
			w := Watermark{Source: d.Str(), Time: d.Varint()}
			f := d.Byte()
			if f&^3 != 0 {
				d.Fail("bad watermark flags")
			}
			w.Idle, w.Done = f&1 != 0, f&2 != 0
			b.Watermarks[i] = w
		}
	}
	return b
}
