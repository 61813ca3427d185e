package linearizability

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// Kind names a workload; it selects the models and checkers [Check] runs.
type Kind string

// Workload kinds.
const (
	KindRegister Kind = "register"
	KindCounter  Kind = "counter"
	KindBank     Kind = "bank"
	KindWindow   Kind = "window"
)

// OpType is the operation a history record describes.
type OpType string

// Operation types. Register: put, get, cas, delete. Counter: add, read.
// Bank: transfer, read-all. Window: window-commit, window-read, watch.
const (
	OpPut      OpType = "put"
	OpGet      OpType = "get"
	OpCAS      OpType = "cas"
	OpDelete   OpType = "delete"
	OpAdd      OpType = "add"
	OpRead     OpType = "read"
	OpTransfer OpType = "transfer"
	OpReadAll  OpType = "read-all"
	// OpWindowCommit is one attempt of a producer commit carrying window
	// events (Events) and a watermark; OpWindowRead reads one key's stored
	// windows (Windows); OpWatch is one closed window delivered by a watch
	// stream (Windows holds it, Position its resume token).
	OpWindowCommit OpType = "window-commit"
	OpWindowRead   OpType = "window-read"
	OpWatch        OpType = "watch"
)

// Outcome is what the client learned about an operation.
type Outcome string

const (
	// OutcomeOK: the operation completed and its outputs are known.
	OutcomeOK Outcome = "ok"
	// OutcomeFail: the operation definitely did not take effect (for
	// example the request was rejected before being proposed to Raft).
	// Failed operations are dropped before model checking.
	OutcomeFail Outcome = "fail"
	// OutcomeUnknown: the operation may or may not have taken effect
	// (timeout, leadership lost, connection cut). Its outputs are unknown.
	OutcomeUnknown Outcome = "unknown"
)

// Resolution markers set by [ResolveUnknowns].
const (
	ResolvedCommitted = "committed" // request id found in the committed Raft log
	ResolvedAbsent    = "absent"    // request id absent from the committed Raft log
)

// InfiniteReturn is the return time porcupine is given for operations whose
// effect is unknown: they are concurrent with everything after their call.
const InfiniteReturn int64 = math.MaxInt64

// Op is one history record, serialised as one JSON object per line in
// history.jsonl. Fields not relevant to Type are left at their zero value
// (and omitted from JSON).
type Op struct {
	// ID is a request id unique within the history. The client must send
	// it with the request so that the harness can later find it in the
	// committed Raft log (see [ResolveUnknowns]). Retries get new ids.
	ID string `json:"id"`
	// Client is the logical client (process) number, zero-based. A client
	// issues one operation at a time.
	Client int    `json:"client"`
	Type   OpType `json:"type"`

	// Key for register and counter operations.
	Key string `json:"key,omitempty"`

	// Register inputs. Value is the value written by put, and the new
	// value of cas; Expected is the value cas compares against (cas on an
	// absent key always fails).
	Value    string `json:"value,omitempty"`
	Expected string `json:"expected,omitempty"`

	// Counter inputs. (Producer, Epoch, Seq) identifies one logical
	// increment; retries of the same increment reuse them (with fresh
	// IDs) and the store must apply it at most once. If Producer is empty
	// every add record is its own logical increment.
	Producer string `json:"producer,omitempty"`
	Epoch    uint64 `json:"epoch,omitempty"`
	Seq      uint64 `json:"seq,omitempty"`
	Delta    int64  `json:"delta,omitempty"`

	// Bank inputs: move Amount from From to To in one atomic batch.
	From   string `json:"from,omitempty"`
	To     string `json:"to,omitempty"`
	Amount int64  `json:"amount,omitempty"`

	// Window inputs: the events of a window-commit (every attempt of one
	// (Producer, Epoch, Seq) carries the same events) and the watermark it
	// sends for its producer's source.
	Events    []WindowEvent `json:"events,omitempty"`
	Watermark int64         `json:"watermark,omitempty"`

	// Outputs.
	//
	// Found and Result: get's answer (Found=false means not found).
	Found  bool   `json:"found,omitempty"`
	Result string `json:"result,omitempty"`
	// Applied: for cas, whether the swap happened (required when ok); for
	// transfer, optional, false meaning the store answered definitely
	// that it rejected the transfer (e.g. insufficient funds).
	Applied *bool `json:"applied,omitempty"`
	// Total: for a counter read, the total (required when ok). For an
	// add, optional: the counter value right after this increment was
	// applied, as returned by the store; a retry answered from the
	// deduplication table must return the same value.
	Total *int64 `json:"total,omitempty"`
	// Balances: read-all's answer; accounts missing from the map read 0.
	Balances map[string]int64 `json:"balances,omitempty"`
	// Window-commit outputs (when ok): Late is how many of the commit's
	// events the store rejected as late (required), Duplicate whether it
	// answered from its deduplication state, LogIndex the raft index the
	// commit was applied at (a duplicate returns the original's).
	Late      *int64 `json:"late,omitempty"`
	Duplicate bool   `json:"duplicate,omitempty"`
	LogIndex  uint64 `json:"log_index,omitempty"`
	// Windows: a window-read's answer (the key's stored windows), or the
	// one window a watch delivered; Position is the watch's resume token.
	Windows  []WindowValue `json:"windows,omitempty"`
	Position string        `json:"position,omitempty"`

	// Call and Return are monotonic nanoseconds since the start of the
	// run. For unknown operations Return is when the client gave up; it
	// is replaced by InfiniteReturn for checking.
	Call    int64   `json:"call"`
	Return  int64   `json:"return"`
	Outcome Outcome `json:"outcome"`
	// Error is the client-side error text, for humans.
	Error string `json:"error,omitempty"`
	// Final marks the read issued after the workload stopped and the
	// cluster quiesced: it must reflect every committed operation.
	Final bool `json:"final,omitempty"`
	// Resolved is set by ResolveUnknowns ("committed" or "absent").
	Resolved string `json:"resolved,omitempty"`
}

