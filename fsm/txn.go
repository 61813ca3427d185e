package fsm

import (
	"encoding/binary"
	"errors"

	"github.com/cockroachdb/pebble/v2"
)

// txn is the write side of one ApplyBatch: an indexed Pebble batch, so that
// an entry reads what earlier entries of the same batch wrote.
type txn struct {
	b *pebble.Batch
	// sweep mirrors keySweep, which every entry with a log time consults:
	// the FSM carries it from batch to batch so that it is read from
	// Pebble once, not once per entry.
	sweep sweepMark
	// scratch holds the keys and values the current entry stages (see
	// entryTx.userKey); the FSM hands it from batch to batch.
	scratch []byte
}

// sweepMark is the cached value of keySweep.
type sweepMark struct {
	known  bool   // false: not read yet
	found  bool   // the key exists
	valid  bool   // and holds 8 bytes
	bucket uint64 // its value when valid
}

// sweepBucket returns the stored sweep mark, reading it on first use.
func (t *txn) sweepBucket() (sweepMark, error) {
	if t.sweep.known {
		return t.sweep, nil
	}
	raw, ok, err := t.get(keySweep)
	if err != nil {
		return sweepMark{}, err
	}
	m := sweepMark{known: true, found: ok, valid: ok && len(raw) == 8}
	if m.valid {
		m.bucket = binary.BigEndian.Uint64(raw)
	}
	t.sweep = m
	return m, nil
}

// setSweepBucket stores a new sweep mark.
func (t *txn) setSweepBucket(bucket uint64) error {
	if err := t.set(keySweep, binary.BigEndian.AppendUint64(nil, bucket)); err != nil {
		return err
	}
	t.sweep = sweepMark{known: true, found: true, valid: true, bucket: bucket}
	return nil
}

// get returns a copy of the value at key, or ok=false.
func (t *txn) get(key []byte) ([]byte, bool, error) {
	v, c, err := t.b.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	out := append([]byte(nil), v...)
	return out, true, c.Close()
}

func (t *txn) set(key, val []byte) error { return t.b.Set(key, val, nil) }
func (t *txn) del(key []byte) error      { return t.b.Delete(key, nil) }

// entryTx stages one entry's writes over a txn so that an entry whose ops
// fail part-way leaves nothing behind: writes reach the batch only on commit.
//
// Reads of the entry's own writes scan them backwards while there are few;
// past smallEntry writes a key index is built, on the first such read. An
// entry that only writes (plain puts and deletes) never builds one.
type entryTx struct {
	t      *txn
	writes []write        // in op order; applied in order on commit
	index  map[string]int // key -> position of its last write in writes; nil until needed
}

const smallEntry = 16

type write struct {
	key []byte
	val []byte
	del bool
}

func newEntryTx(t *txn, ops int) *entryTx {
	t.scratch = t.scratch[:0] // the previous entry's bytes are in the batch by now
	return &entryTx{t: t, writes: make([]write, 0, ops)}
}

// last returns the position of key's last staged write.
func (e *entryTx) last(key []byte) (int, bool) {
	if e.index == nil {
		if len(e.writes) <= smallEntry {
			for i := len(e.writes) - 1; i >= 0; i-- {
				if string(e.writes[i].key) == string(key) {
					return i, true
				}
			}
			return 0, false
		}
		e.index = make(map[string]int, 2*len(e.writes))
		for i, w := range e.writes {
			e.index[string(w.key)] = i
		}
	}
	i, ok := e.index[string(key)]
	return i, ok
}

func (e *entryTx) get(key []byte) ([]byte, bool, error) {
	if i, ok := e.last(key); ok {
		return e.writes[i].val, !e.writes[i].del, nil
	}
	return e.t.get(key)
}

func (e *entryTx) set(key, val []byte) { e.stage(write{key: key, val: val}) }
func (e *entryTx) del(key []byte)      { e.stage(write{key: key, del: true}) }

func (e *entryTx) stage(w write) {
	e.writes = append(e.writes, w)
	if e.index != nil {
		e.index[string(w.key)] = len(e.writes) - 1
	}
}

// commit writes the staged writes into the batch, in order. The batch
// copies them, so their bytes may be reused afterwards.
func (e *entryTx) commit() error {
	for _, w := range e.writes {
		var err error
		if w.del {
			err = e.t.del(w.key)
		} else {
			err = e.t.set(w.key, w.val)
		}
		if err != nil {
			return err
		}
	}
	e.writes, e.index = nil, nil
	return nil
}

// discard drops every staged write.
func (e *entryTx) discard() { e.writes, e.index = nil, nil }

// userKey, bytesValue and intValue encode into the txn's scratch space
// instead of allocating per op; the bytes live until the next entry starts.
func (e *entryTx) userKey(k []byte) []byte {
	b := e.t.alloc(1 + len(k))
	b[0] = prefixUser
	copy(b[1:], k)
	return b
}

func (e *entryTx) bytesValue(v []byte) []byte {
	b := e.t.alloc(bytesValueLen(v))
	putBytesValue(b, v)
	return b
}

func (e *entryTx) intValue(n int64) []byte {
	b := e.t.alloc(intValueLen)
	putIntValue(b, n)
	return b
}

// alloc returns n bytes of scratch space. When the current chunk is full a
// new one is started; slices of the old one stay valid.
func (t *txn) alloc(n int) []byte {
	if cap(t.scratch)-len(t.scratch) < n {
		t.scratch = make([]byte, 0, max(n, 2*cap(t.scratch), 4<<10))
	}
	l := len(t.scratch)
	t.scratch = t.scratch[:l+n]
	return t.scratch[l : l+n : l+n]
}
