package linearizability

import (
	"testing"
)

func bal(a, b, c int64) map[string]int64 { return map[string]int64{"a": a, "b": b, "c": c} }

func TestBank(t *testing.T) {
	noNeg := BankOptions{Initial: bank3.Initial, NoNegative: true}
	cases := []struct {
		name      string
		fixture   string
		history   History
		opts      BankOptions
		want      Verdict
		anomalies []wantAnomaly
	}{
		{name: "fixture: concurrent transfers with unknown and failed outcomes", fixture: "bank_valid.jsonl", opts: bank3, want: VerdictOK},
		{
			name: "fixture: read whose total changed", fixture: "bank_total_changed.jsonl", opts: bank3, want: VerdictIllegal,
			anomalies: []wantAnomaly{
				{AnomalyTotalChanged, []string{"read t2", "total 25 differs from the initial total 30 by -5"}},
				{AnomalyNonLinearizable, []string{"bank history is not linearizable", "read-all -> {a:5 b:10 c:10} total=25"}},
			},
		},
		{
			name: "read sees a transfer half applied (total intact but not atomic with another read)",
			history: History{
				transfer("1", 0, "a", "b", 5, 0, 10), readAll("2", 1, bal(5, 15, 10), 20, 25), readAll("3", 2, bal(10, 10, 10), 30, 35),
			},
			opts: bank3, want: VerdictIllegal,
			anomalies: []wantAnomaly{{AnomalyNonLinearizable, []string{"read-all -> {a:10 b:10 c:10} total=30 [id=3"}}},
		},
		{
			name:    "money created",
			history: History{readAll("1", 1, bal(10, 11, 10), 0, 5)},
			opts:    bank3, want: VerdictIllegal,
			anomalies: []wantAnomaly{{AnomalyTotalChanged, []string{"total 31", "by +1"}}},
		},
		{
			name:    "negative balance when the workload promises none",
			history: History{transfer("1", 0, "a", "b", 15, 0, 10), readAll("2", 1, bal(-5, 25, 10), 20, 25)},
			opts:    noNeg, want: VerdictIllegal,
			anomalies: []wantAnomaly{
				{AnomalyNegativeBalance, []string{"read 2", "a=-5"}},
				{AnomalyNonLinearizable, []string{"transfer(a -> b, 15) -> ok"}},
			},
		},
		{
			name:    "negative balance allowed without the promise",
			history: History{transfer("1", 0, "a", "b", 15, 0, 10), readAll("2", 1, bal(-5, 25, 10), 20, 25)},
			opts:    bank3, want: VerdictOK,
		},
		{
			name: "justified rejection under NoNegative",
			history: History{
				rejected(transfer("1", 0, "a", "b", 15, 0, 10)), transfer("2", 0, "a", "b", 10, 11, 20), readAll("3", 1, bal(0, 20, 10), 30, 35),
			},
			opts: noNeg, want: VerdictOK,
		},
		{
			name:    "unjustified rejection under NoNegative",
			history: History{rejected(transfer("1", 0, "a", "b", 5, 0, 10))},
			opts:    noNeg, want: VerdictIllegal,
			anomalies: []wantAnomaly{{AnomalyNonLinearizable, []string{"transfer(a -> b, 5) -> rejected"}}},
		},
		{
			name: "unknown transfer applied or not",
			history: History{
				unknown(transfer("1", 0, "a", "b", 3, 0, 10)), readAll("2", 1, bal(10, 10, 10), 20, 25),
				readAll("3", 1, bal(7, 13, 10), 30, 35), unknown(transfer("4", 2, "b", "c", 1, 0, 10)),
			},
			opts: bank3, want: VerdictOK,
		},
		{
			name: "failed transfer observed",
			history: History{
				failed(transfer("1", 0, "a", "b", 3, 0, 10)), readAll("2", 1, bal(7, 13, 10), 20, 25),
			},
			opts: bank3, want: VerdictIllegal,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.history
			if tc.fixture != "" {
				h = loadFixture(t, tc.fixture)
			}
			res := Check(h, KindBank, Options{Timeout: testTimeout, Bank: tc.opts})
			assertResult(t, res, tc.want, tc.anomalies...)
		})
	}
}

func TestBankRejectsUndeclaredAccounts(t *testing.T) {
	h := History{transfer("1", 0, "a", "zz", 1, 0, 10)}
	res := Check(h, KindBank, Options{Bank: bank3})
	if res.Verdict != VerdictInvalid {
		t.Fatalf("verdict %s, want invalid\n%s", res.Verdict, res.Summary())
	}
	if _, err := BankOperations(h, bank3); err == nil {
		t.Fatal("BankOperations accepted an undeclared account")
	}
}