// History is a sequence of records, in any order.
type History []Op

// OutputKnown reports whether the operation completed with outputs the
// checkers can use: outcome ok and a finite return time. Operations that
// ResolveUnknowns found in the log are ok but their outputs stay unknown.
func (o *Op) OutputKnown() bool {
	return o.Outcome == OutcomeOK && o.Return != InfiniteReturn
}

// maybeApplied reports whether the operation may have taken effect.
func (o *Op) maybeApplied() bool { return o.Outcome != OutcomeFail }

// IsWrite reports whether the operation type goes through the Raft log.
func (t OpType) IsWrite() bool {
	switch t {
	case OpPut, OpCAS, OpDelete, OpAdd, OpTransfer, OpWindowCommit:
		return true
	}
	return false
}

func (k Kind) allows(t OpType) bool {
	switch k {
	case KindRegister:
		return t == OpPut || t == OpGet || t == OpCAS || t == OpDelete
	case KindCounter:
		return t == OpAdd || t == OpRead
	case KindBank:
		return t == OpTransfer || t == OpReadAll
	case KindWindow:
		return t == OpWindowCommit || t == OpWindowRead || t == OpWatch
	}
	return false
}

// Validate checks that a history is well formed for the given workload:
// unique non-empty ids, known types and outcomes, return not before call,
// required outputs present, bank accounts declared in bank.Initial. It
// returns all problems found, joined.
func Validate(h History, kind Kind, bank BankOptions) error {
	var errs []error
	bad := func(i int, format string, args ...any) {
		if len(errs) < 20 {
			errs = append(errs, fmt.Errorf("record %d (id %q): %s", i, h[i].ID, fmt.Sprintf(format, args...)))
		}
	}
	switch kind {
	case KindRegister, KindCounter, KindBank, KindWindow:
	default:
		return fmt.Errorf("unknown workload kind %q", kind)
	}
	seen := make(map[string]int, len(h))
	for i := range h {
		op := &h[i]
		if op.ID == "" {
			bad(i, "empty request id")
		} else if j, dup := seen[op.ID]; dup {
			bad(i, "request id also used by record %d", j)
		} else {
			seen[op.ID] = i
		}
		if !kind.allows(op.Type) {
			bad(i, "operation type %q not valid for workload %q", op.Type, kind)
		}
		switch op.Outcome {
		case OutcomeOK, OutcomeFail, OutcomeUnknown:
		default:
			bad(i, "invalid outcome %q", op.Outcome)
		}
		if op.Client < 0 {
			bad(i, "negative client id")
		}
		if op.Outcome == OutcomeOK && op.Return < op.Call {
			bad(i, "return %d before call %d", op.Return, op.Call)
		}
		known := op.OutputKnown()
		switch op.Type {
		case OpCAS:
			if known && op.Applied == nil {
				bad(i, "ok cas without applied")
			}
		case OpRead:
			if known && op.Total == nil {
				bad(i, "ok counter read without total")
			}
		case OpTransfer:
			if op.From == "" || op.To == "" || op.From == op.To {
				bad(i, "transfer needs distinct from and to accounts")
			}
			for _, a := range []string{op.From, op.To} {
				if _, ok := bank.Initial[a]; !ok && a != "" {
					bad(i, "account %q not in BankOptions.Initial", a)
				}
			}
		case OpReadAll:
			for a := range op.Balances {
				if _, ok := bank.Initial[a]; !ok {
					bad(i, "read-all returned account %q not in BankOptions.Initial", a)
				}
			}
		case OpWindowCommit:
			if op.Producer == "" || op.Seq == 0 {
				bad(i, "window-commit without producer and seq")
			}
			if known && op.Late == nil {
				bad(i, "ok window-commit without late")
			}
		case OpWatch:
			if op.Outcome != OutcomeOK || len(op.Windows) != 1 || op.Position == "" {
				bad(i, "watch delivery must be ok with one window and a position")
			}
		}
	}
	if kind == KindBank && len(bank.Initial) == 0 {
		errs = append(errs, errors.New("bank workload needs BankOptions.Initial"))
	}
	if len(errs) == 20 {
		errs = append(errs, errors.New("(further problems not listed)"))
	}
	return errors.Join(errs...)
}

