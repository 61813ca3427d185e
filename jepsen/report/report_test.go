package report

import (
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-db/cairn/jepsen/client"
	"github.com/cairn-db/cairn/jepsen/cluster"
	"github.com/cairn-db/cairn/jepsen/nemesis"
	"github.com/cairn-db/cairn/linearizability"
)

func sample() ([]client.Record, *Summary) {
	var recs []client.Record
	outcomes := []linearizability.Outcome{linearizability.OutcomeOK, linearizability.OutcomeOK, linearizability.OutcomeFail, linearizability.OutcomeUnknown}
	for i := 0; i < 200; i++ {
		typ := linearizability.OpGet
		if i%2 == 0 {
			typ = linearizability.OpPut
		}
		call := int64(i) * 50e6
		recs = append(recs, client.Record{Op: linearizability.Op{ID: "c0-" + string(rune('a'+i%26)), Type: typ, Call: call,
			Return: call + int64(1+i%7)*1e6, Outcome: outcomes[i%4]}})
	}
	s := &Summary{Workload: "register", Seed: 9, Verdict: "illegal", ExitCode: 1, RunEnd: 10e9, Command: "cairn jepsen run --seed 9",
		Timeline: []nemesis.Event{{Name: "kill-leader", Detail: "kill -9 [n1]", Start: 1e9, End: 3e9},
			{Name: "partition-halves", Detail: "partition [[n1] [n2 n3]] <&>", Start: 5e9, End: 7e9}},
		Leaders: []cluster.LeaderSample{{At: 0, Leader: "n1", Term: 2}, {At: 1e9}, {At: 2e9, Leader: "n2", Term: 3}},
		Anomalies: []linearizability.Anomaly{{Checker: "linearizability", Type: "non-linearizable", Key: "x", Description: "key x <bad>",
			Visualization: "/out/porcupine/register-000-x.html"}}}
	s.Count(recs)
	return recs, s
}

func wellFormed(t *testing.T, name, doc string) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(doc))
	for {
		_, err := d.Token()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("%s is not well-formed XML: %v", name, err)
		}
	}
}

func TestPlotsAreWellFormedAndLabelled(t *testing.T) {
	recs, s := sample()
	p := plotData{recs: recs, events: s.Timeline, leaders: s.Leaders, end: s.RunEnd, flagged: map[string]bool{recs[3].ID: true}}
	for name, doc := range map[string]string{"latency": latencySVG(p), "throughput": throughputSVG(p)} {
		wellFormed(t, name, doc)
		for _, want := range []string{"kill-leader", "partition-halves", "&lt;&amp;&gt;", ">n2<", "leader"} {
			if !strings.Contains(doc, want) {
				t.Errorf("%s: missing %q", name, want)
			}
		}
		if name == "latency" && !strings.Contains(doc, `a5 5 0 1 0`) {
			t.Errorf("latency: the operation named by an anomaly is not ringed")
		}
	}
	// Empty runs still draw.
	wellFormed(t, "empty", latencySVG(plotData{}))
	wellFormed(t, "empty", throughputSVG(plotData{}))
}

func TestWriteReport(t *testing.T) {
	dir := t.TempDir()
	recs, s := sample()
	if err := os.MkdirAll(filepath.Join(dir, "nodes", "n1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nodes", "n1", "node.log"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(dir, s, recs); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	html := string(b)
	for _, want := range []string{"ANOMALY", "cairn jepsen run --seed 9", "key x &lt;bad&gt;", "latency.svg", "throughput.svg", "nodes/n1/node.log", "kill -9 [n1]"} {
		if !strings.Contains(html, want) {
			t.Errorf("index.html: missing %q", want)
		}
	}
	if s.Ops.Total != 200 || s.Ops.Fail != 50 || s.Ops.Unknown != 50 || s.Latency.Max == 0 {
		t.Fatalf("counts: %+v %+v", s.Ops, s.Latency)
	}
}

func TestReportShowsSnapshotFaultsAndInstalls(t *testing.T) {
	dir := t.TempDir()
	recs, s := sample()
	f := &nemesis.SnapshotFault{Leader: "n1", Victim: "n2", Archive: "n3", Cut: "partition", Stall: "port-drop", VictimLast: 100,
		Checkpoints: 3, SnapshotIndex: 190, Compacted: true, InstallStarted: true, Fetching: true, KilledMidInstall: true,
		Verification: "checkpoint 2-190-x still pending", Reinstalled: true, CaughtUp: true}
	s.Timeline = append(s.Timeline, nemesis.Event{Name: "snapshot", Detail: "cut n2 off", Start: 8e9, End: 9e9, Snapshot: f})
	s.Installs = map[string]NodeInstalls{"n2": {Log: cluster.InstallLog{Installs: 1, Failed: 0, FilesFetched: 4, FilesReused: 2, BytesFetched: 12345},
		Final: &cluster.InstallMetrics{Installs: 1, BytesReused: 678}, Faults: 1, KilledMidInstall: 1}}
	s.Resolved = linearizability.ResolveStats{Committed: 5, Unresolved: 7}
	if err := Write(dir, s, recs); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Snapshot faults", "n1 → n2", "port-drop", "<b>yes</b>", "still pending", "Snapshot installs", "12345", "678", "unresolved: 7"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("index.html: missing %q", want)
		}
	}
	svg, _ := os.ReadFile(filepath.Join(dir, "latency.svg"))
	if !strings.Contains(string(svg), faultColor("snapshot")) || faultColor("snapshot") == faultColor("other") {
		t.Errorf("snapshot window not shaded in its own colour")
	}
	js, _ := os.ReadFile(filepath.Join(dir, "summary.json"))
	for _, want := range []string{`"killed_mid_install": true`, `"snapshot_installs"`, `"unresolved": 7`} {
		if !strings.Contains(string(js), want) {
			t.Errorf("summary.json: missing %s", want)
		}
	}
}
