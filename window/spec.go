package window

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Limits. They keep every derived time (window bounds, close and expiry
// times) far away from int64 overflow, so no arithmetic in this package needs
// overflow checks beyond validating inputs against these bounds.
const (
	// MinTime and MaxTime bound event times (Unix milliseconds, about
	// ±36 million years). Events outside are rejected with ErrTimeOutOfRange.
	MinTime int64 = -(1 << 60)
	MaxTime int64 = 1 << 60
	// MaxDuration bounds every duration in a Spec (about 35,700 years).
	MaxDuration int64 = 1 << 50
	// MaxWindowsPerEvent bounds how many hopping windows one event may fall
	// into (roughly SIZE/SLIDE), i.e. how many writes one event can cause.
	MaxWindowsPerEvent = 4096
	// DefaultHLLPrecision is the HyperLogLog precision used when
	// Spec.HLLPrecision is 0 (2^14 registers, ~0.8% standard error).
	DefaultHLLPrecision uint8 = 14
	// MinHLLPrecision and MaxHLLPrecision are the bounds supported by
	// github.com/axiomhq/hyperloglog.
	MinHLLPrecision uint8 = 4
	MaxHLLPrecision uint8 = 18
)

// MinWatermark is the watermark of a table nothing has been promised about
// yet. No window is closed at MinWatermark.
const MinWatermark int64 = -1 << 63

// Kind is the window kind of a table.
type Kind uint8

const (
	// KindUnset is the zero Kind; it is invalid.
	KindUnset Kind = iota
	// Tumbling windows [k*Size, (k+1)*Size), aligned to the Unix epoch.
	Tumbling
	// Hopping windows [k*Slide, k*Slide+Size), aligned to the Unix epoch.
	Hopping
	// Session windows: per key, maximal runs of events closer than Gap.
	Session
)

var kindNames = [...]string{KindUnset: "unset", Tumbling: "tumbling", Hopping: "hopping", Session: "session"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// ParseKind parses "tumbling", "hopping" or "session" (case-insensitive).
func ParseKind(s string) (Kind, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "tumbling":
		return Tumbling, nil
	case "hopping":
		return Hopping, nil
	case "session":
		return Session, nil
	}
	return KindUnset, fmt.Errorf("%w: unknown window kind %q (want tumbling, hopping or session)", ErrInvalidSpec, s)
}

// AggKind is the aggregation a table computes per window.
type AggKind uint8

const (
	// AggUnset is the zero AggKind; it is invalid.
	AggUnset AggKind = iota
	AggCount
	AggSum
	AggMin
	AggMax
	AggMean
	// AggDistinct is an approximate distinct count (HyperLogLog).
	AggDistinct
)

var aggNames = [...]string{AggUnset: "unset", AggCount: "count", AggSum: "sum", AggMin: "min", AggMax: "max", AggMean: "mean", AggDistinct: "distinct"}

func (a AggKind) String() string {
	if int(a) < len(aggNames) {
		return aggNames[a]
	}
	return fmt.Sprintf("agg(%d)", uint8(a))
}

func (a AggKind) valid() bool { return a >= AggCount && a <= AggDistinct }

// ParseAggKind parses count, sum, min, max, mean (alias avg) or distinct
// (alias distinct_approx), case-insensitively.
func ParseAggKind(s string) (AggKind, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "count":
		return AggCount, nil
	case "sum":
		return AggSum, nil
	case "min":
		return AggMin, nil
	case "max":
		return AggMax, nil
	case "mean", "avg":
		return AggMean, nil
	case "distinct", "distinct_approx":
		return AggDistinct, nil
	}
	return AggUnset, fmt.Errorf("%w: unknown aggregation %q (want count, sum, min, max, mean or distinct)", ErrInvalidSpec, s)
}

// Spec describes how a table windows and aggregates its events. All
// durations are int64 milliseconds. Fields that do not apply to Kind must be
// zero, so that two valid Specs behave identically iff they are ==.
type Spec struct {
	Kind  Kind
	Size  int64 // Tumbling and Hopping: window length.
	Slide int64 // Hopping only: distance between window starts.
	Gap   int64 // Session only: inactivity gap.

	Agg AggKind
	// HLLPrecision is the HyperLogLog precision for AggDistinct, 0 meaning
	// DefaultHLLPrecision. Must be 0 for other aggregations.
	HLLPrecision uint8

	// AllowedLateness: a window accepts events until the watermark reaches
	// End+AllowedLateness, at which point it is closed and final.
	AllowedLateness int64
	// Retention: a closed window is kept (queryable) until the watermark
	// reaches End+AllowedLateness+Retention (sessions: see ExpireTime).
	Retention int64
}

