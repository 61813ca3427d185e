package fsm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"
	"sync"

	"github.com/cairn-db/cairn/fsm/command"
	"github.com/cairn-db/cairn/internal/wire"
	"github.com/cairn-db/cairn/window"
)

// Windowed tables. window/ decides every effect; this file stores them.
// Layout under prefixTable ('t'):
//
//	't' 'm' name                    -> tableRecord
//	't' 'w' ... / 't' 'c' ...       -> window data / close index (window/ keys)
//	't' 'l' name 0x00 index ord     -> closed window, in publication order (watch log)
//
// Table names are restricted (ValidTableName) so name+0x00 is an
// unambiguous, ordered prefix.

const (
	tagTableMeta byte = 'm'
	tagClosedLog byte = 'l'
)

// ValidTableName reports whether name may name a table: 1..128 bytes of
// letters, digits, '_', '-' and '.'.
func ValidTableName(name string) error {
	if len(name) == 0 || len(name) > 128 {
		return fmt.Errorf("table name must be 1 to 128 characters, got %d", len(name))
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return fmt.Errorf("table name %q may only contain letters, digits, '_', '-' and '.'", name)
		}
	}
	return nil
}

func tableMetaKey(name string) []byte {
	return append([]byte{prefixTable, tagTableMeta}, name...)
}

func closedLogPrefix(name string) []byte {
	return append(append([]byte{prefixTable, tagClosedLog}, name...), 0)
}

func closedLogKey(name string, index uint64, ord uint32) []byte {
	k := binary.BigEndian.AppendUint64(closedLogPrefix(name), index)
	return binary.BigEndian.AppendUint32(k, ord)
}

// tableProducer is one producer source feeding a table's watermark.
type tableProducer struct {
	ID        uint64
	Source    string
	Watermark int64
	Status    window.ProducerStatus
}

type tableRecord struct {
	Name      string
	Spec      string
	Created   uint64 // raft index of creation
	Watermark int64
	Late      uint64 // events rejected as late, ever
	Closed    uint64 // windows published as closed, ever
	Producers []tableProducer
	// TrimIndex/TrimOrd: the watch log holds nothing at or before this
	// position any more (expired windows are trimmed from its head).
	TrimIndex uint64
	TrimOrd   uint32
}

func (r *tableRecord) encode() []byte {
	var e wire.Encoder
	e.Byte(1)
	e.Str(r.Name)
	e.Str(r.Spec)
	e.Uvarint(r.Created)
	e.Varint(r.Watermark)
	e.Uvarint(r.Late)
	e.Uvarint(r.Closed)
	e.Uvarint(uint64(len(r.Producers)))
	for _, p := range r.Producers {
		e.Uvarint(p.ID)
		e.Str(p.Source)
		e.Varint(p.Watermark)
		e.Byte(byte(p.Status))
	}
	e.Uvarint(r.TrimIndex)
	e.Uvarint(uint64(r.TrimOrd))
	return e.B
}

func decodeTableRecord(b []byte) (*tableRecord, error) {
	d := wire.Decoder{B: b}
	if v := d.Byte(); v != 1 && d.Err == nil {
		return nil, fmt.Errorf("%w: table record version %d", ErrCorruptState, v)
	}
	r := &tableRecord{Name: d.Str(), Spec: d.Str(), Created: d.Uvarint(), Watermark: d.Varint(), Late: d.Uvarint(), Closed: d.Uvarint()}
	if n := d.Count(4); n > 0 {
		r.Producers = make([]tableProducer, n)
		for i := range r.Producers {
			r.Producers[i] = tableProducer{ID: d.Uvarint(), Source: d.Str(), Watermark: d.Varint(), Status: window.ProducerStatus(d.Byte())}
		}
	}
	r.TrimIndex, r.TrimOrd = d.Uvarint(), uint32(d.Uvarint())
	if err := d.Finish(); err != nil {
		return nil, fmt.Errorf("%w: table record: %v", ErrCorruptState, err)
	}
	return r, nil
}

