package raftnode

import (
	"testing"
	"time"
)

func TestLease(t *testing.T) {
	var now time.Duration
	l := &lease{since: func() time.Duration { return now }}
	steps := []struct {
		at    time.Duration
		do    func()
		valid bool
	}{
		{at: 0, valid: false}, // none yet
		{at: 10 * time.Millisecond, do: func() { l.extend(5*time.Millisecond, 500*time.Millisecond) }, valid: true},
		{at: 504 * time.Millisecond, valid: true},
		{at: 505 * time.Millisecond, valid: false}, // measured from the check's start, not from extend
		// a check that began earlier never shortens a later lease
		{at: 600 * time.Millisecond, do: func() { l.extend(590*time.Millisecond, 500*time.Millisecond) }, valid: true},
		{at: 601 * time.Millisecond, do: func() { l.extend(100*time.Millisecond, 500*time.Millisecond) }, valid: true},
		{at: 1089 * time.Millisecond, valid: true},
		{at: 1090 * time.Millisecond, valid: false},
		{at: 1100 * time.Millisecond, do: func() { l.extend(1100*time.Millisecond, 500*time.Millisecond) }, valid: true},
		{at: 1101 * time.Millisecond, do: l.revoke, valid: false}, // leadership lost
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
