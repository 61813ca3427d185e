package window

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateMessages(t *testing.T) {
	for _, c := range []struct {
		spec Spec
		want string // "" = valid
	}{
		{Spec{Kind: Tumbling, Size: 60_000, Agg: AggCount}, ""},
		{Spec{Kind: Hopping, Size: 60_000, Slide: 7_000, Agg: AggSum, AllowedLateness: 1, Retention: 2}, ""},
		{Spec{Kind: Session, Gap: 1, Agg: AggDistinct, HLLPrecision: 4}, ""},
		{Spec{Kind: Session, Gap: 1, Agg: AggDistinct}, ""},
		{Spec{}, "window kind is not set"},
		{Spec{Kind: 9, Agg: AggCount}, "unknown window kind 9"},
		{Spec{Kind: Tumbling, Agg: AggCount}, "tumbling window: size 0s must be > 0"},
		{Spec{Kind: Tumbling, Size: -5000, Agg: AggCount}, "tumbling window: size -5s must be > 0"},
		{Spec{Kind: Tumbling, Size: 10, Slide: 5, Agg: AggCount}, "tumbling window: slide must be 0, got 5ms (only hopping windows have a slide)"},
		{Spec{Kind: Tumbling, Size: 10, Gap: 5, Agg: AggCount}, "tumbling window: gap must be 0, got 5ms (only session windows have a gap)"},
		{Spec{Kind: Tumbling, Size: MaxDuration + 1, Agg: AggCount}, "tumbling window: size 312749974h7m22s625ms exceeds the maximum 312749974h7m22s624ms"},
		{Spec{Kind: Hopping, Size: 60_000, Agg: AggCount}, "hopping window: slide 0s must be > 0"},
		{Spec{Kind: Hopping, Size: 60_000, Slide: 120_000, Agg: AggCount}, "hopping window: slide 2m must be <= size 1m"},
		{Spec{Kind: Hopping, Size: 86_400_000, Slide: 1000, Agg: AggCount}, "hopping window: size 24h / slide 1s puts each event into 86400 windows, more than the limit 4096"},
		{Spec{Kind: Session, Agg: AggCount}, "session window: gap 0s must be > 0"},
		{Spec{Kind: Session, Gap: 5, Size: 5, Agg: AggCount}, "session window: size must be 0, got 5ms (only tumbling and hopping windows have a size)"},
		{Spec{Kind: Tumbling, Size: 10}, "aggregation is not set"},
		{Spec{Kind: Tumbling, Size: 10, Agg: 42}, "unknown aggregation 42"},
		{Spec{Kind: Tumbling, Size: 10, Agg: AggSum, HLLPrecision: 14}, "sum: hll precision must be 0, got 14"},
		{Spec{Kind: Tumbling, Size: 10, Agg: AggDistinct, HLLPrecision: 19}, "distinct: hll precision 19 must be 0 (default 14) or in [4, 18]"},
		{Spec{Kind: Tumbling, Size: 10, Agg: AggMin, AllowedLateness: -1}, "allowed lateness -1ms must be >= 0"},
		{Spec{Kind: Tumbling, Size: 10, Agg: AggMax, Retention: -3_600_000}, "retention -1h must be >= 0"},
	} {
		err := c.spec.Validate()
		if c.want == "" {
			if err != nil {
				t.Errorf("%+v: unexpected error %v", c.spec, err)
			}
			continue
		}
		if err == nil || !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want ErrInvalidSpec containing %q", c.spec, err, c.want)
		}
	}
}

func TestParseSpec(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Spec
		err  string
	}{
		{in: "tumbling 1m count", want: Spec{Kind: Tumbling, Size: 60_000, Agg: AggCount}},
		{in: "  Hopping 1m 10s AVG lateness=5s retention=7d", want: Spec{Kind: Hopping, Size: 60_000, Slide: 10_000, Agg: AggMean, AllowedLateness: 5000, Retention: 7 * 86_400_000}},
		{in: "session 30s distinct precision=12 retention=1h30m", want: Spec{Kind: Session, Gap: 30_000, Agg: AggDistinct, HLLPrecision: 12, Retention: 5_400_000}},
		{in: "", err: "empty spec"},
		{in: "sliding 1m count", err: `unknown window kind "sliding"`},
		{in: "hopping 1m count", err: `want "hopping SIZE SLIDE AGG"`},
		{in: "tumbling 1m median", err: `unknown aggregation "median"`},
		{in: "tumbling 1x count", err: `"1x"`},
		{in: "tumbling 1.5ms count", err: "not a whole number of milliseconds"},
		{in: "tumbling 1m count lateness=1s lateness=2s", err: "bad or repeated option"},
		{in: "tumbling 1m count foo=1", err: `unknown option "foo=1"`},
		{in: "tumbling 1m distinct precision=x", err: `precision "x"`},
		{in: "hopping 1m 7s sum retention=-1s", err: "retention -1s must be >= 0"},
	} {
		got, err := ParseSpec(c.in)
		if c.err != "" {
			if err == nil || !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseSpec(%q) = %v, want ErrInvalidSpec containing %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseSpec(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
			continue
		}
		again, err := ParseSpec(got.String())
		if err != nil || again != got {
			t.Errorf("round trip of %q via %q: %+v, %v", c.in, got.String(), again, err)
		}
	}
}

func TestDurations(t *testing.T) {
	for ms, s := range map[int64]string{0: "0s", 1: "1ms", 999: "999ms", 1000: "1s", 1500: "1s500ms", 60_000: "1m", 67_000: "1m7s",
		5_400_000: "1h30m", 86_400_000: "24h", -5000: "-5s", -1 << 63: "-2562047788015h12m55s808ms"} {
		if got := FormatDuration(ms); got != s {
			t.Errorf("FormatDuration(%d) = %q, want %q", ms, got, s)
		}
		if ms == -1<<63 {
			continue // beyond time.Duration
		}
		if back, err := ParseDuration(s); err != nil || back != ms {
			t.Errorf("ParseDuration(%q) = %d, %v; want %d", s, back, err, ms)
		}
	}
	for _, bad := range []string{"", "1", "abc", "1us", "0.5ms", "1.5d", "d", "99999999999999d"} {
		if _, err := ParseDuration(bad); !errors.Is(err, ErrInvalidDuration) {
			t.Errorf("ParseDuration(%q) = %v, want ErrInvalidDuration", bad, err)
		}
	}
	if d, err := ParseDuration("2d"); err != nil || d != 2*86_400_000 {
		t.Errorf("ParseDuration(2d) = %d, %v", d, err)
	}
}
