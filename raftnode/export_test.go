package raftnode

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
