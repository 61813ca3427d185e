package fsm

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/cairn-db/cairn/window"
)

// TableInfo describes a windowed table.
type TableInfo struct {
	Name      string
	Spec      window.Spec
	Created   uint64
	Watermark int64 // window.MinWatermark until a producer sends one
	Late      uint64
	Closed    uint64
	Producers int
	// The watch log has been trimmed through this position.
	TrimIndex uint64
	TrimOrd   uint32
}

// WindowResult is one window of one key.
type WindowResult struct {
	Key    []byte
	Start  int64
	End    int64
	Value  window.Value
	Closed bool // final: the table watermark passed End + allowed lateness
}

// ErrNoTable: the named table does not exist.
var ErrNoTable = errors.New("fsm: no such table")

// dbState is window.State over the live DB (reads only).
type dbState struct{ db *pebble.DB }

func (s dbState) Get(key []byte) ([]byte, bool, error) {
	return dbReader{s.db}.get(append([]byte{prefixTable}, key...))
}

func (s dbState) Scan(lower, upper []byte, fn func(k, v []byte) (bool, error)) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: append([]byte{prefixTable}, lower...), UpperBound: append([]byte{prefixTable}, upper...)})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		more, err := fn(it.Key()[1:], it.Value())
		if err != nil || !more {
			return err
		}
	}
	return it.Error()
}

func (f *FSM) table(name string) (*tableRecord, *window.Engine, error) {
	rec, err := f.applier.loadTable(dbReader{f.db}, name)
	if err != nil {
		return nil, nil, err
	}
	if rec == nil {
		return nil, nil, fmt.Errorf("%w: %q", ErrNoTable, name)
	}
	eng, err := f.applier.engines.get(rec.Name, rec.Spec)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: table %q spec: %v", ErrCorruptState, name, err)
	}
	return rec, eng, nil
}

func (r *tableRecord) info(spec window.Spec) TableInfo {
	return TableInfo{Name: r.Name, Spec: spec, Created: r.Created, Watermark: r.Watermark, Late: r.Late,
		Closed: r.Closed, Producers: len(r.Producers), TrimIndex: r.TrimIndex, TrimOrd: r.TrimOrd}
}

// Table describes one table.
func (f *FSM) Table(name string) (TableInfo, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		return TableInfo{}, ErrClosed
	}
	rec, eng, err := f.table(name)
	if err != nil {
		return TableInfo{}, err
	}
	return rec.info(eng.Spec()), nil
}

// Tables lists every table in name order.
func (f *FSM) Tables() ([]TableInfo, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		return nil, ErrClosed
	}
	p := []byte{prefixTable, tagTableMeta}
	it, err := f.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []TableInfo
	for ok := it.First(); ok; ok = it.Next() {
		rec, err := decodeTableRecord(it.Value())
		if err != nil {
			return nil, err
		}
		eng, err := f.applier.engines.get(rec.Name, rec.Spec)
		if err != nil {
			return nil, err
		}
		out = append(out, rec.info(eng.Spec()))
	}
	return out, it.Error()
}

// Windows returns key's windows overlapping [from, to) with their results.
func (f *FSM) Windows(table string, key []byte, from, to int64) ([]WindowResult, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		return nil, ErrClosed
	}
	rec, eng, err := f.table(table)
	if err != nil {
		return nil, err
	}
	ws, err := eng.Windows(dbState{f.db}, key, from, to)
	if err != nil {
		return nil, err
	}
	out := make([]WindowResult, 0, len(ws))
	for _, w := range ws {
		v, err := eng.Aggregator().Result(w.State)
		if err != nil {
			return nil, err
		}
		out = append(out, WindowResult{Key: key, Start: w.Window.Start, End: w.Window.End, Value: v,
			Closed: window.IsLate(eng.Spec(), w.Window, rec.Watermark)})
	}
	return out, nil
}

// WindowKeys returns the keys of window [start, end) of a tumbling or
// hopping table, in key order after `after`, at most limit (0: all).
func (f *FSM) WindowKeys(table string, start, end int64, after []byte, limit int) ([]WindowResult, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		return nil, ErrClosed
	}
	rec, eng, err := f.table(table)
	if err != nil {
		return nil, err
	}
	w := window.Window{Start: start, End: end}
	ct := window.CloseTime(eng.Spec(), w)
	span := window.CloseSpan(table, ct-1, ct)
	st := dbState{f.db}
	var keys [][]byte
	err = st.Scan(span.Lower, span.Upper, func(k, _ []byte) (bool, error) {
		_, _, key, kw, err := window.DecodeCloseKey(k)
		if err != nil {
			return false, err
		}
		if kw == w && (after == nil || bytes.Compare(key, after) > 0) {
			keys = append(keys, key)
		}
		return limit == 0 || len(keys) < limit, nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]WindowResult, 0, len(keys))
	for _, k := range keys {
		raw, ok, err := st.Get(window.EncodeWindowKey(table, k, w))
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		v, err := eng.Aggregator().Result(raw)
		if err != nil {
			return nil, err
		}
		out = append(out, WindowResult{Key: k, Start: start, End: end, Value: v, Closed: window.IsLate(eng.Spec(), w, rec.Watermark)})
	}
	return out, nil
}

// ErrTrimmed: a watch resume position is older than the retained log.
var ErrTrimmed = errors.New("fsm: watch position already evicted")

// ClosedSince returns final window results published after position
// (index, ord), in publication order, at most limit, decoded with their
// aggregate results. Every replica holds the same log.
func (f *FSM) ClosedSince(table string, index uint64, ord uint32, limit int) ([]ClosedResult, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		return nil, ErrClosed
	}
	rec, eng, err := f.table(table)
	if err != nil {
		return nil, err
	}
	resuming := index != 0 || ord != 0
	if resuming && (index < rec.TrimIndex || (index == rec.TrimIndex && ord < rec.TrimOrd)) {
		return nil, fmt.Errorf("%w: resume position %d/%d, log trimmed through %d/%d", ErrTrimmed, index, ord, rec.TrimIndex, rec.TrimOrd)
	}
	lp := closedLogPrefix(table)
	lower := closedLogKey(table, index, ord)
	lower = append(lower, 0) // strictly after (index, ord)
	if index == 0 && ord == 0 {
		lower = lp
	}
	it, err := f.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(lp)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []ClosedResult
	for ok := it.First(); ok && (limit == 0 || len(out) < limit); ok = it.Next() {
		c, err := decodeClosed(it.Key(), it.Value(), len(lp))
		if err != nil {
			return nil, err
		}
		v, err := eng.Aggregator().Result(c.State)
		if err != nil {
			return nil, err
		}
		out = append(out, ClosedResult{ClosedWindow: *c, Value: v})
	}
	return out, it.Error()
}

// ClosedResult is a closed window with its final aggregate result.
type ClosedResult struct {
	ClosedWindow
	Value window.Value
}