// Validate reports the first thing wrong with s, wrapping ErrInvalidSpec.
func (s Spec) Validate() error {
	if err := s.validate(); err != nil {
		return fmt.Errorf("%w: %s", ErrInvalidSpec, err)
	}
	return nil
}

func (s Spec) validate() error {
	d := FormatDuration
	positive := func(what string, v int64) error {
		if v <= 0 {
			return fmt.Errorf("%s window: %s %s must be > 0", s.Kind, what, d(v))
		}
		if v > MaxDuration {
			return fmt.Errorf("%s window: %s %s exceeds the maximum %s", s.Kind, what, d(v), d(MaxDuration))
		}
		return nil
	}
	unset := func(what string, v int64) error {
		if v != 0 {
			return fmt.Errorf("%s window: %s must be 0, got %s (only %s windows have a %s)", s.Kind, what, d(v), map[string]string{"size": "tumbling and hopping", "slide": "hopping", "gap": "session"}[what], what)
		}
		return nil
	}
	var checks []error
	switch s.Kind {
	case Tumbling:
		checks = []error{positive("size", s.Size), unset("slide", s.Slide), unset("gap", s.Gap)}
	case Hopping:
		checks = []error{positive("size", s.Size), positive("slide", s.Slide), unset("gap", s.Gap)}
		if s.Size > 0 && s.Slide > s.Size {
			checks = append(checks, fmt.Errorf("hopping window: slide %s must be <= size %s", d(s.Slide), d(s.Size)))
		}
		if s.Size > 0 && s.Slide > 0 && (s.Size+s.Slide-1)/s.Slide > MaxWindowsPerEvent {
			checks = append(checks, fmt.Errorf("hopping window: size %s / slide %s puts each event into %d windows, more than the limit %d",
				d(s.Size), d(s.Slide), (s.Size+s.Slide-1)/s.Slide, MaxWindowsPerEvent))
		}
	case Session:
		checks = []error{positive("gap", s.Gap), unset("size", s.Size), unset("slide", s.Slide)}
	case KindUnset:
		return fmt.Errorf("window kind is not set (want tumbling, hopping or session)")
	default:
		return fmt.Errorf("unknown window kind %d (want tumbling, hopping or session)", uint8(s.Kind))
	}
	for _, err := range checks {
		if err != nil {
			return err
		}
	}
	switch {
	case s.Agg == AggUnset:
		return fmt.Errorf("aggregation is not set (want count, sum, min, max, mean or distinct)")
	case !s.Agg.valid():
		return fmt.Errorf("unknown aggregation %d (want count, sum, min, max, mean or distinct)", uint8(s.Agg))
	case s.Agg == AggDistinct && s.HLLPrecision != 0 && (s.HLLPrecision < MinHLLPrecision || s.HLLPrecision > MaxHLLPrecision):
		return fmt.Errorf("distinct: hll precision %d must be 0 (default %d) or in [%d, %d]", s.HLLPrecision, DefaultHLLPrecision, MinHLLPrecision, MaxHLLPrecision)
	case s.Agg != AggDistinct && s.HLLPrecision != 0:
		return fmt.Errorf("%s: hll precision must be 0, got %d (only distinct uses it)", s.Agg, s.HLLPrecision)
	}
	for _, c := range []struct {
		what string
		v    int64
	}{{"allowed lateness", s.AllowedLateness}, {"retention", s.Retention}} {
		if c.v < 0 {
			return fmt.Errorf("%s %s must be >= 0", c.what, d(c.v))
		}
		if c.v > MaxDuration {
			return fmt.Errorf("%s %s exceeds the maximum %s", c.what, d(c.v), d(MaxDuration))
		}
	}
	return nil
}

// hllPrecision is the effective HyperLogLog precision.
func (s Spec) hllPrecision() uint8 {
	if s.HLLPrecision == 0 {
		return DefaultHLLPrecision
	}
	return s.HLLPrecision
}

// String renders s in the syntax ParseSpec accepts; ParseSpec(s.String())
// == s for every valid s, so the string is also a canonical serialization.
func (s Spec) String() string {
	var b strings.Builder
	b.WriteString(s.Kind.String())
	switch s.Kind {
	case Tumbling:
		fmt.Fprintf(&b, " %s", FormatDuration(s.Size))
	case Hopping:
		fmt.Fprintf(&b, " %s %s", FormatDuration(s.Size), FormatDuration(s.Slide))
	case Session:
		fmt.Fprintf(&b, " %s", FormatDuration(s.Gap))
	}
	fmt.Fprintf(&b, " %s", s.Agg)
	if s.HLLPrecision != 0 {
		fmt.Fprintf(&b, " precision=%d", s.HLLPrecision)
	}
	fmt.Fprintf(&b, " lateness=%s retention=%s", FormatDuration(s.AllowedLateness), FormatDuration(s.Retention))
	return b.String()
}

