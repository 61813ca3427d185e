// Package report writes a run's artifacts: summary.json, the histories,
// latency and throughput plots (SVG, drawn here, fault windows shaded and
// labelled) and an index.html that shows at a glance what happened.
package report

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/cairn-db/cairn/jepsen/client"
	"github.com/cairn-db/cairn/jepsen/cluster"
	"github.com/cairn-db/cairn/jepsen/nemesis"
	"github.com/cairn-db/cairn/jepsen/validate"
	"github.com/cairn-db/cairn/linearizability"
)

// Summary is summary.json.
type Summary struct {
	Valid    bool   `json:"valid"`
	Verdict  string `json:"verdict"` // ok, illegal, unknown, invalid, error
	ExitCode int    `json:"exit_code"`
	// Reason explains a run that is not valid (or could not run).
	Reason  string `json:"reason,omitempty"`
	Command string `json:"rerun"`

	Workload string  `json:"workload"`
	Seed     uint64  `json:"seed"`
	Nodes    int     `json:"nodes"`
	Clients  int     `json:"clients"`
	Rate     float64 `json:"rate"`
	Duration string  `json:"duration"`
	Faults   string  `json:"faults,omitempty"` // planted bugs (faultybuild)
	TLS      bool    `json:"tls,omitempty"`    // nodes and clients over TLS
	Binary   string  `json:"binary"`
	// ServeArgs are the extra serve flags every node ran with.
	ServeArgs []string `json:"serve_args"`

	StartedAt time.Time `json:"started_at"`
	Elapsed   string    `json:"elapsed"`
	// RunEnd is the run clock (ns) when traffic stopped; HealedAt when
	// every fault was healed; RecoveredAt when the cluster was healthy again.
	RunEnd        int64  `json:"run_end_ns"`
	HealedAt      int64  `json:"healed_ns,omitempty"`
	RecoveredAt   int64  `json:"recovered_ns,omitempty"`
	RecoveryError string `json:"recovery_error,omitempty"`

	Ops      OpCounts                     `json:"ops"`
	ByType   map[string]OpCounts          `json:"ops_by_type"`
	Latency  LatencyStats                 `json:"latency_ok_ms"`
	Resolved linearizability.ResolveStats `json:"resolved_unknowns"`
	Log      validate.LogSummary          `json:"raft_log"`

	Anomalies []linearizability.Anomaly `json:"anomalies"`
	Check     *linearizability.Result   `json:"check,omitempty"`

	Nemeses       []string               `json:"nemeses"`
	Skipped       []Skipped              `json:"nemeses_skipped,omitempty"`
	Timeline      []nemesis.Event        `json:"nemesis_timeline"`
	LeaderChanges int                    `json:"leader_changes"`
	Elections     int                    `json:"elections"`
	Leaders       []cluster.LeaderSample `json:"leaders"`
	Crashes       []cluster.Exit         `json:"unexpected_exits,omitempty"`
	// Installs are each node's checkpoint (raft snapshot) installs.
	Installs map[string]NodeInstalls `json:"snapshot_installs,omitempty"`
	Warnings []string                `json:"warnings,omitempty"`
}

// NodeInstalls are one node's checkpoint installs during a run.
type NodeInstalls struct {
	// Log totals the install lines of node.log over all the node's
	// processes (a restart resets the metrics, not the log).
	Log cluster.InstallLog `json:"log"`
	// Final are the install metrics of the node's last process, scraped
	// before it was stopped (bytes reused are only there).
	Final *cluster.InstallMetrics `json:"final_process_metrics,omitempty"`
	// Faults counts snapshot-nemesis injections on this node as victim;
	// KilledMidInstall those whose kill -9 was verified to land mid-install.
	Faults           int    `json:"snapshot_faults"`
	KilledMidInstall int    `json:"killed_mid_install"`
	Error            string `json:"error,omitempty"`
}

// Skipped is a nemesis that could not run here.
type Skipped struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// OpCounts counts records by outcome.
type OpCounts struct {
	Total   int `json:"total"`
	OK      int `json:"ok"`
	Fail    int `json:"fail"`
	Unknown int `json:"unknown"`
}

func (c *OpCounts) add(o linearizability.Outcome) {
	c.Total++
	switch o {
	case linearizability.OutcomeOK:
		c.OK++
	case linearizability.OutcomeFail:
		c.Fail++
	default:
		c.Unknown++
	}
}

// LatencyStats are percentiles of successful operations, in milliseconds.
type LatencyStats struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// Count fills Ops, ByType and Latency from the recorded history.
func (s *Summary) Count(recs []client.Record) {
	s.ByType = map[string]OpCounts{}
	var lat []float64
	for _, r := range recs {
		s.Ops.add(r.Outcome)
		c := s.ByType[string(r.Type)]
		c.add(r.Outcome)
		s.ByType[string(r.Type)] = c
		if r.Outcome == linearizability.OutcomeOK {
			lat = append(lat, float64(r.Return-r.Call)/1e6)
		}
	}
	sort.Float64s(lat)
	q := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return round3(lat[min(len(lat)-1, int(p*float64(len(lat))))])
	}
	s.Latency = LatencyStats{P50: q(0.5), P95: q(0.95), P99: q(0.99), Max: q(1)}
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

// WriteJSON writes v as indented JSON.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Write writes summary.json, the plots and index.html into dir.
// resolved is the history as checked; recs the history as recorded.
func Write(dir string, s *Summary, recs []client.Record) error {
	if err := WriteJSON(filepath.Join(dir, "summary.json"), s); err != nil {
		return err
	}
	p := plotData{recs: recs, events: s.Timeline, leaders: s.Leaders, end: max(s.RunEnd, lastReturn(recs)), flagged: map[string]bool{}}
	for _, a := range s.Anomalies {
		for _, id := range a.Ops {
			p.flagged[id] = true
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "latency.svg"), []byte(latencySVG(p)), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "throughput.svg"), []byte(throughputSVG(p)), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "index.html"), []byte(indexHTML(dir, s)), 0o644)
}

func lastReturn(recs []client.Record) int64 {
	var t int64
	for _, r := range recs {
		t = max(t, r.Return)
	}
	return t
}
