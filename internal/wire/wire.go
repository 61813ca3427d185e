// Package wire holds the small canonical varint encoder and bounds-checked
// decoder shared by every persisted format of cairn (log commands, results,
// producer records). It never panics on garbage input.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrCorrupt is wrapped by every decoding error.
var ErrCorrupt = errors.New("corrupt encoding")

// Encoder appends canonical varint-based encodings.
type Encoder struct{ B []byte }

func (e *Encoder) Byte(v byte)      { e.B = append(e.B, v) }
func (e *Encoder) Uvarint(v uint64) { e.B = binary.AppendUvarint(e.B, v) }
func (e *Encoder) Varint(v int64)   { e.B = binary.AppendVarint(e.B, v) }
func (e *Encoder) Bytes(v []byte)   { e.Uvarint(uint64(len(v))); e.B = append(e.B, v...) }
func (e *Encoder) Str(v string)     { e.Uvarint(uint64(len(v))); e.B = append(e.B, v...) }
func (e *Encoder) Bool(v bool) {
	if v {
		e.Byte(1)
	} else {
		e.Byte(0)
	}
}

// Decoder reads what Encoder wrote. The first error sticks; every read after
// it returns zero values, so callers check err once at the end.
type Decoder struct {
	B   []byte
	Err error
}

func (d *Decoder) Fail(what string) {
	if d.Err == nil {
		d.Err = fmt.Errorf("%w: %s", ErrCorrupt, what)
	}
}

func (d *Decoder) Byte() byte {
	if d.Err != nil {
		return 0
	}
	if len(d.B) < 1 {
		d.Fail("truncated")
		return 0
	}
	v := d.B[0]
	d.B = d.B[1:]
	return v
}

func (d *Decoder) Uvarint() uint64 {
	if d.Err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.B)
	if n <= 0 {
		d.Fail("bad varint")
		return 0
	}
	d.B = d.B[n:]
	return v
}

func (d *Decoder) Varint() int64 {
	if d.Err != nil {
		return 0
	}
	v, n := binary.Varint(d.B)
	if n <= 0 {
		d.Fail("bad varint")
		return 0
	}
	d.B = d.B[n:]
	return v
}

// Count reads a length that must be plausible given the bytes left, each
// element taking at least min bytes; this bounds allocations on garbage.
func (d *Decoder) Count(min int) int {
	n := d.Uvarint()
	if d.Err != nil {
		return 0
	}
	if min < 1 {
		min = 1
	}
	if n > uint64(len(d.B)/min) {
		d.Fail("length exceeds input")
		return 0
	}
	return int(n)
}

// Bytes returns a sub-slice of the input (no copy) or nil for length 0.
func (d *Decoder) Bytes() []byte {
	n := d.Uvarint()
	if d.Err != nil {
		return nil
	}
	if n > uint64(len(d.B)) {
		d.Fail("length exceeds input")
		return nil
	}
	if n == 0 {
		return nil
	}
	v := d.B[:n:n]
	d.B = d.B[n:]
	return v
}

func (d *Decoder) Str() string { return string(d.Bytes()) }

func (d *Decoder) Bool() bool {
	switch d.Byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.Fail("bad bool")
	return false
}

func (d *Decoder) Finish() error {
	if d.Err == nil && len(d.B) != 0 {
		d.Fail("trailing bytes")
	}
	return d.Err
}
