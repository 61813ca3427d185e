package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Reads serve committed state. They do not order themselves against Raft:
// raftnode decides when a read may run (linearizable, lease or stale).

// Get returns the value of a user key and the applied index the read saw
// (at least that index; entries applied later may be visible too).
func (f *FSM) Get(key []byte) (Value, uint64, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		return Value{}, 0, ErrClosed
	}
	idx := f.applied.Load()
	raw, c, err := f.db.Get(userKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return Value{}, idx, ErrNotFound
	}
	if err != nil {
		return Value{}, idx, err
	}
	defer c.Close()
	v, err := decodeValue(raw)
	return v, idx, err
}

// KV is one user key and its value.
type KV struct {
	Key   []byte
	Value Value
}

// ScanRequest selects user keys in [Start, End) (End nil: no upper bound),
// or with Prefix when set; at most Limit (0: no limit) keys are returned.
type ScanRequest struct {
	Prefix []byte
	Start  []byte
	End    []byte
	Limit  int
	// MaxBytes, if > 0, ends the page once the keys and values returned
	// add up to it; a page holds at least one key.
	MaxBytes int
}

// Scan returns keys in order from one consistent Pebble snapshot. Next is
// the key to start the following page from, nil when the range is done.
func (f *FSM) Scan(req ScanRequest) (kvs []KV, next []byte, idx uint64, err error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		return nil, nil, 0, ErrClosed
	}
	idx = f.applied.Load()
	lower, upper := userKey(req.Start), prefixEnd([]byte{prefixUser})
	if req.End != nil {
		upper = userKey(req.End)
	}
	if req.Prefix != nil {
		p := userKey(req.Prefix)
		if string(p) > string(lower) {
			lower = p
		}
		if e := prefixEnd(p); e != nil && string(e) < string(upper) {
			upper = e
		}
	}
	it, err := f.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, nil, idx, err
	}
	defer it.Close()
	size := 0
	for valid := it.First(); valid; valid = it.Next() {
		k := append([]byte(nil), it.Key()[1:]...)
		if req.Limit > 0 && len(kvs) == req.Limit || req.MaxBytes > 0 && size >= req.MaxBytes {
			return kvs, k, idx, nil
		}
		size += len(k) + len(it.Value())
		v, err := decodeValue(it.Value())
		if err != nil {
			return nil, nil, idx, fmt.Errorf("key %q: %w", k, err)
		}
		kvs = append(kvs, KV{Key: k, Value: v})
	}
	return kvs, nil, idx, it.Error()
}

// Producer returns the session of the named producer, or ErrNotFound.
func (f *FSM) Producer(name string) (*ProducerInfo, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		return nil, ErrClosed
	}
	r := dbReader{f.db}
	idb, ok, err := r.get(producerNameKey(name))
	if err != nil {
		return nil, err
	}
	if !ok || len(idb) != 8 {
		return nil, ErrNotFound
	}
	rec, err := (&applier{}).loadProducer(r, binary.BigEndian.Uint64(idb))
	if err != nil {
		return nil, err
	}
	if rec == nil {
		return nil, ErrNotFound
	}
	return rec.info(), nil
}

// NodeAddrs returns every node's recorded client (gRPC) address.
func (f *FSM) NodeAddrs() (map[string]string, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		return nil, ErrClosed
	}
	return NodeAddrsIn(f.db)
}

// NodeAddrsIn is NodeAddrs of a database the caller holds (for example
// the live one, quiescent at a snapshot's index, in a Checkpointer hook).
func NodeAddrsIn(db *pebble.DB) (map[string]string, error) {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: keyNodePrefix, UpperBound: prefixEnd(keyNodePrefix)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := map[string]string{}
	for valid := it.First(); valid; valid = it.Next() {
		out[string(it.Key()[len(keyNodePrefix):])] = string(it.Value())
	}
	return out, it.Error()
}

type dbReader struct{ db *pebble.DB }

func (r dbReader) get(key []byte) ([]byte, bool, error) {
	v, c, err := r.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer c.Close()
	return append([]byte(nil), v...), true, nil
}

// ProducersIn lists every producer session stored in db (the live DB or a
// checkpoint being taken), in id order. Checkpoint manifests record it.
func ProducersIn(db *pebble.DB) ([]*ProducerInfo, error) {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: keyProducerIDPrefix, UpperBound: prefixEnd(keyProducerIDPrefix)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []*ProducerInfo
	for ok := it.First(); ok; ok = it.Next() {
		rec, err := decodeProducerRecord(it.Value())
		if err != nil {
			return nil, err
		}
		out = append(out, rec.info())
	}
	return out, it.Error()
}

// Producers lists every producer session.
func (f *FSM) Producers() ([]*ProducerInfo, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		return nil, ErrClosed
	}
	return ProducersIn(f.db)
}
