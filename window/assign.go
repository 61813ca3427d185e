package window

import (
	"fmt"
	"strconv"
)

// Window is the half-open event-time interval [Start, End) in Unix
// milliseconds. Valid windows have Start < End.
type Window struct {
	Start, End int64
}

func (w Window) String() string {
	return "[" + strconv.FormatInt(w.Start, 10) + "," + strconv.FormatInt(w.End, 10) + ")"
}

// Contains reports whether t lies in [Start, End).
func (w Window) Contains(t int64) bool { return w.Start <= t && t < w.End }

// intersects reports whether the half-open intervals share at least one
// instant. Windows that merely touch ([0,10) and [10,20)) do not intersect.
func (w Window) intersects(o Window) bool { return w.Start < o.End && o.Start < w.End }

// CheckTime returns an error wrapping ErrTimeOutOfRange unless
// MinTime <= t <= MaxTime.
func CheckTime(t int64) error {
	if t < MinTime || t > MaxTime {
		return fmt.Errorf("%w: %d is outside [%d, %d]", ErrTimeOutOfRange, t, MinTime, MaxTime)
	}
	return nil
}

// floorDiv is a/b rounded towards negative infinity, for b > 0.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// Assign returns the windows an event at time t belongs to, ordered by Start.
// Tumbling: exactly one. Hopping: every [k*Slide, k*Slide+Size) containing t
// (floor division, so negative times work). Session: the event's own
// proto-session [t, t+Gap), before merging with existing sessions (see
// MergeSession). spec must be valid.
func Assign(spec Spec, t int64) ([]Window, error) {
	if err := CheckTime(t); err != nil {
		return nil, err
	}
	switch spec.Kind {
	case Tumbling:
		start := floorDiv(t, spec.Size) * spec.Size
		return []Window{{start, start + spec.Size}}, nil
	case Hopping:
		// Window k contains t iff k*Slide <= t < k*Slide+Size, i.e.
		// floor((t-Size)/Slide) < k <= floor(t/Slide).
		first, last := floorDiv(t-spec.Size, spec.Slide)+1, floorDiv(t, spec.Slide)
		ws := make([]Window, 0, last-first+1)
		for k := first; k <= last; k++ {
			ws = append(ws, Window{k * spec.Slide, k*spec.Slide + spec.Size})
		}
		return ws, nil
	case Session:
		return []Window{{t, t + spec.Gap}}, nil
	}
	return nil, fmt.Errorf("%w: cannot assign windows for kind %s", ErrInvalidSpec, spec.Kind)
}

// MergeSession computes the effect of an event at time t on one key's
// session windows. existing are that key's sessions, sorted by Start and
// pairwise non-intersecting (as this package maintains them); it may contain
// sessions that do not intersect the event. The event's proto-session is
// own = [t, t+gap); absorbed are the existing sessions intersecting own
// (half-open, so a session ending exactly at t does not merge), in existing
// order, and merged = own ∪ absorbed = [min start, max end). If absorbed is
// exactly [merged] the event falls inside one session without extending it.
//
// Because sessions are disjoint and at least gap long, at most two sessions
// can be absorbed, and no cascading merges are possible.
func MergeSession(existing []Window, t, gap int64) (merged Window, absorbed []Window) {
	return mergeSession(existing, t, gap, false)
}

func mergeSession(existing []Window, t, gap int64, touchMerges bool) (merged Window, absorbed []Window) {
	merged = Window{t, t + gap}
	own := merged
	for _, s := range existing {
		hit := own.intersects(s)
		if touchMerges { // mutant: merge sessions that merely touch
			hit = s.Start <= own.End && own.Start <= s.End
		}
		if hit {
			absorbed = append(absorbed, s)
			merged.Start = min(merged.Start, s.Start)
			merged.End = max(merged.End, s.End)
		}
	}
	return merged, absorbed
}

// CloseTime is the watermark at which w becomes final: End+AllowedLateness.
func CloseTime(spec Spec, w Window) int64 { return w.End + spec.AllowedLateness }

// retentionFloor is how long after closing a window is kept. Sessions are
// kept at least Gap after closing: an event that would touch a closed session
// must be recognised as late, which needs the session to still be stored. A
// non-late event t has t+Gap > watermark-AllowedLateness, so it can only
// intersect sessions with End > t > watermark-AllowedLateness-Gap, and those
// have not expired when Retention >= Gap.
func (s Spec) retentionFloor() int64 {
	if s.Kind == Session {
		return max(s.Retention, s.Gap)
	}
	return s.Retention
}

// ExpireTime is the watermark at which the closed window w is evicted:
// CloseTime + Retention, where sessions use max(Retention, Gap).
func ExpireTime(spec Spec, w Window) int64 { return CloseTime(spec, w) + spec.retentionFloor() }

// IsLate reports whether window w is closed at watermark wm, i.e.
// wm >= End+AllowedLateness: events must no longer be applied to it. (The
// boundary is inclusive: at exactly End+AllowedLateness the window is final.)
func IsLate(spec Spec, w Window, wm int64) bool { return wm >= CloseTime(spec, w) }

// IsExpired reports whether w must be evicted at watermark wm.
func IsExpired(spec Spec, w Window, wm int64) bool { return wm >= ExpireTime(spec, w) }