// WriteJSONL writes one JSON record per line.
func WriteJSONL(w io.Writer, h History) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for i := range h {
		if err := enc.Encode(&h[i]); err != nil {
			return fmt.Errorf("record %d: %w", i, err)
		}
	}
	return bw.Flush()
}

// ReadJSONL reads records written by WriteJSONL or [Recorder]. Blank lines
// are skipped; errors name the line.
func ReadJSONL(r io.Reader) (History, error) {
	br := bufio.NewReader(r)
	var h History
	for line := 1; ; line++ {
		b, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(b)) > 0 {
			var op Op
			if uerr := json.Unmarshal(b, &op); uerr != nil {
				return h, fmt.Errorf("line %d: %w", line, uerr)
			}
			h = append(h, op)
		}
		if err == io.EOF {
			return h, nil
		}
		if err != nil {
			return h, fmt.Errorf("line %d: %w", line, err)
		}
	}
}

// ReadFile reads a history.jsonl file.
func ReadFile(path string) (History, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h, err := ReadJSONL(f)
	if err != nil {
		return h, fmt.Errorf("%s: %w", path, err)
	}
	return h, nil
}

// WriteFile writes a history.jsonl file.
func WriteFile(path string, h History) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := WriteJSONL(f, h); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Recorder appends records to a JSONL stream from concurrent clients and
// provides the run clock (monotonic nanoseconds since NewRecorder).
type Recorder struct {
	start time.Time
	mu    sync.Mutex
	enc   *json.Encoder
	err   error
}

// NewRecorder starts the run clock and writes records to w. w is not
// buffered by the Recorder; each Append writes one line.
func NewRecorder(w io.Writer) *Recorder {
	return &Recorder{start: time.Now(), enc: json.NewEncoder(w)}
}

// Now returns monotonic nanoseconds since the recorder was created.
func (r *Recorder) Now() int64 { return int64(time.Since(r.start)) }

// Append writes one record. The first write error is sticky.
func (r *Recorder) Append(op Op) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = r.enc.Encode(&op)
	}
	return r.err
}

// sortByCall returns indices of h ordered by call time, then id.
func sortByCall(h History, idx []int) {
	sort.SliceStable(idx, func(a, b int) bool {
		x, y := &h[idx[a]], &h[idx[b]]
		if x.Call != y.Call {
			return x.Call < y.Call
		}
		return x.ID < y.ID
	})
}

func quote(s string) string { return fmt.Sprintf("%q", s) }

func joinIDs(ids []string, max int) string {
	if len(ids) <= max {
		return strings.Join(ids, ",")
	}
	return strings.Join(ids[:max], ",") + fmt.Sprintf(",…(+%d)", len(ids)-max)
}
