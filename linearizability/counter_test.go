package linearizability

import (
	"fmt"
	"testing"
)

func TestCounter(t *testing.T) {
	cases := []struct {
		name      string
		fixture   string
		history   History
		want      Verdict
		anomalies []wantAnomaly
	}{
		{name: "fixture: retries, unknown and failed increments", fixture: "counter_valid.jsonl", want: VerdictOK},
		{
			name: "fixture: retried increment applied twice", fixture: "counter_double_apply.jsonl", want: VerdictIllegal,
			anomalies: []wantAnomaly{
				{AnomalyDuplicateIncrement, []string{"[p0/1/1]", "included 2 times", "applied more than once"}},
				{AnomalyNonLinearizable, []string{`key "k1"`, `read("k1") -> 6`}},
			},
		},
		{
			name: "unknown increment applied at most once: absent from final read",
			history: History{
				add("1", 0, "k", "p", 1, 1, 0, 10), unknown(add("2", 0, "k", "p", 2, 4, 11, 20)),
				final(read("3", 1, "k", 1, 30, 40)),
			},
			want: VerdictOK,
		},
		{
			name: "unknown increment applied twice (non-identifiable deltas)",
			history: History{
				add("1", 0, "k", "p", 1, 1, 0, 10), unknown(add("2", 0, "k", "p", 2, 1, 11, 20)),
				unknown(add("3", 0, "k", "p", 2, 1, 21, 25)), final(read("4", 1, "k", 3, 30, 40)),
			},
			want: VerdictIllegal,
			anomalies: []wantAnomaly{
				{AnomalyTotalOutOfRange, []string{"read 4", "returned 3", "above the highest possible total 2", "more than once"}},
				{AnomalyNonLinearizable, []string{`read("k") -> 3`}},
			},
		},
		{
			name: "double apply with powers of two is still caught (possibly misattributed)",
			history: History{
				unknown(add("1", 0, "k", "p", 1, 1, 0, 10)), add("2", 0, "k", "p", 1, 1, 11, 20),
				add("3", 1, "k", "q", 1, 2, 0, 5), final(read("4", 2, "k", 4, 30, 40)),
			},
			want: VerdictIllegal,
		},
		{
			name: "acknowledged increment lost",
			history: History{
				add("1", 0, "k", "p", 1, 1, 0, 10), add("2", 0, "k", "p", 2, 4, 11, 20),
				read("3", 1, "k", 1, 30, 40), final(read("4", 1, "k", 1, 50, 60)),
			},
			want: VerdictIllegal,
			anomalies: []wantAnomaly{
				{AnomalyLostIncrement, []string{`add("k", +4) [p/1/2]`, "acknowledged at 20", "read 3 returned 1"}},
				{AnomalyNonLinearizable, []string{`key "k"`}},
			},
		},
		{
			name: "acknowledged increment lost (non-identifiable deltas)",
			history: History{
				add("1", 0, "k", "p", 1, 1, 0, 10), add("2", 0, "k", "p", 2, 1, 11, 20), read("3", 1, "k", 1, 30, 40),
			},
			want:      VerdictIllegal,
			anomalies: []wantAnomaly{{AnomalyTotalOutOfRange, []string{"below the lowest possible total 2", "lost"}}},
		},
		{
			name: "same (producer, epoch, seq) acknowledged with two different results",
			history: History{
				withTotal(add("1", 0, "k", "p", 7, 5, 0, 10), 5), withTotal(add("2", 0, "k", "p", 7, 5, 11, 20), 10),
				read("3", 1, "k", 10, 30, 40),
			},
			want: VerdictIllegal,
			anomalies: []wantAnomaly{
				{AnomalyConflictingResults, []string{"increment p/1/7", "total=5 (ids 1)", "total=10 (ids 2)"}},
			},
		},
		{
			name: "retry answered from the dedup table with the original result",
			history: History{
				unknown(add("1", 0, "k", "p", 7, 5, 0, 10)), withTotal(add("2", 0, "k", "p", 7, 5, 11, 20), 5),
				withTotal(add("3", 0, "k", "p", 8, 2, 21, 30), 7), withTotal(add("4", 0, "k", "p", 7, 5, 31, 35), 5),
				read("5", 1, "k", 7, 40, 50),
			},
			want: VerdictOK,
		},
		{
			name: "add result inconsistent with the counter",
			history: History{
				withTotal(add("1", 0, "k", "p", 1, 5, 0, 10), 5), withTotal(add("2", 0, "k", "p", 2, 2, 11, 20), 9),
			},
			want:      VerdictIllegal,
			anomalies: []wantAnomaly{{AnomalyNonLinearizable, []string{"-> total 9"}}},
		},
		{
			name:      "failed increment visible",
			history:   History{failed(add("1", 0, "k", "p", 1, 4, 0, 10)), read("2", 1, "k", 4, 20, 30)},
			want:      VerdictIllegal,
			anomalies: []wantAnomaly{{AnomalyPhantomIncrement, []string{"[p/1/1] failed definitely", "read 2"}}},
		},
		{
			name: "increment visible before it was issued",
			history: History{
				add("1", 0, "k", "p", 1, 1, 0, 10), read("2", 1, "k", 5, 20, 30), add("3", 0, "k", "p", 2, 4, 40, 50),
			},
			want:      VerdictIllegal,
			anomalies: []wantAnomaly{{AnomalyPhantomIncrement, []string{"[p/1/2] was first called at 40, after read 2 returned at 30"}}},
		},
		{
			name: "one (producer, epoch, seq) reused for another delta",
			history: History{
				add("1", 0, "k", "p", 1, 1, 0, 10), add("2", 0, "k", "p", 1, 2, 11, 20), read("3", 1, "k", 1, 30, 40),
			},
			want:      VerdictIllegal,
			anomalies: []wantAnomaly{{AnomalyConflictingInputs, []string{"p/1/1", `add("k", +1) (id 1)`, `add("k", +2) (id 2)`}}},
		},
		{
			name: "new epoch is a different increment",
			history: History{
				add("1", 0, "k", "p", 1, 1, 0, 10),
				{ID: "2", Client: 0, Type: OpAdd, Key: "k", Producer: "p", Epoch: 2, Seq: 1, Delta: 4, Call: 11, Return: 20, Outcome: OutcomeOK},
				read("3", 1, "k", 5, 30, 40),
			},
			want: VerdictOK,
		},
		{
			name: "unknown increment seen by one read, gone in a later one",
			history: History{
				add("1", 0, "k", "p", 1, 1, 0, 10), unknown(add("2", 0, "k", "p", 2, 4, 11, 20)),
				read("3", 1, "k", 5, 30, 40), read("4", 1, "k", 1, 50, 60),
			},
			want:      VerdictIllegal,
			anomalies: []wantAnomaly{{AnomalyNonLinearizable, []string{`read("k") -> 1 [id=4`}}},
		},
		{
			name: "reads concurrent with an acknowledged increment may or may not see it",
			history: History{
				add("1", 0, "k", "p", 1, 2, 10, 30), read("2", 1, "k", 0, 0, 15), read("3", 2, "k", 2, 0, 15),
				read("4", 1, "k", 2, 31, 40),
			},
			want: VerdictOK,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.history
			if tc.fixture != "" {
				h = loadFixture(t, tc.fixture)
			}
			res := Check(h, KindCounter, Options{Timeout: testTimeout})
			assertResult(t, res, tc.want, tc.anomalies...)
		})
	}
}

