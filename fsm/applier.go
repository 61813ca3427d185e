package fsm

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/cairn-db/cairn/fsm/command"
	"github.com/cairn-db/cairn/internal/faulty"
)

// Entry is what the applier needs to know about one Raft log entry.
type Entry struct {
	Index uint64
	Term  uint64
	// TimeMs is the leader's AppendedAt in Unix milliseconds: carried in the
	// log, identical on every replica, so time-based decisions stay
	// deterministic. Never the local clock.
	TimeMs int64
	Data   []byte
}

// ApplierConfig tunes the deterministic rules of the applier. Every replica
// of a cluster must run with the same values.
type ApplierConfig struct {
	// ProducerIdleTTL: a producer session with no activity for this long (in
	// log time) loses its deduplication state; its epoch and committed
	// offsets are kept, and its next write is rejected until it registers
	// again. Default 7 days (Kafka's transactional.id.expiration.ms).
	ProducerIdleTTL time.Duration
	// SweepInterval: how often (in log time) expired sessions are swept.
	SweepInterval time.Duration
}

// DefaultApplierConfig returns the defaults.
func DefaultApplierConfig() ApplierConfig {
	return ApplierConfig{ProducerIdleTTL: 7 * 24 * time.Hour, SweepInterval: time.Hour}
}

// Validate reports a configuration that cannot work.
func (c ApplierConfig) Validate() error {
	if c.ProducerIdleTTL <= 0 {
		return fmt.Errorf("fsm: ProducerIdleTTL must be > 0, got %v", c.ProducerIdleTTL)
	}
	if c.SweepInterval <= 0 || c.SweepInterval > c.ProducerIdleTTL {
		return fmt.Errorf("fsm: SweepInterval must be in (0, ProducerIdleTTL], got %v", c.SweepInterval)
	}
	return nil
}

// applier turns one decoded log entry into writes on a txn. It holds no
// state of its own: everything it reads comes from the txn, so the same
// applier can replay a log offline.
type applier struct {
	cfg     ApplierConfig
	engines *engineCache
}

// errStorage wraps a Pebble failure during apply: not a property of the
// entry, so it must not become a deterministic result.
type errStorage struct{ err error }

func (e errStorage) Error() string { return "fsm: storage: " + e.err.Error() }
func (e errStorage) Unwrap() error { return e.err }

// apply applies one entry. A returned error is a storage failure (the
// caller must stop persisting); every property of the entry itself,
// including a corrupt encoding, is a Result.
func (a *applier) apply(t *txn, ent Entry) (*command.Result, error) {
	if err := a.sweep(t, ent); err != nil {
		return nil, err
	}
	cmd, err := command.Decode(ent.Data)
	if err != nil {
		return &command.Result{Index: ent.Index, Code: command.CodeCorrupt,
			Message: fmt.Sprintf("entry %d not applied: %v", ent.Index, err)}, nil
	}
	switch cmd.Type {
	case command.TypeBatch:
		return a.applyBatch(t, ent, cmd.Batch)
	case command.TypeRegisterProducer:
		return a.register(t, ent, cmd.RegisterProducer)
	case command.TypeSetNodeMeta:
		m := cmd.SetNodeMeta
		if m.NodeID == "" {
			return &command.Result{Index: ent.Index, Code: command.CodeInvalid, Message: "node id is empty"}, nil
		}
		if err := t.set(nodeKey(m.NodeID), []byte(m.GRPCAddr)); err != nil {
			return nil, errStorage{err}
		}
		return &command.Result{Index: ent.Index}, nil
	case command.TypeCreateTable:
		return a.createTable(t, ent, cmd.CreateTable)
	case command.TypeDropTable:
		return a.dropTable(t, ent, cmd.DropTable)
	}
	return &command.Result{Index: ent.Index, Code: command.CodeCorrupt,
		Message: fmt.Sprintf("entry %d: unhandled command type %v", ent.Index, cmd.Type)}, nil
}

func (a *applier) loadProducer(t interface {
	get([]byte) ([]byte, bool, error)
}, id uint64) (*producerRecord, error) {
	b, ok, err := t.get(producerIDKey(id))
	if err != nil || !ok {
		return nil, err
	}
	return decodeProducerRecord(b)
}

func (a *applier) register(t *txn, ent Entry, r *command.RegisterProducer) (*command.Result, error) {
	if r.Name == "" {
		return &command.Result{Index: ent.Index, Code: command.CodeInvalid, Message: "producer name is empty"}, nil
	}
	rec := &producerRecord{ID: ent.Index, Name: r.Name}
	idb, ok, err := t.get(producerNameKey(r.Name))
	if err != nil {
		return nil, errStorage{err}
	}
	if ok {
		if len(idb) != 8 {
			return nil, errStorage{fmt.Errorf("%w: producer id of %d bytes", ErrCorruptState, len(idb))}
		}
		old, err := a.loadProducer(t, binary.BigEndian.Uint64(idb))
		if err != nil {
			return nil, errStorage{err}
		}
		if old != nil {
			rec = old
		}
	}
	// A new epoch fences every older instance; sequence numbers restart.
	rec.Epoch++
	rec.LastSeq, rec.LastResult, rec.Expired = 0, nil, false
	rec.LastIndex, rec.LastTimeMs = ent.Index, ent.TimeMs
	if err := t.set(producerNameKey(r.Name), binary.BigEndian.AppendUint64(nil, rec.ID)); err != nil {
		return nil, errStorage{err}
	}
	if err := t.set(producerIDKey(rec.ID), rec.encode()); err != nil {
		return nil, errStorage{err}
	}
	return &command.Result{Index: ent.Index, Producer: rec.ID, Epoch: rec.Epoch}, nil
}

