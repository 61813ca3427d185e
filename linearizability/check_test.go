package linearizability

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestVisualizationWrittenForIllegalPartition(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "viz")
	res := Check(loadFixture(t, "register_stale_read.jsonl"), KindRegister, Options{Timeout: testTimeout, VisualizeDir: dir})
	assertResult(t, res, VerdictIllegal)
	if len(res.Visualizations) != 1 {
		t.Fatalf("got visualizations %v, want exactly one (only key x is illegal)", res.Visualizations)
	}
	path := res.Visualizations[0]
	if filepath.Dir(path) != dir || !strings.Contains(filepath.Base(path), "-x.html") {
		t.Errorf("unexpected path %s", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	html := string(b)
	for _, want := range []string{"<html", `get(\"x\") -\u003e \"a\"`, "id=s3"} {
		if !strings.Contains(html, want) {
			t.Errorf("visualization lacks %q", want)
		}
	}
	if res.Anomalies[0].Visualization != path {
		t.Errorf("anomaly does not point at the visualization: %+v", res.Anomalies[0])
	}
	for _, p := range res.Partitions {
		if p.Key == "y" && (p.Result != "Ok" || p.Visualization != "") {
			t.Errorf("legal partition y: %+v", p)
		}
	}
}

func TestNoVisualizationForLegalHistory(t *testing.T) {
	dir := t.TempDir()
	res := Check(loadFixture(t, "bank_valid.jsonl"), KindBank, Options{Timeout: testTimeout, VisualizeDir: dir, Bank: bank3})
	assertResult(t, res, VerdictOK)
	if entries, _ := os.ReadDir(dir); len(entries) != 0 || len(res.Visualizations) != 0 {
		t.Fatalf("visualization written for a legal history: %v", entries)
	}
}

func TestCheckRejectsMalformedHistories(t *testing.T) {
	cases := []struct {
		name    string
		kind    Kind
		history History
		want    string
	}{
		{"duplicate id", KindRegister, History{put("1", 0, "k", "a", 0, 1), put("1", 0, "k", "b", 2, 3)}, "request id also used"},
		{"missing id", KindRegister, History{put("", 0, "k", "a", 0, 1)}, "empty request id"},
		{"wrong workload", KindRegister, History{add("1", 0, "k", "p", 1, 1, 0, 1)}, `"add" not valid for workload "register"`},
		{"bad outcome", KindRegister, History{{ID: "1", Type: OpPut, Outcome: "maybe"}}, `invalid outcome "maybe"`},
		{"return before call", KindRegister, History{put("1", 0, "k", "a", 5, 1)}, "return 1 before call 5"},
		{"cas without applied", KindRegister, History{{ID: "1", Type: OpCAS, Key: "k", Outcome: OutcomeOK}}, "ok cas without applied"},
		{"read without total", KindCounter, History{{ID: "1", Type: OpRead, Key: "k", Outcome: OutcomeOK}}, "without total"},
		{"unknown kind", "queue", History{}, `unknown workload kind "queue"`},
		{"bank without accounts", KindBank, History{}, "needs BankOptions.Initial"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := Check(tc.history, tc.kind, Options{})
			if res.Verdict != VerdictInvalid || !strings.Contains(res.Error, tc.want) {
				t.Fatalf("verdict %s, error %q; want invalid with %q", res.Verdict, res.Error, tc.want)
			}
		})
	}
}

func TestResultJSON(t *testing.T) {
	res := Check(loadFixture(t, "counter_double_apply.jsonl"), KindCounter, Options{Timeout: testTimeout})
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var back Result
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Verdict != VerdictIllegal || len(back.Anomalies) != len(res.Anomalies) || len(back.Counters) != 1 {
		t.Fatalf("round trip lost data: %s", b)
	}
	if !strings.Contains(res.Summary(), "duplicate-increment") {
		t.Errorf("summary lacks the anomaly:\n%s", res.Summary())
	}
}