// ClosedWindow is one final window result in the watch log.
type ClosedWindow struct {
	Index     uint64 // raft index of the entry that closed it
	Ord       uint32 // position among the windows that entry closed
	Key       []byte
	Start     int64
	End       int64
	CloseTime int64
	Expire    int64
	State     []byte
}

func encodeClosed(c *window.ClosedWindow, expire int64) []byte {
	var e wire.Encoder
	e.Byte(1)
	e.Bytes(c.Key)
	e.Varint(c.Window.Start)
	e.Varint(c.Window.End)
	e.Varint(c.CloseTime)
	e.Varint(expire)
	e.Bytes(c.State)
	return e.B
}

func decodeClosed(k, v []byte, prefixLen int) (*ClosedWindow, error) {
	if len(k) != prefixLen+12 {
		return nil, fmt.Errorf("%w: closed-log key of %d bytes", ErrCorruptState, len(k))
	}
	d := wire.Decoder{B: v}
	if ver := d.Byte(); ver != 1 && d.Err == nil {
		return nil, fmt.Errorf("%w: closed-log version %d", ErrCorruptState, ver)
	}
	c := &ClosedWindow{Index: binary.BigEndian.Uint64(k[prefixLen:]), Ord: binary.BigEndian.Uint32(k[prefixLen+8:])}
	c.Key = append([]byte(nil), d.Bytes()...)
	c.Start, c.End, c.CloseTime, c.Expire = d.Varint(), d.Varint(), d.Varint(), d.Varint()
	c.State = append([]byte(nil), d.Bytes()...)
	if err := d.Finish(); err != nil {
		return nil, fmt.Errorf("%w: closed-log entry: %v", ErrCorruptState, err)
	}
	return c, nil
}

// engineCache memoizes parsed table specs; a pure function of the stored
// spec string, so it cannot make replicas diverge.
type engineCache struct {
	mu sync.Mutex
	m  map[string]*window.Engine // name + "\x00" + spec
}

func (c *engineCache) get(name, spec string) (*window.Engine, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := name + "\x00" + spec
	if e, ok := c.m[k]; ok {
		return e, nil
	}
	s, err := window.ParseSpec(spec)
	if err != nil {
		return nil, err
	}
	e, err := window.NewEngine(name, s)
	if err != nil {
		return nil, err
	}
	if c.m == nil || len(c.m) > 1024 {
		c.m = map[string]*window.Engine{}
	}
	c.m[k] = e
	return e, nil
}

// batchState exposes the indexed batch to window/ under the 't' prefix.
type batchState struct{ t *txn }

func (s batchState) Get(key []byte) ([]byte, bool, error) {
	return s.t.get(append([]byte{prefixTable}, key...))
}

func (s batchState) Scan(lower, upper []byte, fn func(k, v []byte) (bool, error)) error {
	it, err := s.t.b.NewIter(nil)
	if err != nil {
		return err
	}
	defer it.Close()
	lo, hi := append([]byte{prefixTable}, lower...), append([]byte{prefixTable}, upper...)
	for ok := it.SeekGE(lo); ok && bytes.Compare(it.Key(), hi) < 0; ok = it.Next() {
		more, err := fn(it.Key()[1:], it.Value())
		if err != nil || !more {
			return err
		}
	}
	return it.Error()
}

