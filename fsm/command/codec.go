package command

import (
	"fmt"

	"github.com/golang/snappy"
)

// CompressThreshold: payloads at least this large are snappy-compressed when
// that makes them smaller.
const CompressThreshold = 4096

// Encode returns the envelope bytes for c. It canonicalizes batches first.
func Encode(c *Command) ([]byte, error) {
	var e encoder
	e.b = make([]byte, 3, 64)
	e.b[0] = Version
	e.b[1] = byte(c.Type)
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
		e.uvarint(c.RegisterProducer.RequestID)
		e.str(c.RegisterProducer.Name)
	case TypeSetNodeMeta:
		if c.SetNodeMeta == nil {
			return nil, fmt.Errorf("command: node meta command without body")
		}
		e.str(c.SetNodeMeta.NodeID)
		e.str(c.SetNodeMeta.GRPCAddr)
	case TypeCreateTable:
		if c.CreateTable == nil {
			return nil, fmt.Errorf("command: create table command without body")
		}
		e.str(c.CreateTable.Name)
		e.bytes(c.CreateTable.Spec)
	case TypeDropTable:
		if c.DropTable == nil {
			return nil, fmt.Errorf("command: drop table command without body")
		}
		e.str(c.DropTable.Name)
	default:
		return nil, fmt.Errorf("%w: %d", ErrUnknownType, c.Type)
	}
	if payload := e.b[3:]; len(payload) >= CompressThreshold {
		if z := snappy.Encode(nil, payload); len(z) < len(payload) {
			e.b = append(e.b[:3], z...)
			e.b[2] |= FlagSnappy
		}
	}
	return e.b, nil
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

func encodeBatch(e *encoder, b *Batch) {
	b.Canonicalize()
	e.uvarint(b.RequestID)
	if p := b.Producer; p != nil {
		e.byte(1)
		e.uvarint(p.ID)
		e.uvarint(p.Epoch)
		e.uvarint(p.Seq)
	} else {
		e.byte(0)
	}
	e.uvarint(uint64(len(b.Ops)))
	for i := range b.Ops {
		op := &b.Ops[i]
		e.byte(byte(op.Kind))
		e.bytes(op.Key)
		switch op.Kind {
		case OpPut:
			e.bytes(op.Value)
		case OpDelete:
		case OpAdd, OpMin, OpMax:
			e.varint(op.Num)
		case OpCAS:
			e.bool(op.ExpectAbsent)
			e.bytes(op.Expect)
			e.bytes(op.Value)
		case OpWindowAdd:
			e.str(op.Table)
			e.varint(op.Time)
			e.varint(op.Num)
		}
	}
	e.uvarint(uint64(len(b.Offsets)))
	for _, o := range b.Offsets {
		e.str(o.Source)
		e.varint(o.Offset)
	}
	e.uvarint(uint64(len(b.Watermarks)))
	for _, w := range b.Watermarks {
		e.str(w.Source)
		e.varint(w.Time)
		var f byte
		if w.Idle {
			f |= 1
		}
		if w.Done {
			f |= 2
		}
		e.byte(f)
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
	d := decoder{b: payload}
	c := &Command{Type: typ}
	switch typ {
	case TypeBatch:
		c.Batch = decodeBatch(&d)
	case TypeRegisterProducer:
		c.RegisterProducer = &RegisterProducer{RequestID: d.uvarint(), Name: d.str()}
	case TypeSetNodeMeta:
		c.SetNodeMeta = &SetNodeMeta{NodeID: d.str(), GRPCAddr: d.str()}
	case TypeCreateTable:
		c.CreateTable = &CreateTable{Name: d.str(), Spec: d.bytes()}
	case TypeDropTable:
		c.DropTable = &DropTable{Name: d.str()}
	default:
		return nil, fmt.Errorf("%w: %d", ErrUnknownType, typ)
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	return c, nil
}

func decodeBatch(d *decoder) *Batch {
	b := &Batch{RequestID: d.uvarint()}
	switch d.byte() {
	case 0:
	case 1:
		b.Producer = &Producer{ID: d.uvarint(), Epoch: d.uvarint(), Seq: d.uvarint()}
	default:
		d.fail("bad producer flag")
	}
	if n := d.count(2); n > 0 {
		b.Ops = make([]Op, n)
		for i := range b.Ops {
			op := &b.Ops[i]
			op.Kind = OpKind(d.byte())
			op.Key = d.bytes()
			switch op.Kind {
			case OpPut:
				op.Value = d.bytes()
			case OpDelete:
			case OpAdd, OpMin, OpMax:
				op.Num = d.varint()
			case OpCAS:
				op.ExpectAbsent = d.bool()
				op.Expect = d.bytes()
				op.Value = d.bytes()
			case OpWindowAdd:
				op.Table = d.str()
				op.Time = d.varint()
				op.Num = d.varint()
			default:
				d.fail(fmt.Sprintf("unknown op kind %d", op.Kind))
			}
			if d.err != nil {
				return b
			}
		}
	}
	if n := d.count(2); n > 0 {
		b.Offsets = make([]Offset, n)
		for i := range b.Offsets {
			b.Offsets[i] = Offset{Source: d.str(), Offset: d.varint()}
		}
	}
	if n := d.count(3); n > 0 {
		b.Watermarks = make([]Watermark, n)
		for i := range b.Watermarks {
			w := Watermark{Source: d.str(), Time: d.varint()}
			f := d.byte()
			if f&^3 != 0 {
				d.fail("bad watermark flags")
			}
			w.Idle, w.Done = f&1 != 0, f&2 != 0
			b.Watermarks[i] = w
		}
	}
	return b
}
