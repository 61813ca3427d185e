package linearizability

// ResolveStats counts what ResolveUnknowns changed.
type ResolveStats struct {
	Committed int `json:"committed"` // unknown writes found in the log: now ok, return infinite
	Absent    int `json:"absent"`    // unknown writes not in the log: now fail
	Reads     int `json:"reads"`     // unknown reads, left unknown (reads are not logged)
	// Unresolved counts unknown writes left unknown because the log was
	// incomplete (compacted on every node) and did not show them.
	Unresolved int `json:"unresolved"`
}

// ResolveUnknowns patches a history with knowledge extracted from the
// committed Raft log, the way etcd's robustness tests patch histories from
// the WAL. committed holds the request ids of every entry that reached the
// committed log (on any node, after the run, once nothing is in flight).
//
// Each unknown write (put, cas, delete, add, transfer) whose id is in
// committed becomes OutcomeOK with Return = InfiniteReturn: it took effect
// at some point after its call, with unknown output (porcupine still checks
// it without an output; the exactly-once checker counts it as committed, so
// the Final read must include it). Each unknown write absent from the log
// becomes OutcomeFail: it definitely never took effect, so any read that
// observes it is illegal. Unknown reads are not changed.
//
// This is only sound if committed is complete: an entry committed after the
// log was extracted would be wrongly treated as never applied. The input is
// not modified.
func ResolveUnknowns(h History, committed map[string]bool) (History, ResolveStats) {
	out := make(History, len(h))
	copy(out, h)
	var st ResolveStats
	for i := range out {
		op := &out[i]
		if op.Outcome != OutcomeUnknown {
			continue
		}
		if !op.Type.IsWrite() {
			st.Reads++
			continue
		}
		if committed[op.ID] {
			op.Outcome, op.Return, op.Resolved = OutcomeOK, InfiniteReturn, ResolvedCommitted
			st.Committed++
		} else {
			op.Outcome, op.Resolved = OutcomeFail, ResolvedAbsent
			st.Absent++
		}
	}
	return out, st
}
