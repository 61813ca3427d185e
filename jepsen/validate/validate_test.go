package validate

import (
	"strings"
	"testing"

	"github.com/cairn-db/cairn/jepsen/client"
	"github.com/cairn-db/cairn/jepsen/raftlog"
	"github.com/cairn-db/cairn/linearizability"
)

func batch(i, term, req uint64) raftlog.Entry {
	return raftlog.Entry{Index: i, Term: term, Type: "LogCommand", Committed: true, Command: "batch", RequestID: req, Ops: 1}
}

func dump(entries ...raftlog.Entry) *raftlog.Dump {
	d := &raftlog.Dump{FirstIndex: 1, CommitSource: raftlog.CommitFromFSM, Entries: entries}
	if len(entries) > 0 {
		d.LastIndex, d.CommitIndex = entries[len(entries)-1].Index, entries[len(entries)-1].Index
	}
	return d
}

func TestMergeUnionAndDivergence(t *testing.T) {
	r1, r2 := client.RequestID(0, 1), client.RequestID(1, 1)
	n1 := dump(batch(1, 1, 0), batch(2, 1, r1))
	n2 := dump(batch(1, 1, 0), batch(2, 1, r1), batch(3, 2, r2))
	entries, sum, anoms := Merge(map[string]*raftlog.Dump{"n1": n1, "n2": n2}, nil)
	if len(anoms) != 0 || !sum.Complete || sum.MaxIndex != 3 || len(entries) != 3 || sum.Requests != 2 {
		t.Fatalf("merge: entries %d, summary %+v, anomalies %v", len(entries), sum, anoms)
	}
	// A third node with another term at index 2 breaks log matching.
	n3 := dump(batch(1, 1, 0), batch(2, 3, r2))
	_, _, anoms = Merge(map[string]*raftlog.Dump{"n1": n1, "n3": n3}, nil)
	if len(anoms) != 1 || anoms[0].Type != AnomalyLogDivergence {
		t.Fatalf("divergence not reported: %v", anoms)
	}
}

func TestMergeGapsAndDuplicates(t *testing.T) {
	r := client.RequestID(2, 7)
	_, sum, anoms := Merge(map[string]*raftlog.Dump{"n1": dump(batch(1, 1, r), batch(4, 1, r))}, nil)
	if sum.Complete || sum.Missing != "[2-3]" {
		t.Fatalf("gap: %+v", sum)
	}
	if len(anoms) != 1 || anoms[0].Type != AnomalyDuplicateRequest || anoms[0].Ops[0] != "c2-7" {
		t.Fatalf("duplicate request not reported: %v", anoms)
	}
	// An unreadable node makes the log incomplete even without gaps.
	_, sum, _ = Merge(map[string]*raftlog.Dump{"n1": dump(batch(1, 1, 0))}, map[string]error{"n2": errString("locked")})
	if sum.Complete || !strings.Contains(strings.Join(sum.Warnings, ";"), "n2") {
		t.Fatalf("unreadable node: %+v", sum)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func reg(i uint64, name string) raftlog.Entry {
	return raftlog.Entry{Index: i, Term: 1, Committed: true, Command: "register-producer", ProducerName: name}
}

func commit(i, id, epoch, seq uint64) raftlog.Entry {
	e := batch(i, 1, client.RequestID(0, uint32(i)))
	e.Producer = &raftlog.Producer{ID: id, Epoch: epoch, Seq: seq}
	return e
}

func TestAppliedCommitsReplaysProducerRules(t *testing.T) {
	entries := []raftlog.Entry{
		reg(2, "a"),          // producer id 2, epoch 1
		commit(3, 2, 1, 1),   // applied
		commit(4, 2, 1, 1),   // duplicate: not applied again
		commit(5, 2, 1, 3),   // sequence gap
		reg(6, "a"),          // epoch 2, same id, sequence restarts
		commit(7, 2, 2, 1),   // applied
		commit(8, 2, 1, 2),   // fenced, although seq 2 would be next
		commit(9, 99, 1, 1),  // unknown producer
		reg(10, "b"),         // producer id 10
		commit(11, 10, 1, 1), // applied
	}
	got := appliedCommits(entries)
	want := map[producerSeq]bool{{2, 1, 1}: true, {2, 2, 1}: true, {10, 1, 1}: true}
	if len(got) != len(want) {
		t.Fatalf("applied %v, want %v", got, want)
	}
	for k := range want {
		if !got[k] {
			t.Fatalf("applied %v, want %v", got, want)
		}
	}
}

func TestResolveCounterByProducerSeq(t *testing.T) {
	entries := []raftlog.Entry{reg(1, "p"), commit(2, 1, 1, 1), reg(3, "p"), commit(4, 1, 1, 2)}
	add := func(id string, seq uint64, o linearizability.Outcome) linearizability.Op {
		return linearizability.Op{ID: id, Type: linearizability.OpAdd, Key: "k", Producer: "1", Epoch: 1, Seq: seq, Delta: int64(seq), Outcome: o, Call: 1, Return: 2}
	}
	h := linearizability.History{
		add("c0-1", 1, linearizability.OutcomeUnknown), // its seq was applied
		add("c0-2", 2, linearizability.OutcomeUnknown), // in the log but fenced: never applied
	}
	out, st := Resolve(h, linearizability.KindCounter, entries, true)
	if out[0].Resolved != linearizability.ResolvedCommitted || out[1].Resolved != linearizability.ResolvedAbsent || st.Committed != 1 || st.Absent != 1 {
		t.Fatalf("resolved %+v / %+v, stats %+v", out[0], out[1], st)
	}
	// With an incomplete log, what is not found stays unknown.
	out, st = Resolve(h, linearizability.KindCounter, entries, false)
	if out[1].Outcome != linearizability.OutcomeUnknown || st.Absent != 0 || st.Committed != 1 {
		t.Fatalf("incomplete: %+v, stats %+v", out[1], st)
	}
}

func TestResolveRegisterByRequestID(t *testing.T) {
	rid := client.RequestID(3, 9)
	id, _ := client.OpID(rid)
	h := linearizability.History{
		{ID: id, Type: linearizability.OpPut, Key: "x", Value: "a", Outcome: linearizability.OutcomeUnknown, Call: 1, Return: 5},
		{ID: "c3-10", Type: linearizability.OpPut, Key: "x", Value: "b", Outcome: linearizability.OutcomeUnknown, Call: 2, Return: 6},
		{ID: "c3-11", Type: linearizability.OpGet, Key: "x", Outcome: linearizability.OutcomeUnknown, Call: 3, Return: 7},
	}
	out, st := Resolve(h, linearizability.KindRegister, []raftlog.Entry{batch(1, 1, rid)}, true)
	if out[0].Outcome != linearizability.OutcomeOK || out[1].Outcome != linearizability.OutcomeFail || st.Reads != 1 {
		t.Fatalf("resolved %+v, stats %+v", out, st)
	}
}
