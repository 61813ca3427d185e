package raftnode

import (
	"sync/atomic"
	"time"
)

// lease is how long a leader may serve lease reads without a heartbeat
// round. It is kept and compared on the monotonic clock only: an NTP step
// of the wall clock (backwards by a minute, say) must not lengthen it, or a
// deposed leader would answer lease reads from stale state for that long.
// (A time.Time's UnixNano is wall-clock time; the lease once compared those.)
type lease struct {
	// since returns the monotonic time elapsed since some fixed origin;
	// time.Since(origin) in production (time.Time keeps a monotonic
	// reading, and Since uses it), a fake in tests.
	since func() time.Duration
	// until is since()'s value, in nanoseconds, at which the lease ends;
	// 0 means none.
	until atomic.Int64
}

func newLease() *lease {
	origin := time.Now()
	return &lease{since: func() time.Duration { return time.Since(origin) }}
}

// extend makes the lease last until d after a moment, started, measured by
// since() when the leadership check that justifies it began. It never
// shortens a later lease.
func (l *lease) extend(started, d time.Duration) {
	until := int64(started + d)
	for {
		cur := l.until.Load()
		if cur >= until || l.until.CompareAndSwap(cur, until) {
			return
		}
	}
}

// valid reports whether the lease holds now.
func (l *lease) valid() bool { return l.since() < time.Duration(l.until.Load()) }

// revoke ends the lease (leadership lost).
func (l *lease) revoke() { l.until.Store(0) }
