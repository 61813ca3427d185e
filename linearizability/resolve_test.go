package linearizability

import (
	"testing"
)

func TestResolveUnknowns(t *testing.T) {
	h := History{
		unknown(put("in-log", 0, "k", "a", 0, 10)),
		unknown(put("not-in-log", 1, "k", "b", 0, 10)),
		unknown(getMissing("read", 2, "k", 0, 10)),
		put("acked", 3, "k", "c", 0, 10),
		failed(put("rejected", 4, "k", "d", 0, 10)),
	}
	got, st := ResolveUnknowns(h, map[string]bool{"in-log": true, "acked": true})
	if st != (ResolveStats{Committed: 1, Absent: 1, Reads: 1}) {
		t.Errorf("stats %+v", st)
	}
	want := []struct {
		outcome  Outcome
		ret      int64
		resolved string
	}{
		{OutcomeOK, InfiniteReturn, ResolvedCommitted},
		{OutcomeFail, 10, ResolvedAbsent},
		{OutcomeUnknown, 10, ""},
		{OutcomeOK, 10, ""},
		{OutcomeFail, 10, ""},
	}
	for i, w := range want {
		if got[i].Outcome != w.outcome || got[i].Return != w.ret || got[i].Resolved != w.resolved {
			t.Errorf("%s: got %s/%d/%q, want %s/%d/%q", got[i].ID, got[i].Outcome, got[i].Return, got[i].Resolved, w.outcome, w.ret, w.resolved)
		}
	}
	if h[0].Outcome != OutcomeUnknown {
		t.Error("input history was modified")
	}
}

// Resolution makes the checkers stronger: the same history is acceptable
// while an operation's fate is unknown and illegal once the log shows it.
func TestResolveUnknownsStrengthensChecks(t *testing.T) {
	cases := []struct {
		name      string
		kind      Kind
		history   History
		committed map[string]bool
		anomalies []wantAnomaly
	}{
		{
			name: "read observes a put that never reached the log",
			kind: KindRegister,
			history: History{
				put("1", 0, "k", "a", 0, 10), unknown(put("2", 1, "k", "b", 20, 30)), get("3", 2, "k", "b", 40, 50),
			},
			committed: map[string]bool{"1": true},
			anomalies: []wantAnomaly{{AnomalyNonLinearizable, []string{`get("k") -> "b" [id=3`}}},
		},
		{
			name: "final read misses a put that was committed",
			kind: KindRegister,
			history: History{
				put("1", 0, "k", "a", 0, 10), unknown(put("2", 1, "k", "b", 20, 30)), final(get("3", 2, "k", "a", 40, 50)),
			},
			committed: map[string]bool{"1": true, "2": true},
			anomalies: []wantAnomaly{{AnomalyNonLinearizable, []string{`get("k") -> "a" [id=3`}}},
		},
		{
			name: "final read misses an unacknowledged increment that was committed",
			kind: KindCounter,
			history: History{
				add("1", 0, "k", "p", 1, 1, 0, 10), unknown(add("2", 0, "k", "p", 2, 4, 11, 20)),
				final(read("3", 1, "k", 1, 30, 40)),
			},
			committed: map[string]bool{"1": true, "2": true},
			anomalies: []wantAnomaly{
				{AnomalyLostIncrement, []string{"[p/1/2] was committed before the final read", "read 3 returned 1"}},
				{AnomalyNonLinearizable, []string{`read("k") -> 1 [id=3`}},
			},
		},
		{
			name: "final read includes an increment absent from the log",
			kind: KindCounter,
			history: History{
				add("1", 0, "k", "p", 1, 1, 0, 10), unknown(add("2", 0, "k", "p", 2, 4, 11, 20)),
				final(read("3", 1, "k", 5, 30, 40)),
			},
			committed: map[string]bool{"1": true},
			anomalies: []wantAnomaly{{AnomalyPhantomIncrement, []string{"[p/1/2] failed definitely"}}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := Check(tc.history, tc.kind, Options{Timeout: testTimeout})
			assertResult(t, before, VerdictOK)
			resolved, _ := ResolveUnknowns(tc.history, tc.committed)
			after := Check(resolved, tc.kind, Options{Timeout: testTimeout})
			assertResult(t, after, VerdictIllegal, tc.anomalies...)
		})
	}
}

// Committed unknown writes keep histories that are truly fine legal.
func TestResolveUnknownsKeepsValidHistoriesValid(t *testing.T) {
	for _, tc := range []struct {
		fixture string
		kind    Kind
	}{
		{"register_valid.jsonl", KindRegister},
		{"counter_valid.jsonl", KindCounter},
		{"bank_valid.jsonl", KindBank},
	} {
		t.Run(tc.fixture, func(t *testing.T) {
			h := loadFixture(t, tc.fixture)
			// Every unknown write in the fixtures was applied (its effect
			// is read later), so it is in the log.
			committed := make(map[string]bool)
			for _, op := range h {
				committed[op.ID] = op.Outcome != OutcomeFail
			}
			resolved, st := ResolveUnknowns(h, committed)
			if st.Committed == 0 {
				t.Fatal("fixture has no unknown writes")
			}
			res := Check(resolved, tc.kind, Options{Timeout: testTimeout, Bank: bank3})
			assertResult(t, res, VerdictOK)
		})
	}
}
