package linearizability

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// Verdict is the overall outcome of Check.
type Verdict string

const (
	// VerdictOK: every checker passed and porcupine finished every partition.
	VerdictOK Verdict = "ok"
	// VerdictIllegal: at least one anomaly was found.
	VerdictIllegal Verdict = "illegal"
	// VerdictUnknown: no anomaly found, but porcupine timed out on at
	// least one partition, so linearizability is not established.
	VerdictUnknown Verdict = "unknown"
	// VerdictInvalid: the history is malformed (see Result.Error); nothing
	// was checked.
	VerdictInvalid Verdict = "invalid"
)

// Checker names used in Anomaly.Checker.
const (
	CheckerLinearizability = "linearizability" // porcupine
	CheckerExactlyOnce     = "exactly-once"
	CheckerBankInvariant   = "bank-invariant"
)

// AnomalyType classifies an anomaly.
type AnomalyType string

const (
	// AnomalyNonLinearizable: porcupine found no linearization of a
	// partition (a key, or the whole bank).
	AnomalyNonLinearizable AnomalyType = "non-linearizable"
	// AnomalyLostIncrement: an increment that had to be visible is not.
	AnomalyLostIncrement AnomalyType = "lost-increment"
	// AnomalyDuplicateIncrement: an increment is counted more than once.
	AnomalyDuplicateIncrement AnomalyType = "duplicate-increment"
	// AnomalyPhantomIncrement: a failed, or not yet issued, increment is
	// visible.
	AnomalyPhantomIncrement AnomalyType = "phantom-increment"
	// AnomalyTotalOutOfRange: a counter read outside the possible range
	// (used when increments are not individually identifiable).
	AnomalyTotalOutOfRange AnomalyType = "total-out-of-range"
	// AnomalyConflictingResults: acknowledged attempts of one (producer,
	// epoch, seq) returned different results.
	AnomalyConflictingResults AnomalyType = "conflicting-results"
	// AnomalyConflictingInputs: one (producer, epoch, seq) was used for
	// different key or delta (a harness bug, or a broken dedup key).
	AnomalyConflictingInputs AnomalyType = "conflicting-inputs"
	// AnomalyTotalChanged: a bank read whose balances do not sum to the
	// initial total.
	AnomalyTotalChanged AnomalyType = "bank-total-changed"
	// AnomalyNegativeBalance: a bank read with a negative balance.
	AnomalyNegativeBalance AnomalyType = "negative-balance"
)

// Anomaly is one violation found by a checker.
type Anomaly struct {
	Checker string      `json:"checker"`
	Type    AnomalyType `json:"type"`
	// Key is the counter/register key; empty for bank.
	Key string `json:"key,omitempty"`
	// Ops are the request ids involved (the offending read first).
	Ops         []string `json:"ops,omitempty"`
	Description string   `json:"description"`
	// Occurrences counts reads showing the same problem (reported once).
	Occurrences int `json:"occurrences,omitempty"`
	// Visualization is the porcupine HTML file for this partition, if any.
	Visualization string `json:"visualization,omitempty"`
}

func (a Anomaly) String() string {
	s := fmt.Sprintf("[%s/%s] %s", a.Checker, a.Type, a.Description)
	if a.Occurrences > 1 {
		s += fmt.Sprintf(" (seen in %d reads)", a.Occurrences)
	}
	if a.Visualization != "" {
		s += " — see " + a.Visualization
	}
	return s
}

// PartitionResult is porcupine's answer for one partition.
type PartitionResult struct {
	Key    string `json:"key"` // empty for the single bank partition
	Ops    int    `json:"ops"` // porcupine operations (after merging/dropping)
	Result string `json:"result"`
	// Visualization is the HTML file written for an illegal partition.
	Visualization string `json:"visualization,omitempty"`
}

// Stats counts the records of a history by outcome.
type Stats struct {
	Records int `json:"records"`
	OK      int `json:"ok"`
	Fail    int `json:"fail"`
	Unknown int `json:"unknown"`
	// Committed counts ok records with unknown output (ResolveUnknowns).
	Committed int `json:"committed"`
}

// Result is the structured outcome of Check; it marshals to JSON.
type Result struct {
	Kind           Kind              `json:"kind"`
	Verdict        Verdict           `json:"verdict"`
	Error          string            `json:"error,omitempty"`
	Stats          Stats             `json:"stats"`
	Partitions     []PartitionResult `json:"partitions,omitempty"`
	Anomalies      []Anomaly         `json:"anomalies,omitempty"`
	Counters       []CounterSummary  `json:"counters,omitempty"`
	Windows        *WindowSummary    `json:"windows,omitempty"`
	Visualizations []string          `json:"visualizations,omitempty"`
	Elapsed        time.Duration     `json:"elapsed_ns"`
}

// OK reports whether the verdict is VerdictOK.
func (r Result) OK() bool { return r.Verdict == VerdictOK }