func (a *applier) applyBatch(t *txn, ent Entry, b *command.Batch) (*command.Result, error) {
	var rec *producerRecord
	if p := b.Producer; p != nil {
		var err error
		if rec, err = a.loadProducer(t, p.ID); err != nil {
			return nil, errStorage{err}
		}
		if res := checkProducer(rec, p, ent.Index); res != nil {
			return res, nil
		}
	}
	tables := map[string]*tableRecord{}
	msg, err := a.checkWindowOps(t, b.Ops, tables)
	if err != nil {
		return nil, errStorage{err}
	}
	et := newEntryTx(t, len(b.Ops))
	res := &command.Result{Index: ent.Index, Nums: make([]int64, len(b.Ops))}
	if msg != "" {
		res = &command.Result{Index: ent.Index, Code: command.CodeInvalid, Message: msg}
	}
	for i := 0; i < len(b.Ops) && res.Code == command.CodeOK; i++ {
		if b.Ops[i].Kind == command.OpWindowAdd {
			continue // applied below, once the plain ops are known to succeed
		}
		r, err := applyOp(et, &b.Ops[i])
		if err != nil {
			return nil, errStorage{err}
		}
		if r.code != command.CodeOK {
			et.discard()
			res = &command.Result{Index: ent.Index, Code: r.code, Message: fmt.Sprintf("op %d (%s): %s", i, b.Ops[i].Kind, r.msg)}
			break
		}
		res.Nums[i] = r.num
	}
	if res.Code == command.CodeOK {
		if err := et.commit(); err != nil {
			return nil, errStorage{err}
		}
		if res.Late, err = a.applyWindowOps(t, b.Ops, tables); err != nil {
			return nil, errStorage{err}
		}
	}
	if rec != nil {
		// The sequence advances whether or not the ops applied: the outcome
		// is final and a retry must get the same answer, not a re-evaluation.
		rec.LastSeq = b.Producer.Seq
		res.LastSeq = rec.LastSeq
		if res.Code == command.CodeOK {
			rec.Offsets = mergeOffsets(rec.Offsets, b.Offsets)
			rec.Watermarks = mergeWatermarks(rec.Watermarks, b.Watermarks)
			joined := false
			for name := range tables {
				n := len(rec.Tables)
				rec.Tables = addSorted(rec.Tables, name)
				joined = joined || len(rec.Tables) != n
			}
			if len(b.Watermarks) > 0 || joined {
				if err := a.advanceTables(t, ent, rec, tables); err != nil {
					return nil, errStorage{err}
				}
			}
		}
		rec.LastResult = command.EncodeResult(nil, res)
		rec.LastIndex, rec.LastTimeMs = ent.Index, max(rec.LastTimeMs, ent.TimeMs)
		if err := t.set(producerIDKey(rec.ID), rec.encode()); err != nil {
			return nil, errStorage{err}
		}
	}
	if res.Code == command.CodeOK {
		for _, name := range sortedKeys(tables) {
			if err := t.set(tableMetaKey(name), tables[name].encode()); err != nil {
				return nil, errStorage{err}
			}
		}
	}
	return res, nil
}

// checkProducer applies fencing and deduplication. It returns a final
// result when the batch must not be applied, nil when it may.
func checkProducer(rec *producerRecord, p *command.Producer, index uint64) *command.Result {
	fail := func(c command.Code, format string, args ...any) *command.Result {
		return &command.Result{Index: index, Code: c, Message: fmt.Sprintf(format, args...)}
	}
	switch {
	case rec == nil:
		return fail(command.CodeUnknownProducer, "producer id %d is not registered", p.ID)
	case p.Epoch < rec.Epoch:
		return fail(command.CodeFenced, "producer %q epoch %d is fenced by a newer instance (epoch %d)", rec.Name, p.Epoch, rec.Epoch)
	case p.Epoch > rec.Epoch:
		return fail(command.CodeUnknownProducer, "producer %q has no epoch %d (current %d)", rec.Name, p.Epoch, rec.Epoch)
	case rec.Expired:
		return fail(command.CodeUnknownProducer, "producer %q session expired after being idle; register again", rec.Name)
	case p.Seq == 0:
		return fail(command.CodeSequenceGap, "producer %q: sequence numbers start at 1", rec.Name)
	case faulty.Enabled(faulty.SkipDedup) && p.Seq <= rec.LastSeq:
		return nil // planted bug: apply the retry again
	case p.Seq == rec.LastSeq && rec.LastResult != nil:
		orig, err := command.DecodeResult(rec.LastResult)
		if err != nil {
			return fail(command.CodeCorrupt, "producer %q: stored result unreadable: %v", rec.Name, err)
		}
		orig.Duplicate = true
		return orig
	case p.Seq <= rec.LastSeq:
		return &command.Result{Index: index, Code: command.CodeOK, Duplicate: true, LastSeq: rec.LastSeq,
			Message: fmt.Sprintf("producer %q sequence %d was already applied (last %d)", rec.Name, p.Seq, rec.LastSeq)}
	case p.Seq != rec.LastSeq+1 && !faulty.Enabled(faulty.SkipDedup):
		return fail(command.CodeSequenceGap, "producer %q: sequence %d out of order, expected %d", rec.Name, p.Seq, rec.LastSeq+1)
	}
	return nil
}

