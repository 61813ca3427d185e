package linearizability

import (
	"testing"

	"github.com/anishathalye/porcupine"
)

func TestRegister(t *testing.T) {
	cases := []struct {
		name      string
		fixture   string
		history   History
		want      Verdict
		anomalies []wantAnomaly
	}{
		{name: "fixture: concurrent ops with unknown and failed outcomes", fixture: "register_valid.jsonl", want: VerdictOK},
		{
			name: "fixture: stale read after a newer write completed", fixture: "register_stale_read.jsonl", want: VerdictIllegal,
			anomalies: []wantAnomaly{{AnomalyNonLinearizable, []string{`key "x" is not linearizable`, `get("x") -> "a" [id=s3`}}},
		},
		{
			name: "fixture: acknowledged write lost", fixture: "register_lost_write.jsonl", want: VerdictIllegal,
			anomalies: []wantAnomaly{{AnomalyNonLinearizable, []string{`get("x") -> not found [id=l3`}}},
		},
		{
			name: "concurrent read may see old or new value",
			history: History{
				put("1", 0, "k", "a", 0, 10), put("2", 0, "k", "b", 20, 40),
				get("3", 1, "k", "a", 25, 30), get("4", 2, "k", "b", 26, 31), get("5", 1, "k", "b", 41, 42),
			},
			want: VerdictOK,
		},
		{
			name: "read flips back to old value (non-monotonic reads)",
			history: History{
				put("1", 0, "k", "a", 0, 10), put("2", 0, "k", "b", 20, 40),
				get("3", 1, "k", "b", 25, 30), get("4", 2, "k", "a", 31, 35),
			},
			want:      VerdictIllegal,
			anomalies: []wantAnomaly{{AnomalyNonLinearizable, []string{`get("k") -> "a" [id=4`}}},
		},
		{
			name:    "unknown put observed later is fine",
			history: History{unknown(put("1", 0, "k", "a", 0, 5)), get("2", 1, "k", "a", 100, 110)},
			want:    VerdictOK,
		},
		{
			name:    "unknown put never observed is fine",
			history: History{unknown(put("1", 0, "k", "a", 0, 5)), getMissing("2", 1, "k", 100, 110)},
			want:    VerdictOK,
		},
		{
			name:      "read observes a failed (definitely not applied) put",
			history:   History{failed(put("1", 0, "k", "a", 0, 5)), get("2", 1, "k", "a", 100, 110)},
			want:      VerdictIllegal,
			anomalies: []wantAnomaly{{AnomalyNonLinearizable, []string{`get("k") -> "a"`}}},
		},
		{
			name: "unknown put cannot take effect before its call",
			history: History{
				put("1", 0, "k", "a", 0, 5), get("2", 1, "k", "b", 10, 20), unknown(put("3", 2, "k", "b", 30, 40)),
			},
			want: VerdictIllegal,
		},
		{
			name: "cas succeeds and fails as the model says",
			history: History{
				put("1", 0, "k", "a", 0, 5), cas("2", 0, "k", "a", "b", true, 10, 20),
				cas("3", 1, "k", "a", "c", false, 21, 30), cas("4", 2, "k", "x", "y", false, 0, 2), get("5", 1, "k", "b", 31, 40),
			},
			want: VerdictOK,
		},
		{
			name:      "cas reported ok although expected value did not match",
			history:   History{put("1", 0, "k", "a", 0, 5), cas("2", 0, "k", "z", "b", true, 10, 20)},
			want:      VerdictIllegal,
			anomalies: []wantAnomaly{{AnomalyNonLinearizable, []string{`cas("k", "z" -> "b") -> ok`}}},
		},
		{
			name:    "cas reported failed although expected value matched",
			history: History{put("1", 0, "k", "a", 0, 5), cas("2", 0, "k", "a", "b", false, 10, 20)},
			want:    VerdictIllegal,
		},
		{
			name: "unknown cas whose effect is observed",
			history: History{
				put("1", 0, "k", "a", 0, 5), unknown(cas("2", 0, "k", "a", "b", true, 10, 20)), get("3", 1, "k", "b", 30, 40),
			},
			want: VerdictOK,
		},
		{
			name:    "read after delete finds the value",
			history: History{put("1", 0, "k", "a", 0, 5), del("2", 0, "k", 10, 20), get("3", 1, "k", "a", 30, 40)},
			want:    VerdictIllegal,
		},
		{
			name:    "read after delete finds nothing",
			history: History{put("1", 0, "k", "a", 0, 5), del("2", 0, "k", 10, 20), getMissing("3", 1, "k", 30, 40)},
			want:    VerdictOK,
		},
		{
			name: "keys are independent: stale read on one key only",
			history: History{
				put("1", 0, "a", "1", 0, 5), put("2", 0, "b", "1", 6, 10), put("3", 0, "a", "2", 11, 15),
				get("4", 1, "b", "1", 20, 25), get("5", 1, "a", "1", 26, 30),
			},
			want:      VerdictIllegal,
			anomalies: []wantAnomaly{{AnomalyNonLinearizable, []string{`key "a"`, "id=5"}}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.history
			if tc.fixture != "" {
				h = loadFixture(t, tc.fixture)
			}
			res := Check(h, KindRegister, Options{Timeout: testTimeout})
			assertResult(t, res, tc.want, tc.anomalies...)
			if tc.want == VerdictIllegal {
				for _, a := range res.Anomalies {
					if a.Type == AnomalyNonLinearizable && len(a.Ops) == 0 {
						t.Errorf("anomaly names no operation: %s", a)
					}
				}
			}
		})
	}
}

// The model also works directly with porcupine's own partitioning.
func TestRegisterModelWithPorcupine(t *testing.T) {
	ok := RegisterOperations(loadFixture(t, "register_valid.jsonl"))
	if res := porcupine.CheckOperationsTimeout(RegisterModel(), ok, testTimeout); res != porcupine.Ok {
		t.Fatalf("valid fixture: %s", res)
	}
	bad := RegisterOperations(loadFixture(t, "register_stale_read.jsonl"))
	if res := porcupine.CheckOperationsTimeout(RegisterModel(), bad, testTimeout); res != porcupine.Illegal {
		t.Fatalf("stale read fixture: %s", res)
	}
	if got := len(RegisterModel().Partition(bad)); got != 2 {
		t.Fatalf("stale read fixture has %d partitions, want 2", got)
	}
}

func TestRegisterOperationsConversion(t *testing.T) {
	h := History{
		failed(put("f", 0, "k", "a", 0, 5)),             // dropped
		unknown(get("g", 0, "k", "a", 6, 7)),            // dropped: reads constrain nothing
		unknown(put("p", 1, "k", "b", 0, 5)),            // infinite return
		put("q", 2, "k", "c", 0, 5),                     // kept as is
		unknown(cas("c", 3, "k", "a", "b", true, 1, 2)), // infinite return
	}
	ops := RegisterOperations(h)
	if len(ops) != 3 {
		t.Fatalf("got %d operations, want 3", len(ops))
	}
	for _, op := range ops {
		want := op.Metadata.(opMeta).ids[0] != "q"
		if (op.Return == InfiniteReturn) != want {
			t.Errorf("%v: return %d", op.Metadata, op.Return)
		}
	}
}
