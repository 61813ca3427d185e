package validate

import (
	"testing"

	"github.com/cairn-db/cairn/jepsen/raftlog"
	"github.com/cairn-db/cairn/linearizability"
)

// Window commits are producer commits: an unknown attempt is resolved by
// the replay of producer sessions, not by its request id being in the log
// (a fenced attempt is in the log and was never applied).
func TestResolveWindowByProducerSeq(t *testing.T) {
	entries := []raftlog.Entry{reg(1, "p"), commit(2, 1, 1, 1), reg(3, "p"), commit(4, 1, 1, 2)}
	wc := func(id string, seq uint64) linearizability.Op {
		return linearizability.Op{ID: id, Type: linearizability.OpWindowCommit, Producer: "1", Epoch: 1, Seq: seq,
			Events: []linearizability.WindowEvent{{Key: "k", Time: 1, Value: 1 << (2 * seq)}}, Outcome: linearizability.OutcomeUnknown, Call: 1, Return: 2}
	}
	h := linearizability.History{wc("c0-1", 1), wc("c0-2", 2)}
	out, st := Resolve(h, linearizability.KindWindow, entries, true)
	if out[0].Resolved != linearizability.ResolvedCommitted || out[1].Resolved != linearizability.ResolvedAbsent || st.Committed != 1 || st.Absent != 1 {
		t.Fatalf("resolved %+v / %+v, stats %+v", out[0], out[1], st)
	}
}
