package fsm

import (
	"encoding/binary"
	"fmt"
	"strconv"
)

// ValueKind says how a stored value is typed.
type ValueKind byte

// Value kinds as stored: the first byte of every user value. Persisted.
const (
	KindBytes ValueKind = 0 // opaque bytes from Put
	KindInt   ValueKind = 1 // int64 from Add/Min/Max, 8 bytes big-endian
)

// Value is a typed user value.
type Value struct {
	Kind  ValueKind
	Bytes []byte
	Int   int64
}

// String renders the value the way the CLI prints it: integers in decimal.
func (v Value) String() string {
	if v.Kind == KindInt {
		return strconv.FormatInt(v.Int, 10)
	}
	return string(v.Bytes)
}

// bytesValueLen and intValueLen are the encoded sizes of the two kinds.
func bytesValueLen(b []byte) int { return 1 + len(b) }

const intValueLen = 9

// putBytesValue encodes b into out (bytesValueLen(b) bytes).
func putBytesValue(out, b []byte) {
	out[0] = byte(KindBytes)
	copy(out[1:], b)
}

// putIntValue encodes n into out (intValueLen bytes).
func putIntValue(out []byte, n int64) {
	out[0] = byte(KindInt)
	binary.BigEndian.PutUint64(out[1:], uint64(n))
}

// decodeValue parses a stored value; b may be reused by the caller after.
func decodeValue(b []byte) (Value, error) {
	if len(b) == 0 {
		return Value{}, fmt.Errorf("%w: empty stored value", ErrCorruptState)
	}
	switch ValueKind(b[0]) {
	case KindBytes:
		return Value{Kind: KindBytes, Bytes: append([]byte{}, b[1:]...)}, nil
	case KindInt:
		if len(b) != 9 {
			return Value{}, fmt.Errorf("%w: int value of %d bytes", ErrCorruptState, len(b))
		}
		return Value{Kind: KindInt, Int: int64(binary.BigEndian.Uint64(b[1:]))}, nil
	}
	return Value{}, fmt.Errorf("%w: unknown value kind %d", ErrCorruptState, b[0])
}