func (s batchState) apply(ms []window.Mutation) error {
	for _, m := range ms {
		k := append([]byte{prefixTable}, m.Key...)
		var err error
		if m.Delete {
			err = s.t.del(k)
		} else {
			err = s.t.set(k, m.Value)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (a *applier) loadTable(t interface {
	get([]byte) ([]byte, bool, error)
}, name string) (*tableRecord, error) {
	b, ok, err := t.get(tableMetaKey(name))
	if err != nil || !ok {
		return nil, err
	}
	return decodeTableRecord(b)
}

func (a *applier) createTable(t *txn, ent Entry, c *command.CreateTable) (*command.Result, error) {
	res := &command.Result{Index: ent.Index}
	if err := ValidTableName(c.Name); err != nil {
		res.Code, res.Message = command.CodeInvalid, err.Error()
		return res, nil
	}
	spec, err := window.ParseSpec(string(c.Spec))
	if err == nil {
		err = spec.Validate()
	}
	if err != nil {
		res.Code, res.Message = command.CodeInvalid, fmt.Sprintf("table %q: %v", c.Name, err)
		return res, nil
	}
	old, err := a.loadTable(t, c.Name)
	if err != nil {
		return nil, errStorage{err}
	}
	if old != nil {
		res.Code, res.Message = command.CodeExists, fmt.Sprintf("table %q already exists", c.Name)
		return res, nil
	}
	rec := &tableRecord{Name: c.Name, Spec: spec.String(), Created: ent.Index, Watermark: window.MinWatermark}
	if err := t.set(tableMetaKey(c.Name), rec.encode()); err != nil {
		return nil, errStorage{err}
	}
	return res, nil
}

func (a *applier) dropTable(t *txn, ent Entry, c *command.DropTable) (*command.Result, error) {
	res := &command.Result{Index: ent.Index}
	old, err := a.loadTable(t, c.Name)
	if err != nil {
		return nil, errStorage{err}
	}
	if old == nil {
		res.Code, res.Message = command.CodeNotFound, fmt.Sprintf("table %q does not exist", c.Name)
		return res, nil
	}
	spans := window.TableSpans(c.Name)
	lp := closedLogPrefix(c.Name)
	spans = append(spans, window.Span{Lower: lp[1:], Upper: prefixEnd(lp)[1:]})
	for _, s := range spans {
		if err := t.b.DeleteRange(append([]byte{prefixTable}, s.Lower...), append([]byte{prefixTable}, s.Upper...), nil); err != nil {
			return nil, errStorage{err}
		}
	}
	if err := t.del(tableMetaKey(c.Name)); err != nil {
		return nil, errStorage{err}
	}
	return res, nil
}

// checkWindowOps rejects, before anything is written, window events that
// cannot apply (unknown table, time out of range). Returns a message or "".
func (a *applier) checkWindowOps(t *txn, ops []command.Op, tables map[string]*tableRecord) (string, error) {
	for i := range ops {
		op := &ops[i]
		if op.Kind != command.OpWindowAdd {
			continue
		}
		if _, ok := tables[op.Table]; !ok {
			rec, err := a.loadTable(t, op.Table)
			if err != nil {
				return "", err
			}
			if rec == nil {
				return fmt.Sprintf("op %d: table %q does not exist", i, op.Table), nil
			}
			tables[op.Table] = rec
		}
		if err := window.CheckTime(op.Time); err != nil {
			return fmt.Sprintf("op %d: %v", i, err), nil
		}
	}
	return "", nil
}

// applyWindowOps applies the batch's window events at each table's current
// watermark, in op order, and returns how many were late (not applied).
func (a *applier) applyWindowOps(t *txn, ops []command.Op, tables map[string]*tableRecord) (uint64, error) {
	var late uint64
	st := batchState{t}
	for i := range ops {
		op := &ops[i]
		if op.Kind != command.OpWindowAdd {
			continue
		}
		rec := tables[op.Table]
		eng, err := a.engines.get(rec.Name, rec.Spec)
		if err != nil {
			return 0, fmt.Errorf("%w: table %q spec: %v", ErrCorruptState, rec.Name, err)
		}
		eff, err := eng.Apply(st, window.Event{Key: op.Key, Time: op.Time, Value: op.Num}, rec.Watermark)
		if err != nil {
			return 0, err
		}
		if eff.Late {
			late++
			rec.Late++
			continue
		}
		if err := st.apply(eng.EffectMutations(eff)); err != nil {
			return 0, err
		}
	}
	return late, nil
}

// advanceTables records a producer's watermarks with every table it writes
// to, advances each table's watermark, publishes the windows that closed
// (watch log) and evicts the ones that expired.
func (a *applier) advanceTables(t *txn, ent Entry, rec *producerRecord, tables map[string]*tableRecord) error {
	for _, name := range rec.Tables {
		tr, ok := tables[name]
		if !ok {
			var err error
			if tr, err = a.loadTable(t, name); err != nil {
				return err
			}
			if tr == nil {
				continue // dropped
			}
			tables[name] = tr
		}
		for _, w := range rec.Watermarks {
			st := window.ProducerActive
			switch {
			case w.Done:
				st = window.ProducerFinished
			case w.Idle:
				st = window.ProducerIdle
			}
			tr.Producers = upsertTableProducer(tr.Producers, tableProducer{ID: rec.ID, Source: w.Source, Watermark: w.Time, Status: st})
		}
	}
	for _, name := range sortedKeys(tables) {
		tr := tables[name]
		pws := make([]window.ProducerWatermark, len(tr.Producers))
		for i, p := range tr.Producers {
			pws[i] = window.ProducerWatermark{Watermark: p.Watermark, Status: p.Status}
		}
		newWM := window.TableWatermark(tr.Watermark, pws)
		if newWM > tr.Watermark {
			if err := a.advance(t, ent, tr, newWM); err != nil {
				return err
			}
		}
	}
	return nil
}

func (a *applier) advance(t *txn, ent Entry, tr *tableRecord, newWM int64) error {
	eng, err := a.engines.get(tr.Name, tr.Spec)
	if err != nil {
		return fmt.Errorf("%w: table %q spec: %v", ErrCorruptState, tr.Name, err)
	}
	st := batchState{t}
	oldWM := tr.Watermark
	p, err := eng.Advance(st, oldWM, newWM)
	if err != nil {
		return err
	}
	for i := range p.Closed {
		c := &p.Closed[i]
		if err := t.set(closedLogKey(tr.Name, ent.Index, uint32(i)), encodeClosed(c, window.ExpireTime(eng.Spec(), c.Window))); err != nil {
			return err
		}
	}
	tr.Closed += uint64(len(p.Closed))
	if err := st.apply(eng.AdvanceMutations(p)); err != nil {
		return err
	}
	tr.Watermark = newWM
	// Trim the watch log: it is ordered by close time, so expired entries
	// form a prefix. Only entries that had expired before this advance go:
	// a window that closes and expires in the same advance (retention 0, or
	// a jump past the retention) stays in the log until the next one, so
	// that watchers can see it.
	lp := closedLogPrefix(tr.Name)
	it, err := t.b.NewIter(nil)
	if err != nil {
		return err
	}
	var trimTo []byte
	for ok := it.SeekGE(lp); ok && bytes.HasPrefix(it.Key(), lp); ok = it.Next() {
		c, err := decodeClosed(it.Key(), it.Value(), len(lp))
		if err != nil {
			_ = it.Close()
			return err
		}
		if c.Expire > oldWM {
			break
		}
		trimTo = append(trimTo[:0], it.Key()...)
	}
	if err := it.Close(); err != nil {
		return err
	}
	if trimTo != nil {
		tr.TrimIndex = binary.BigEndian.Uint64(trimTo[len(lp):])
		tr.TrimOrd = binary.BigEndian.Uint32(trimTo[len(lp)+8:])
		return t.b.DeleteRange(lp, append(trimTo, 0), nil)
	}
	return nil
}

func upsertTableProducer(ps []tableProducer, p tableProducer) []tableProducer {
	i := sort.Search(len(ps), func(i int) bool {
		return ps[i].ID > p.ID || (ps[i].ID == p.ID && ps[i].Source >= p.Source)
	})
	if i < len(ps) && ps[i].ID == p.ID && ps[i].Source == p.Source {
		p.Watermark = max(p.Watermark, ps[i].Watermark)
		ps[i] = p
		return ps
	}
	ps = append(ps, tableProducer{})
	copy(ps[i+1:], ps[i:])
	ps[i] = p
	return ps
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func addSorted(s []string, v string) []string {
	i := sort.SearchStrings(s, v)
	if i < len(s) && s[i] == v {
		return s
	}
	s = append(s, "")
	copy(s[i+1:], s[i:])
	s[i] = v
	return s
}