// Large simulated histories of a correct store pass (or time out, never
// Illegal), stay legal after resolution against the log, and a single
// corrupted read makes them illegal. The timeout bounds the run; the test
// does not assert wall time.
func TestLargeHistories(t *testing.T) {
	cases := []struct {
		cfg     simConfig
		corrupt func(h History) (string, bool) // corrupt one read in place, return its id
	}{
		{
			cfg: simConfig{kind: KindRegister, seed: 1, clients: 10, ops: 4000, keys: 16, unknownPct: 3, failPct: 3},
			corrupt: func(h History) (string, bool) {
				for i := len(h) / 2; i < len(h); i++ {
					if h[i].Type == OpGet && h[i].Found {
						h[i].Result = "never-written"
						return h[i].ID, true
					}
				}
				return "", false
			},
		},
		{
			cfg: simConfig{kind: KindCounter, seed: 2, clients: 10, ops: 4000, keys: 16, unknownPct: 5, failPct: 3},
			corrupt: func(h History) (string, bool) {
				for i := len(h) / 2; i < len(h); i++ {
					if h[i].Type == OpRead {
						t := *h[i].Total + 1000
						h[i].Total = &t
						return h[i].ID, true
					}
				}
				return "", false
			},
		},
		{
			cfg: simConfig{kind: KindCounter, seed: 4, clients: 10, ops: 3000, keys: 64, unknownPct: 8, failPct: 3, identifiable: true},
			corrupt: func(h History) (string, bool) {
				for i := len(h) / 2; i < len(h); i++ {
					if h[i].Type == OpRead && *h[i].Total > 0 {
						t := *h[i].Total - 1
						h[i].Total = &t
						return h[i].ID, true
					}
				}
				return "", false
			},
		},
		{
			cfg: simConfig{kind: KindBank, seed: 3, clients: 5, ops: 600, unknownPct: 1, failPct: 3,
				bank: BankOptions{Initial: map[string]int64{"a": 50, "b": 50, "c": 50, "d": 50}, NoNegative: true}},
			corrupt: func(h History) (string, bool) {
				for i := len(h) / 2; i < len(h); i++ {
					if h[i].Type == OpReadAll {
						h[i].Balances["a"]++
						return h[i].ID, true
					}
				}
				return "", false
			},
		},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s/seed=%d", tc.cfg.kind, tc.cfg.seed), func(t *testing.T) {
			h, committed := simulate(tc.cfg)
			opts := Options{Timeout: 20 * time.Second, Bank: tc.cfg.bank, VisualizeDir: t.TempDir()}
			res := Check(h, tc.cfg.kind, opts)
			t.Logf("valid: %s", res.Summary())
			if res.Verdict != VerdictOK && res.Verdict != VerdictUnknown {
				t.Fatalf("simulated correct store judged %s", res.Verdict)
			}
			if res.Stats.Unknown == 0 || res.Stats.Fail == 0 {
				t.Fatalf("simulation produced no unknown/failed operations: %+v", res.Stats)
			}

			resolved, st := ResolveUnknowns(h, committed)
			res = Check(resolved, tc.cfg.kind, opts)
			t.Logf("resolved (%+v): %s", st, res.Summary())
			if res.Verdict != VerdictOK && res.Verdict != VerdictUnknown {
				t.Fatalf("resolved history of a correct store judged %s", res.Verdict)
			}

			id, ok := tc.corrupt(h)
			if !ok {
				t.Fatal("nothing to corrupt")
			}
			res = Check(h, tc.cfg.kind, opts)
			if res.Verdict != VerdictIllegal {
				t.Fatalf("corrupted read %s not detected: %s", id, res.Summary())
			}
			found := false
			for _, a := range res.Anomalies {
				for _, op := range a.Ops {
					found = found || op == id
				}
			}
			if !found {
				t.Errorf("no anomaly names the corrupted read %s:\n%s", id, res.Summary())
			}
		})
	}
}

// A timeout too short to check anything yields Unknown, never Ok or Illegal.
func TestTimeoutYieldsUnknown(t *testing.T) {
	h, _ := simulate(simConfig{kind: KindCounter, seed: 5, clients: 10, ops: 2000, keys: 8, unknownPct: 5, failPct: 3})
	res := Check(h, KindCounter, Options{Timeout: time.Nanosecond})
	assertResult(t, res, VerdictUnknown)
	for _, p := range res.Partitions {
		if p.Result != "Unknown" {
			t.Errorf("partition %q: %s", p.Key, p.Result)
		}
	}
}
