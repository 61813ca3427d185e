package raftnode

import (
	"sync"
	"sync/atomic"
	"time"
)

// lease is how long a leader may serve lease reads without a heartbeat
// round. It is kept and compared on the monotonic clock only: an NTP step
// of the wall clock (backwards by a minute, say) must not lengthen it, or a
// deposed leader would answer lease reads from stale state for that long.
// (A time.Time's UnixNano is wall-clock time; the lease once compared those.)
//
// A leadership transfer ends it and holds it off until the transfer is over
// (hold/release): the target campaigns at once and the others vote for it
// at once, so a new leader may commit writes long before a lease that
// assumes no election within a heartbeat timeout would run out. A round
// that began before a revoke, a hold or a release cannot extend the lease
// (its generation is stale).
type lease struct {
	// since returns the monotonic time elapsed since some fixed origin;
	// time.Since(origin) in production (time.Time keeps a monotonic
	// reading, and Since uses it), a fake in tests.
	since func() time.Duration
	// until is since()'s value, in nanoseconds, at which the lease ends;
	// 0 means none. Read without the lock; written under it.
	until atomic.Int64

	mu    sync.Mutex
	gen   uint64 // bumped by revoke, hold and release
	holds int    // transfers in progress
}

func newLease() *lease {
	origin := time.Now()
	return &lease{since: func() time.Duration { return time.Since(origin) }}
}

// begin is called when a leadership check starts: the moment the lease
// would count from, and the generation that extend must still find.
func (l *lease) begin() (gen uint64, started time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.gen, l.since()
}

// extend makes the lease last until d after started, if nothing ended or
// held it since the check that justifies it began (gen). It never shortens
// a later lease.
func (l *lease) extend(gen uint64, started, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if gen != l.gen || l.holds > 0 {
		return
	}
	if until := int64(started + d); until > l.until.Load() {
		l.until.Store(until)
	}
}

// valid reports whether the lease holds now.
func (l *lease) valid() bool {
	until := l.until.Load()
	return until != 0 && l.since() < time.Duration(until)
}

// revoke ends the lease (leadership lost).
func (l *lease) revoke() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gen++
	l.until.Store(0)
}

// hold ends the lease and keeps it ended until the matching release.
func (l *lease) hold() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gen++
	l.holds++
	l.until.Store(0)
}

// release ends a hold. Rounds that began during it cannot extend the lease.
func (l *lease) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gen++
	l.holds--
}