// Summary renders the result for logs, one anomaly per line.
func (r Result) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s (%d records: %d ok, %d fail, %d unknown, %d committed-unknown; %d partitions; %s)",
		r.Kind, r.Verdict, r.Stats.Records, r.Stats.OK, r.Stats.Fail, r.Stats.Unknown, r.Stats.Committed,
		len(r.Partitions), r.Elapsed.Round(time.Millisecond))
	if r.Error != "" {
		fmt.Fprintf(&b, "\n  error: %s", r.Error)
	}
	for _, p := range r.Partitions {
		if p.Result != string(porcupine.Ok) {
			fmt.Fprintf(&b, "\n  partition %q (%d ops): %s", p.Key, p.Ops, p.Result)
		}
	}
	for _, a := range r.Anomalies {
		fmt.Fprintf(&b, "\n  %s", a)
	}
	return b.String()
}

// Options configures Check.
type Options struct {
	// Timeout bounds porcupine's total time for the whole history (shared
	// by all partitions). Partitions not finished in time are Unknown.
	// Zero means no limit.
	Timeout time.Duration
	// VisualizeDir, if set, receives one porcupine HTML file per illegal
	// partition (created if missing).
	VisualizeDir string
	// Bank describes the bank workload (required for KindBank).
	Bank BankOptions
	// Window describes the window workload's table (required for
	// KindWindow).
	Window WindowOptions
}

// Check validates h and runs the checkers for kind:
//
//   - register: porcupine with RegisterModel, per key;
//   - counter: porcupine with CounterModel, per key, and CheckExactlyOnce;
//   - bank: porcupine with BankModel (one partition) and CheckBankInvariants;
//   - window: CheckWindows (no porcupine model).
//
// The verdict is Illegal if any checker reports an anomaly, else Unknown if
// porcupine timed out on some partition, else OK.
func Check(h History, kind Kind, opts Options) (res Result) {
	start := time.Now()
	res = Result{Kind: kind, Stats: stats(h)}
	defer func() { res.Elapsed = time.Since(start) }()
	if err := Validate(h, kind, opts.Bank); err != nil {
		res.Verdict, res.Error = VerdictInvalid, err.Error()
		return res
	}
	var model porcupine.Model
	var ops []porcupine.Operation
	switch kind {
	case KindRegister:
		model, ops = RegisterModel(), RegisterOperations(h)
	case KindCounter:
		model, ops = CounterModel(), CounterOperations(h)
		a, sums := CheckExactlyOnce(h)
		res.Anomalies, res.Counters = append(res.Anomalies, a...), sums
	case KindBank:
		var err error
		if ops, err = BankOperations(h, opts.Bank); err != nil {
			res.Verdict, res.Error = VerdictInvalid, err.Error()
			return res
		}
		model = BankModel(opts.Bank)
		res.Anomalies = append(res.Anomalies, CheckBankInvariants(h, opts.Bank)...)
	case KindWindow:
		if opts.Window.Size <= 0 {
			res.Verdict, res.Error = VerdictInvalid, "window workload needs WindowOptions.Size"
			return res
		}
		a, sum := CheckWindows(h, opts.Window)
		res.Anomalies, res.Windows = append(res.Anomalies, a...), &sum
	}
	lin, parts, err := checkPartitions(model, ops, kind, opts)
	res.Partitions = parts
	// Linearizability anomalies first: they carry the visualizations.
	res.Anomalies = append(lin, res.Anomalies...)
	for _, p := range parts {
		if p.Visualization != "" {
			res.Visualizations = append(res.Visualizations, p.Visualization)
		}
	}
	if err != nil {
		res.Error = err.Error()
	}
	switch {
	case len(res.Anomalies) > 0:
		res.Verdict = VerdictIllegal
	case anyUnknown(parts):
		res.Verdict = VerdictUnknown
	default:
		res.Verdict = VerdictOK
	}
	return res
}

func stats(h History) Stats {
	s := Stats{Records: len(h)}
	for i := range h {
		switch h[i].Outcome {
		case OutcomeOK:
			s.OK++
			if !h[i].OutputKnown() {
				s.Committed++
			}
		case OutcomeFail:
			s.Fail++
		case OutcomeUnknown:
			s.Unknown++
		}
	}
	return s
}

func anyUnknown(parts []PartitionResult) bool {
	for _, p := range parts {
		if p.Result == string(porcupine.Unknown) {
			return true
		}
	}
	return false
}

// checkPartitions splits ops with model.Partition and checks each
// partition on its own (GOMAXPROCS at a time) so that results, suspects and
// visualizations are per key. All partitions share one deadline.
func checkPartitions(model porcupine.Model, ops []porcupine.Operation, kind Kind, opts Options) ([]Anomaly, []PartitionResult, error) {
	var partitions [][]porcupine.Operation
	if model.Partition != nil {
		partitions = model.Partition(ops)
	} else if len(ops) > 0 {
		partitions = [][]porcupine.Operation{ops}
	}
	single := model
	single.Partition = nil
	var deadline time.Time
	if opts.Timeout > 0 {
		deadline = time.Now().Add(opts.Timeout)
	}
	results := make([]PartitionResult, len(partitions))
	anomalies := make([]*Anomaly, len(partitions))
	errs := make([]error, len(partitions))
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < min(runtime.GOMAXPROCS(0), len(partitions)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				results[i], anomalies[i], errs[i] = checkPartition(single, partitions[i], i, kind, deadline, opts.VisualizeDir)
			}
		}()
	}
	for i := range partitions {
		next <- i
	}
	close(next)
	wg.Wait()
	var out []Anomaly
	for _, a := range anomalies {
		if a != nil {
			out = append(out, *a)
		}
	}
	var errList []string
	for _, err := range errs {
		if err != nil {
			errList = append(errList, err.Error())
		}
	}
	if len(errList) > 0 {
		return out, results, fmt.Errorf("%s", strings.Join(errList, "; "))
	}
	return out, results, nil
}

