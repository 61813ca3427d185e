package linearizability

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Record constructors for hand-written histories. Times are arbitrary
// integers; ids must be unique.

func put(id string, c int, k, v string, call, ret int64) Op {
	return Op{ID: id, Client: c, Type: OpPut, Key: k, Value: v, Call: call, Return: ret, Outcome: OutcomeOK}
}

func get(id string, c int, k, v string, call, ret int64) Op {
	return Op{ID: id, Client: c, Type: OpGet, Key: k, Found: true, Result: v, Call: call, Return: ret, Outcome: OutcomeOK}
}

func getMissing(id string, c int, k string, call, ret int64) Op {
	return Op{ID: id, Client: c, Type: OpGet, Key: k, Call: call, Return: ret, Outcome: OutcomeOK}
}

func cas(id string, c int, k, from, to string, applied bool, call, ret int64) Op {
	return Op{ID: id, Client: c, Type: OpCAS, Key: k, Expected: from, Value: to, Applied: &applied, Call: call, Return: ret, Outcome: OutcomeOK}
}

func del(id string, c int, k string, call, ret int64) Op {
	return Op{ID: id, Client: c, Type: OpDelete, Key: k, Call: call, Return: ret, Outcome: OutcomeOK}
}

// add is an acknowledged increment by producer p (epoch 1).
func add(id string, c int, k string, p string, seq uint64, delta int64, call, ret int64) Op {
	return Op{ID: id, Client: c, Type: OpAdd, Key: k, Producer: p, Epoch: 1, Seq: seq, Delta: delta, Call: call, Return: ret, Outcome: OutcomeOK}
}

func read(id string, c int, k string, total int64, call, ret int64) Op {
	return Op{ID: id, Client: c, Type: OpRead, Key: k, Total: &total, Call: call, Return: ret, Outcome: OutcomeOK}
}

func transfer(id string, c int, from, to string, amount int64, call, ret int64) Op {
	return Op{ID: id, Client: c, Type: OpTransfer, From: from, To: to, Amount: amount, Call: call, Return: ret, Outcome: OutcomeOK}
}

func readAll(id string, c int, bal map[string]int64, call, ret int64) Op {
	return Op{ID: id, Client: c, Type: OpReadAll, Balances: bal, Call: call, Return: ret, Outcome: OutcomeOK}
}

func unknown(op Op) Op {
	op.Outcome, op.Applied, op.Total, op.Found, op.Result, op.Balances = OutcomeUnknown, nil, nil, false, "", nil
	op.Error = "context deadline exceeded"
	return op
}

func failed(op Op) Op {
	op.Outcome, op.Applied, op.Total, op.Found, op.Result, op.Balances = OutcomeFail, nil, nil, false, "", nil
	op.Error = "not leader"
	return op
}

func final(op Op) Op { op.Final = true; return op }

func withTotal(op Op, total int64) Op { op.Total = &total; return op }

func rejected(op Op) Op { f := false; op.Applied = &f; return op }

var bank3 = BankOptions{Initial: map[string]int64{"a": 10, "b": 10, "c": 10}}

func loadFixture(t *testing.T, name string) History {
	t.Helper()
	h, err := ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// wantAnomaly describes an anomaly a case must report: its type and
// substrings its description must contain.
type wantAnomaly struct {
	typ      AnomalyType
	contains []string
}

// assertResult checks the verdict and that each wanted anomaly is present.
// With want == VerdictOK it also fails on any anomaly.
func assertResult(t *testing.T, res Result, want Verdict, anomalies ...wantAnomaly) {
	t.Helper()
	if res.Verdict != want {
		t.Fatalf("verdict %s, want %s\n%s", res.Verdict, want, res.Summary())
	}
	for _, w := range anomalies {
		found := false
		for _, a := range res.Anomalies {
			if a.Type != w.typ {
				continue
			}
			ok := true
			for _, s := range w.contains {
				if !strings.Contains(a.Description, s) {
					ok = false
				}
			}
			if ok {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no %s anomaly whose description contains %q\n%s", w.typ, w.contains, res.Summary())
		}
	}
}

const testTimeout = 30 * time.Second
