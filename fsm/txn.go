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
type entryTx struct {
	t      *txn
	vals   map[string]staged
	writes []write // in op order; applied in order on commit
}

type staged struct {
	val []byte
	del bool
}

type write struct {
	key []byte
	val []byte
	del bool
}

func newEntryTx(t *txn) *entryTx { return &entryTx{t: t} }

func (e *entryTx) get(key []byte) ([]byte, bool, error) {
	if s, ok := e.vals[string(key)]; ok {
		return s.val, !s.del, nil
	}
	return e.t.get(key)
}

func (e *entryTx) set(key, val []byte) {
	if e.vals == nil {
		e.vals = make(map[string]staged, 4)
	}
	e.vals[string(key)] = staged{val: val}
	e.writes = append(e.writes, write{key: key, val: val})
}

func (e *entryTx) del(key []byte) {
	if e.vals == nil {
		e.vals = make(map[string]staged, 4)
	}
	e.vals[string(key)] = staged{del: true}
	e.writes = append(e.writes, write{key: key, del: true})
}

// commit writes the staged writes into the batch, in order.
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
	e.writes, e.vals = nil, nil
	return nil
}

// discard drops every staged write.
func (e *entryTx) discard() { e.writes, e.vals = nil, nil }
