package raftnode

import "time"

// SetAfterTimeoutNow makes fn run whenever a leadership transfer's
// TimeoutNow RPC returns (nil: nothing); for tests that cut the old leader
// off at that moment.
func SetAfterTimeoutNow(fn func()) {
	if fn == nil {
		afterTimeoutNow.Store(nil)
		return
	}
	afterTimeoutNow.Store(&fn)
}

// SetRemovalSettleFloor shortens how long a removal this node cannot see
// committed must stand before it counts; it returns the previous value.
func SetRemovalSettleFloor(d time.Duration) time.Duration {
	old := removalSettleFloor
	removalSettleFloor = d
	return old
}