func TestCounterSummary(t *testing.T) {
	anomalies, sums := CheckExactlyOnce(loadFixture(t, "counter_valid.jsonl"))
	if len(anomalies) != 0 {
		t.Fatalf("unexpected anomalies: %v", anomalies)
	}
	if len(sums) != 2 {
		t.Fatalf("got %d summaries, want 2", len(sums))
	}
	k1 := sums[0]
	if k1.Key != "k1" || k1.Acked != 2 || k1.AckedSum != 5 || k1.Unknown != 1 || k1.UnknownSum != 16 ||
		k1.Failed != 1 || k1.FailedSum != 64 || k1.FinalRead != "c8" || *k1.FinalTotal != 21 || !k1.Identifiable {
		t.Errorf("k1 summary: %+v", k1)
	}
	if k2 := sums[1]; k2.Identifiable || k2.AckedSum != 1 || k2.UnknownSum != 1 {
		t.Errorf("k2 summary: %+v", k2)
	}
}

func TestDecode(t *testing.T) {
	incs := []*increment{{delta: 16}, {delta: 1}, {delta: 4}}
	sorted := identifiable(incs)
	if sorted == nil {
		t.Fatal("powers of four not identifiable")
	}
	cases := []struct {
		total int64
		want  []int64
		rest  int64
	}{
		{0, []int64{0, 0, 0}, 0},
		{21, []int64{1, 1, 1}, 0},
		{6, []int64{2, 1, 0}, 0},
		{37, []int64{1, 1, 2}, 0},
	}
	for _, tc := range cases {
		got, rest := decode(tc.total, sorted)
		for i := range got {
			if got[i] != tc.want[i] || rest != tc.rest {
				t.Errorf("decode(%d) = %v rest %d, want %v rest %d", tc.total, got, rest, tc.want, tc.rest)
				break
			}
		}
	}
	for _, deltas := range [][]int64{{1, 1}, {2, 3}, {0, 1}, {-1, 2}} {
		var incs []*increment
		for _, d := range deltas {
			incs = append(incs, &increment{delta: d})
		}
		if identifiable(incs) != nil {
			t.Errorf("deltas %v reported identifiable", deltas)
		}
	}
	if _, rest := decode(7, identifiable([]*increment{{delta: 2}, {delta: 4}})); rest != 1 {
		t.Errorf("rest of 7 over {2,4} = %d, want 1", rest)
	}
}

func TestCounterNarrowsUnknownIncrements(t *testing.T) {
	h := History{
		unknown(add("u", 0, "k", "p", 1, 4, 11, 20)),
		add("a", 1, "k", "q", 1, 1, 0, 5),
		read("r1", 2, "k", 1, 30, 40), read("r2", 2, "k", 5, 50, 60), read("r3", 2, "k", 5, 70, 80),
	}
	var got []string
	for _, op := range CounterOperations(h) {
		if m := op.Metadata.(opMeta); m.ids[0] == "u" || m.ids[0] == "a" {
			got = append(got, fmt.Sprintf("%s [%d,%d] narrowed=%v", m.ids[0], op.Call, op.Return, m.narrowed))
		}
	}
	want := []string{"a [0,5] narrowed=false", "u [30,60] narrowed=true"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	assertResult(t, Check(h, KindCounter, Options{Timeout: testTimeout}), VerdictOK)
}
