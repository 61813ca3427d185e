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

// A log compacted on every node: the union starts after index 1, so
// resolution is partial and the replay of producer sessions must not guess
// the state of a session registered before the log starts.
func TestResolveCompactedLog(t *testing.T) {
	add := func(id, producer string, epoch, seq uint64) linearizability.Op {
		return linearizability.Op{ID: id, Type: linearizability.OpAdd, Key: "k", Producer: producer, Epoch: epoch, Seq: seq,
			Delta: 1, Outcome: linearizability.OutcomeUnknown, Call: 1, Return: 2}
	}
	for _, tc := range []struct {
		name      string
		dumps     map[string]*raftlog.Dump
		complete  bool
		committed []string // history ids resolved committed; every other write stays unknown
	}{
		{
			// Producer 1 was registered at index 1 (compacted everywhere):
			// a re-registration at 5 must not be taken for its first, so
			// its epoch-2 commit at 6 is not resolved; producer 7 is
			// registered inside the log and followed exactly.
			name: "prefix compacted everywhere",
			dumps: map[string]*raftlog.Dump{
				"n1": {FirstIndex: 4, CommitSource: raftlog.CommitFromFSM, Entries: []raftlog.Entry{commit(4, 1, 1, 3), reg(5, "p"), commit(6, 1, 2, 1), reg(7, "q"), commit(8, 7, 1, 1), commit(9, 7, 1, 3)}},
				"n2": {FirstIndex: 6, CommitSource: raftlog.CommitFromFSM, Entries: []raftlog.Entry{commit(6, 1, 2, 1), reg(7, "q"), commit(8, 7, 1, 1)}},
			},
			committed: []string{"q1"},
		},
		{
			// One node kept the whole log: everything is decided.
			name: "one node kept it all",
			dumps: map[string]*raftlog.Dump{
				"n1": {FirstIndex: 4, CommitSource: raftlog.CommitFromFSM, Entries: []raftlog.Entry{commit(4, 1, 1, 3), reg(5, "p"), commit(6, 1, 2, 1)}},
				"n3": dump(reg(1, "p"), commit(2, 1, 1, 1), commit(3, 1, 1, 2), commit(4, 1, 1, 3), reg(5, "p"), commit(6, 1, 2, 1), reg(7, "q"), commit(8, 7, 1, 1)),
			},
			complete:  true,
			committed: []string{"p3", "p-e2", "q1"},
		},
		{
			// A gap in the middle: the replay starts after it.
			name: "gap",
			dumps: map[string]*raftlog.Dump{
				"n1": dump(reg(1, "p"), commit(2, 1, 1, 1)),
				"n2": {FirstIndex: 5, CommitSource: raftlog.CommitFromFSM, Entries: []raftlog.Entry{reg(5, "p"), commit(6, 1, 2, 1), reg(7, "q"), commit(8, 7, 1, 1)}},
			},
			committed: []string{"q1"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			entries, sum, anoms := Merge(tc.dumps, nil)
			if len(anoms) != 0 || sum.Complete != tc.complete {
				t.Fatalf("merge: complete %v (want %v), anomalies %v", sum.Complete, tc.complete, anoms)
			}
			h := linearizability.History{add("p3", "1", 1, 3), add("p-e2", "1", 2, 1), add("q1", "7", 1, 1), add("q2", "7", 1, 2)}
			out, st := Resolve(h, linearizability.KindCounter, entries, sum.Complete)
			want := map[string]bool{}
			for _, id := range tc.committed {
				want[id] = true
			}
			for _, op := range out {
				switch {
				case want[op.ID] && op.Resolved != linearizability.ResolvedCommitted:
					t.Errorf("%s not resolved committed: %+v", op.ID, op)
				case !want[op.ID] && tc.complete && op.Resolved != linearizability.ResolvedAbsent:
					t.Errorf("%s not resolved absent with a complete log: %+v", op.ID, op)
				case !want[op.ID] && !tc.complete && op.Outcome != linearizability.OutcomeUnknown:
					t.Errorf("%s resolved from an incomplete log: %+v", op.ID, op)
				}
			}
			if st.Committed != len(tc.committed) || (!tc.complete && st.Unresolved != len(h)-len(tc.committed)) {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func TestResolveRegisterCompactedLogLeavesUnknowns(t *testing.T) {
	rid := client.RequestID(3, 9)
	id, _ := client.OpID(rid)
	h := linearizability.History{
		{ID: id, Type: linearizability.OpPut, Key: "x", Value: "a", Outcome: linearizability.OutcomeUnknown, Call: 1, Return: 5},
		{ID: "c3-10", Type: linearizability.OpPut, Key: "x", Value: "b", Outcome: linearizability.OutcomeUnknown, Call: 2, Return: 6},
	}
	entries, sum, _ := Merge(map[string]*raftlog.Dump{"n1": {FirstIndex: 7, CommitSource: raftlog.CommitFromFSM,
		Entries: []raftlog.Entry{batch(7, 1, 0), batch(8, 1, rid)}}}, nil)
	if sum.Complete {
		t.Fatal("a log starting at 7 taken as complete")
	}
	out, st := Resolve(h, linearizability.KindRegister, entries, sum.Complete)
	if out[0].Resolved != linearizability.ResolvedCommitted || out[1].Outcome != linearizability.OutcomeUnknown || st.Unresolved != 1 || st.Absent != 0 {
		t.Fatalf("resolved %+v, stats %+v", out, st)
	}
}