type opResult struct {
	code command.Code
	msg  string
	num  int64
}

func applyOp(et *entryTx, op *command.Op) (opResult, error) {
	switch op.Kind {
	case command.OpPut:
		et.set(et.userKey(op.Key), et.bytesValue(op.Value))
		return opResult{}, nil
	case command.OpDelete:
		et.del(et.userKey(op.Key))
		return opResult{}, nil
	case command.OpAdd, command.OpMin, command.OpMax:
		k := et.userKey(op.Key)
		raw, ok, err := et.get(k)
		if err != nil {
			return opResult{}, err
		}
		n := op.Num
		if ok {
			v, err := decodeValue(raw)
			if err != nil {
				return opResult{}, err
			}
			if v.Kind != KindInt {
				return opResult{code: command.CodeTypeMismatch, msg: fmt.Sprintf("key %q holds bytes, not an integer", op.Key)}, nil
			}
			switch op.Kind {
			case command.OpAdd:
				if (op.Num > 0 && v.Int > math.MaxInt64-op.Num) || (op.Num < 0 && v.Int < math.MinInt64-op.Num) {
					return opResult{code: command.CodeInvalid, msg: fmt.Sprintf("key %q: integer overflow", op.Key)}, nil
				}
				n = v.Int + op.Num
			case command.OpMin:
				n = min(v.Int, op.Num)
			case command.OpMax:
				n = max(v.Int, op.Num)
			}
		}
		et.set(k, et.intValue(n))
		return opResult{num: n}, nil
	case command.OpCAS:
		k := et.userKey(op.Key)
		raw, ok, err := et.get(k)
		if err != nil {
			return opResult{}, err
		}
		match := !ok && op.ExpectAbsent
		if ok && !op.ExpectAbsent {
			v, err := decodeValue(raw)
			if err != nil {
				return opResult{}, err
			}
			match = v.Kind == KindBytes && string(v.Bytes) == string(op.Expect)
		}
		if !match {
			return opResult{code: command.CodeCASFailed, msg: fmt.Sprintf("key %q does not hold the expected value", op.Key)}, nil
		}
		et.set(k, et.bytesValue(op.Value))
		return opResult{}, nil
	}
	return opResult{code: command.CodeInvalid, msg: fmt.Sprintf("unknown op kind %d", op.Kind)}, nil
}

// sweep expires idle producer sessions when the entry's log time enters a
// new SweepInterval bucket. It depends only on the log, so every replica
// sweeps at the same entry with the same result.
func (a *applier) sweep(t *txn, ent Entry) error {
	if ent.TimeMs <= 0 {
		return nil
	}
	bucket := uint64(ent.TimeMs / a.cfg.SweepInterval.Milliseconds())
	mark, err := t.sweepBucket()
	if err != nil {
		return errStorage{err}
	}
	if mark.valid && mark.bucket >= bucket {
		return nil
	}
	if err := t.setSweepBucket(bucket); err != nil {
		return errStorage{err}
	}
	if !mark.found {
		return nil // first entry with a time: nothing can have expired yet
	}
	it, err := t.b.NewIter(nil)
	if err != nil {
		return errStorage{err}
	}
	lower := keyProducerIDPrefix
	var expired []*producerRecord
	for valid := it.SeekGE(lower); valid; valid = it.Next() {
		if !hasPrefix(it.Key(), lower) {
			break
		}
		rec, err := decodeProducerRecord(it.Value())
		if err != nil {
			_ = it.Close()
			return errStorage{err}
		}
		if !rec.Expired && rec.LastTimeMs+a.cfg.ProducerIdleTTL.Milliseconds() < ent.TimeMs {
			expired = append(expired, rec)
		}
	}
	if err := it.Close(); err != nil {
		return errStorage{err}
	}
	for _, rec := range expired {
		rec.Expired, rec.LastResult = true, nil
		if err := t.set(producerIDKey(rec.ID), rec.encode()); err != nil {
			return errStorage{err}
		}
	}
	return nil
}

func hasPrefix(b, p []byte) bool { return len(b) >= len(p) && string(b[:len(p)]) == string(p) }
