package window

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Key layout (see DESIGN.md). Byte strings (table name, user key) are
// escaped order-preservingly: 0x00 becomes 0x00 0xFF and the string ends
// with 0x00 0x01, so no encoded string is a prefix of another and bytewise
// order of encodings equals bytewise order of the strings. Times are
// big-endian uint64(t) XOR 1<<63, so bytewise order equals int64 order.
//
//	window data:  'w' esc(table) esc(key) time(End) time(Start)  -> agg state
//	close index:  'c' esc(table) time(CloseTime) esc(key) time(Start) time(End) -> empty
//
// Window data of one key is ordered by End. For every window kind this is
// also Start order (tumbling/hopping windows of a table have a fixed size,
// sessions of a key are disjoint), and it makes "windows of key k
// overlapping [from, to)" a single forward scan: End in (from, +inf),
// stopping at the first Start >= to.
const (
	TagWindow byte = 'w'
	TagClose  byte = 'c'
)

// Span is the key range [Lower, Upper).
type Span struct{ Lower, Upper []byte }

func appendEscaped(dst, s []byte) []byte {
	for _, c := range s {
		if c == 0 {
			dst = append(dst, 0, 0xff)
		} else {
			dst = append(dst, c)
		}
	}
	return append(dst, 0, 1)
}

// decodeEscaped undoes appendEscaped on a prefix of b.
func decodeEscaped(b []byte) (s, rest []byte, err error) {
	for i := 0; i < len(b); i++ {
		if b[i] != 0 {
			continue
		}
		if i+1 >= len(b) {
			break
		}
		switch b[i+1] {
		case 1:
			s = append(s, b[:i]...)
			if s == nil {
				s = []byte{}
			}
			return s, b[i+2:], nil
		case 0xff:
			s = append(s, b[:i+1]...)
			b = b[i+2:]
			i = -1
		default:
			return nil, nil, fmt.Errorf("%w: bad escape 0x00 0x%02x", ErrCorruptKey, b[i+1])
		}
	}
	return nil, nil, fmt.Errorf("%w: unterminated string", ErrCorruptKey)
}

func appendTime(dst []byte, t int64) []byte {
	return binary.BigEndian.AppendUint64(dst, uint64(t)^(1<<63))
}

func decodeTime(b []byte) (int64, []byte, error) {
	if len(b) < 8 {
		return 0, nil, fmt.Errorf("%w: truncated time", ErrCorruptKey)
	}
	return int64(binary.BigEndian.Uint64(b) ^ (1 << 63)), b[8:], nil
}

func tablePrefix(tag byte, table string) []byte {
	return appendEscaped(append(make([]byte, 0, len(table)+3), tag), []byte(table))
}

// WindowKeyPrefix is the common prefix of all window data keys of key.
func WindowKeyPrefix(table string, key []byte) []byte {
	return appendEscaped(tablePrefix(TagWindow, table), key)
}

// EncodeWindowKey is the data key under which key's window w stores its
// aggregate state.
func EncodeWindowKey(table string, key []byte, w Window) []byte {
	return appendTime(appendTime(WindowKeyPrefix(table, key), w.End), w.Start)
}

// DecodeWindowKey inverts EncodeWindowKey. It never panics; it fails with
// ErrCorruptKey unless k is exactly an encoding of a window with Start < End.
func DecodeWindowKey(k []byte) (table string, key []byte, w Window, err error) {
	if len(k) == 0 || k[0] != TagWindow {
		return "", nil, Window{}, fmt.Errorf("%w: not a window key", ErrCorruptKey)
	}
	tb, rest, err := decodeEscaped(k[1:])
	if err != nil {
		return "", nil, Window{}, err
	}
	if key, rest, err = decodeEscaped(rest); err != nil {
		return "", nil, Window{}, err
	}
	if w.End, rest, err = decodeTime(rest); err != nil {
		return "", nil, Window{}, err
	}
	if w.Start, rest, err = decodeTime(rest); err != nil {
		return "", nil, Window{}, err
	}
	if len(rest) != 0 || w.Start >= w.End {
		return "", nil, Window{}, fmt.Errorf("%w: trailing bytes or empty window %v", ErrCorruptKey, w)
	}
	return string(tb), key, w, nil
}

// EncodeCloseKey is the close-index key of key's window w closing at
// closeTime (= CloseTime(spec, w)). Index order is close time, then key,
// then window start.
func EncodeCloseKey(table string, closeTime int64, key []byte, w Window) []byte {
	b := appendEscaped(appendTime(tablePrefix(TagClose, table), closeTime), key)
	return appendTime(appendTime(b, w.Start), w.End)
}

// DecodeCloseKey inverts EncodeCloseKey, with DecodeWindowKey's guarantees.
func DecodeCloseKey(k []byte) (table string, closeTime int64, key []byte, w Window, err error) {
	fail := func(err error) (string, int64, []byte, Window, error) { return "", 0, nil, Window{}, err }
	if len(k) == 0 || k[0] != TagClose {
		return fail(fmt.Errorf("%w: not a close-index key", ErrCorruptKey))
	}
	tb, rest, err := decodeEscaped(k[1:])
	if err != nil {
		return fail(err)
	}
	if closeTime, rest, err = decodeTime(rest); err != nil {
		return fail(err)
	}
	if key, rest, err = decodeEscaped(rest); err != nil {
		return fail(err)
	}
	if w.Start, rest, err = decodeTime(rest); err != nil {
		return fail(err)
	}
	if w.End, rest, err = decodeTime(rest); err != nil {
		return fail(err)
	}
	if len(rest) != 0 || w.Start >= w.End {
		return fail(fmt.Errorf("%w: trailing bytes or empty window %v", ErrCorruptKey, w))
	}
	return string(tb), closeTime, key, w, nil
}

// WindowSpan covers key's windows with minEnd <= End <= maxEnd.
func WindowSpan(table string, key []byte, minEnd, maxEnd int64) Span {
	p := WindowKeyPrefix(table, key)
	if minEnd > maxEnd {
		return Span{p, p}
	}
	lower := appendTime(bytes.Clone(p), minEnd)
	if maxEnd == 1<<63-1 {
		return Span{lower, prefixEnd(p)}
	}
	return Span{lower, appendTime(p, maxEnd+1)}
}

// CloseSpan covers close-index entries with after < close time <= upTo.
// All windows of a tumbling or hopping table that share a window share a
// close time, so CloseSpan(t, c-1, c) lists all keys of the window closing
// at c.
func CloseSpan(table string, after, upTo int64) Span {
	p := tablePrefix(TagClose, table)
	if after >= upTo {
		return Span{p, p}
	}
	lower := appendTime(bytes.Clone(p), after+1)
	if upTo == 1<<63-1 {
		return Span{lower, prefixEnd(p)}
	}
	return Span{lower, appendTime(p, upTo+1)}
}

// TableSpans covers every key this package writes for table (e.g. to drop
// it): its window data and its close index.
func TableSpans(table string) []Span {
	w, c := tablePrefix(TagWindow, table), tablePrefix(TagClose, table)
	return []Span{{w, prefixEnd(w)}, {c, prefixEnd(c)}}
}

// prefixEnd is the smallest key greater than every key with prefix p. Our
// prefixes end in the terminator 0x01, so this never needs to carry.
func prefixEnd(p []byte) []byte {
	e := bytes.Clone(p)
	for i := len(e) - 1; i >= 0; i-- {
		if e[i] != 0xff {
			e[i]++
			return e[:i+1]
		}
	}
	return nil // unreachable for our prefixes
}
