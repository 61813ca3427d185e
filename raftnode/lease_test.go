package raftnode

import (
	"testing"
	"time"
)

func TestLease(t *testing.T) {
	var now time.Duration
	l := &lease{since: func() time.Duration { return now }}
	const d = 500 * time.Millisecond
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	var g0, gHeld, gOld uint64
	steps := []struct {
		at    time.Duration
		do    func()
		valid bool
	}{
		{at: 0, valid: false}, // none yet
		{at: ms(5), do: func() { g0, _ = l.begin() }, valid: false},
		{at: ms(10), do: func() { l.extend(g0, ms(5), d) }, valid: true},
		{at: ms(504), valid: true},
		{at: ms(505), valid: false}, // measured from the check's start, not from extend
		// a check that began earlier never shortens a later lease
		{at: ms(600), do: func() { l.extend(g0, ms(590), d) }, valid: true},
		{at: ms(601), do: func() { l.extend(g0, ms(100), d) }, valid: true},
		{at: ms(1089), valid: true},
		{at: ms(1090), valid: false},
		{at: ms(1100), do: func() { l.extend(g0, ms(1100), d) }, valid: true},
		// leadership lost: ended, and a check begun before cannot renew it
		{at: ms(1101), do: func() { gOld, _ = l.begin(); l.revoke() }, valid: false},
		{at: ms(1102), do: func() { l.extend(gOld, ms(1101), d) }, valid: false},
		{at: ms(1103), do: func() { g0, _ = l.begin(); l.extend(g0, ms(1103), d) }, valid: true},
		// a transfer: ended at once; no check renews it while it runs, nor
		// one begun during it after it ends
		{at: ms(1200), do: func() { gOld, _ = l.begin(); l.hold() }, valid: false},
		{at: ms(1201), do: func() { l.extend(gOld, ms(1200), d) }, valid: false},
		{at: ms(1202), do: func() { gHeld, _ = l.begin(); l.extend(gHeld, ms(1202), d) }, valid: false},
		{at: ms(1300), do: func() { gHeld, _ = l.begin(); l.release() }, valid: false},
		{at: ms(1301), do: func() { l.extend(gHeld, ms(1300), d) }, valid: false},
		{at: ms(1302), do: func() { g0, _ = l.begin(); l.extend(g0, ms(1302), d) }, valid: true},
		{at: ms(1801), valid: true},
		{at: ms(1802), valid: false},
	}
	for i, s := range steps {
		now = s.at
		if s.do != nil {
			s.do()
		}
		if got := l.valid(); got != s.valid {
			t.Errorf("step %d at %v: valid = %v, want %v", i, s.at, got, s.valid)
		}
	}
}