func checkPartition(model porcupine.Model, ops []porcupine.Operation, n int, kind Kind, deadline time.Time, dir string) (PartitionResult, *Anomaly, error) {
	key := partitionName(ops)
	pr := PartitionResult{Key: key, Ops: len(ops)}
	var timeout time.Duration
	if !deadline.IsZero() {
		if timeout = time.Until(deadline); timeout <= 0 {
			pr.Result = string(porcupine.Unknown)
			return pr, nil, nil
		}
	}
	ops = visualRows(ops)
	res, info := porcupine.CheckOperationsVerbose(model, ops, timeout)
	pr.Result = string(res)
	if res != porcupine.Illegal {
		return pr, nil, nil
	}
	a := &Anomaly{
		Checker: CheckerLinearizability, Type: AnomalyNonLinearizable, Key: key, Occurrences: 1,
		Description: describeIllegal(model, ops, info, kind, key),
	}
	for _, op := range suspects(ops, info) {
		a.Ops = append(a.Ops, op.Metadata.(opMeta).ids...)
	}
	var err error
	if dir != "" {
		if err = os.MkdirAll(dir, 0o755); err == nil {
			path := filepath.Join(dir, fmt.Sprintf("%s-%03d-%s.html", kind, n, sanitize(key)))
			if err = porcupine.VisualizePath(model, info, path); err == nil {
				pr.Visualization, a.Visualization = path, path
			}
		}
		if err != nil {
			err = fmt.Errorf("visualizing partition %q: %w", key, err)
		}
	}
	return pr, a, err
}

// visualRows renumbers client ids densely within a partition and moves
// operations with infinite return to a separate row per client, so that
// they do not hide the client's later operations in the HTML.
func visualRows(ops []porcupine.Operation) []porcupine.Operation {
	type row struct {
		client  int
		pending bool
	}
	rows := make([]row, 0)
	for _, op := range ops {
		rows = append(rows, row{op.ClientId, op.Return == InfiniteReturn})
	}
	sort.Slice(rows, func(a, b int) bool {
		if rows[a].client != rows[b].client {
			return rows[a].client < rows[b].client
		}
		return !rows[a].pending && rows[b].pending
	})
	ids := make(map[row]int)
	for _, r := range rows {
		if _, ok := ids[r]; !ok {
			ids[r] = len(ids)
		}
	}
	out := make([]porcupine.Operation, len(ops))
	for i, op := range ops {
		out[i] = op
		out[i].ClientId = ids[row{op.ClientId, op.Return == InfiniteReturn}]
	}
	return out
}

// suspects returns the operations that appear in no partial linearization
// porcupine found, in call order: the ones no order could explain.
func suspects(ops []porcupine.Operation, info porcupine.LinearizationInfo) []porcupine.Operation {
	covered := make(map[int]bool)
	for _, partition := range info.PartialLinearizations() {
		for _, lin := range partition {
			for _, id := range lin {
				covered[id] = true
			}
		}
	}
	var out []porcupine.Operation
	for i, op := range ops {
		if !covered[i] {
			out = append(out, op)
		}
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].Call < out[b].Call })
	return out
}

func describeIllegal(model porcupine.Model, ops []porcupine.Operation, info porcupine.LinearizationInfo, kind Kind, key string) string {
	longest := 0
	for _, partition := range info.PartialLinearizations() {
		for _, lin := range partition {
			longest = max(longest, len(lin))
		}
	}
	where := fmt.Sprintf("key %q", key)
	if key == "" {
		where = string(kind) + " history"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s is not linearizable: no order of its %d operations is consistent with the %s model (longest linearizable prefix found: %d of %d)",
		where, len(ops), kind, longest, len(ops))
	sus := suspects(ops, info)
	if len(sus) > 0 {
		b.WriteString("; operations that fit no linearization: ")
		for i, op := range sus {
			if i == 5 {
				fmt.Fprintf(&b, "; …and %d more", len(sus)-5)
				break
			}
			if i > 0 {
				b.WriteString("; ")
			}
			ret := "∞"
			if op.Return != InfiniteReturn {
				ret = fmt.Sprint(op.Return)
			}
			fmt.Fprintf(&b, "%s [%s, call %d, return %s]", model.DescribeOperation(op.Input, op.Output), op.Metadata, op.Call, ret)
		}
	}
	return b.String()
}

func sanitize(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < 128 && (r == '-' || r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
		if b.Len() >= 64 {
			break
		}
	}
	if b.Len() == 0 {
		return "all"
	}
	return b.String()
}