// ParseSpec parses a one-line table spec and validates it:
//
//	tumbling SIZE AGG [lateness=DUR] [retention=DUR] [precision=N]
//	hopping SIZE SLIDE AGG [options]
//	session GAP AGG [options]
//
// e.g. "hopping 1m 10s mean lateness=5s retention=1h". Durations use
// ParseDuration syntax; omitted options are 0.
func ParseSpec(str string) (Spec, error) {
	s, err := parseSpec(strings.Fields(str))
	if err != nil {
		return Spec{}, fmt.Errorf("parse spec %q: %w", str, err)
	}
	return s, s.Validate()
}

func parseSpec(f []string) (Spec, error) {
	var s Spec
	if len(f) == 0 {
		return s, fmt.Errorf("%w: empty spec (want e.g. \"tumbling 1m count\")", ErrInvalidSpec)
	}
	kind, err := ParseKind(f[0])
	if err != nil {
		return s, err
	}
	s.Kind = kind
	nd := map[Kind]int{Tumbling: 1, Hopping: 2, Session: 1}[kind]
	usage := map[Kind]string{Tumbling: "tumbling SIZE AGG", Hopping: "hopping SIZE SLIDE AGG", Session: "session GAP AGG"}[kind]
	if len(f) < 2+nd {
		return s, fmt.Errorf("%w: want %q followed by options", ErrInvalidSpec, usage)
	}
	var ds [2]int64
	for i := 0; i < nd; i++ {
		if ds[i], err = ParseDuration(f[1+i]); err != nil {
			return s, fmt.Errorf("%w: %w (in %q)", ErrInvalidSpec, err, usage)
		}
	}
	switch kind {
	case Tumbling:
		s.Size = ds[0]
	case Hopping:
		s.Size, s.Slide = ds[0], ds[1]
	case Session:
		s.Gap = ds[0]
	}
	if s.Agg, err = ParseAggKind(f[1+nd]); err != nil {
		return s, err
	}
	seen := map[string]bool{}
	for _, opt := range f[2+nd:] {
		k, v, ok := strings.Cut(opt, "=")
		if !ok || seen[k] {
			return s, fmt.Errorf("%w: bad or repeated option %q (want lateness=DUR, retention=DUR or precision=N)", ErrInvalidSpec, opt)
		}
		seen[k] = true
		switch k {
		case "lateness", "retention":
			dur, err := ParseDuration(v)
			if err != nil {
				return s, fmt.Errorf("%w: %s: %w", ErrInvalidSpec, k, err)
			}
			if k == "lateness" {
				s.AllowedLateness = dur
			} else {
				s.Retention = dur
			}
		case "precision":
			p, err := strconv.ParseUint(v, 10, 8)
			if err != nil {
				return s, fmt.Errorf("%w: precision %q is not an integer in [%d, %d]", ErrInvalidSpec, v, MinHLLPrecision, MaxHLLPrecision)
			}
			s.HLLPrecision = uint8(p)
		default:
			return s, fmt.Errorf("%w: unknown option %q (want lateness=DUR, retention=DUR or precision=N)", ErrInvalidSpec, opt)
		}
	}
	return s, nil
}

// ParseDuration parses a Go duration string ("1m", "1h30m", "250ms", "0")
// or a whole number of days ("7d") into milliseconds. Durations that are not
// a whole number of milliseconds are rejected rather than truncated.
func ParseDuration(s string) (int64, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil || n > MaxDuration/86_400_000 || n < -MaxDuration/86_400_000 {
			return 0, fmt.Errorf("%w: %q (days must be a whole number, at most %d)", ErrInvalidDuration, s, MaxDuration/86_400_000)
		}
		return n * 86_400_000, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%w: %q (want e.g. 1m, 1h30m, 250ms or 7d)", ErrInvalidDuration, s)
	}
	if d%time.Millisecond != 0 {
		return 0, fmt.Errorf("%w: %q is not a whole number of milliseconds", ErrInvalidDuration, s)
	}
	return int64(d / time.Millisecond), nil
}

// FormatDuration renders ms milliseconds the way errors and Spec.String do:
// "0s", "250ms", "1m7s", "1h30m", "-5s", "1s500ms". ParseDuration accepts the
// result for every value within time.Duration's range.
func FormatDuration(ms int64) string {
	if ms == 0 {
		return "0s"
	}
	var b strings.Builder
	u := uint64(ms)
	if ms < 0 {
		b.WriteByte('-')
		u = -u
	}
	for _, unit := range []struct {
		n    uint64
		name string
	}{{3_600_000, "h"}, {60_000, "m"}, {1000, "s"}, {1, "ms"}} {
		if q := u / unit.n; q > 0 {
			fmt.Fprintf(&b, "%d%s", q, unit.name)
			u -= q * unit.n
		}
	}
	return b.String()
}
