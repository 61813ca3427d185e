// Package faulty plants known bugs for proving that the fault-injection
// checkers can fail. In normal builds Enabled is constant false and the
// compiler removes every planted bug; only a binary built with
// `-tags faultybuild` reads CAIRN_FAULTS (a comma-separated list):
//
//	skip-dedup         the FSM applies a retried producer write again
//	stale-read         a linearizable read is served from local state with no read-index
//	ack-before-commit  a write is acknowledged before raft commits it
//
// Never ship a faultybuild binary.
package faulty

// Names of the planted bugs.
const (
	SkipDedup       = "skip-dedup"
	StaleRead       = "stale-read"
	AckBeforeCommit = "ack-before-commit"
)
