package report

import (
	"bytes"
	"fmt"
	"html/template"
	"path/filepath"
	"sort"

	"github.com/cairn-db/cairn/jepsen/nemesis"
)

var indexTmpl = template.Must(template.New("index").Funcs(template.FuncMap{
	"sec": func(ns int64) string { return fmt.Sprintf("%.2f s", float64(ns)/1e9) },
	"rel": func(dir, p string) string {
		if r, err := filepath.Rel(dir, p); err == nil {
			return filepath.ToSlash(r)
		}
		return p
	},
	"color": faultColor,
	"yes": func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	},
}).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>cairn jepsen: {{.S.Workload}} seed {{.S.Seed}} — {{.Banner}}</title>
<style>
body{font-family:Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1160px}
.banner{padding:14px 18px;border-radius:6px;color:white;font-size:22px;font-weight:bold}
.ok{background:#2a9d8f}.bad{background:#d62828}.warn{background:#e76f51}
table{border-collapse:collapse;margin:8px 0 18px}td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;font-size:13px;vertical-align:top}
th{background:#f4f4f4}pre{background:#f6f6f6;padding:10px;white-space:pre-wrap;word-break:break-all;font-size:12px}
h2{margin-top:28px;border-bottom:1px solid #eee}.swatch{display:inline-block;width:10px;height:10px;margin-right:4px}
.grid{display:grid;grid-template-columns:repeat(3,auto);gap:0 24px}
</style></head><body>
<div class="banner {{.Class}}">{{.Banner}} — {{.S.Workload}} workload, seed {{.S.Seed}}</div>
{{if .S.Reason}}<p><b>{{.S.Reason}}</b></p>{{end}}
<p>Rerun exactly this schedule:</p><pre>{{.S.Command}}</pre>
<div class="grid">
<table><tr><th colspan=2>run</th></tr>
<tr><td>nodes / clients</td><td>{{.S.Nodes}} / {{.S.Clients}}</td></tr>
<tr><td>rate / duration</td><td>{{.S.Rate}} ops/s / {{.S.Duration}}</td></tr>
<tr><td>planted bugs</td><td>{{if .S.Faults}}{{.S.Faults}}{{else}}none{{end}}</td></tr>
<tr><td>started</td><td>{{.S.StartedAt.Format "2006-01-02 15:04:05 MST"}} ({{.S.Elapsed}})</td></tr>
<tr><td>nemeses</td><td>{{range .S.Nemeses}}<span class="swatch" style="background:{{color .}}"></span>{{.}} {{end}}</td></tr>
{{range .S.Skipped}}<tr><td>skipped {{.Name}}</td><td>{{.Reason}}</td></tr>{{end}}
</table>
<table><tr><th colspan=2>operations</th></tr>
<tr><td>total</td><td>{{.S.Ops.Total}}</td></tr>
<tr><td>ok / failed / unknown</td><td>{{.S.Ops.OK}} / {{.S.Ops.Fail}} / {{.S.Ops.Unknown}}</td></tr>
<tr><td>unknowns resolved from the raft log</td><td>{{.S.Resolved.Committed}} committed, {{.S.Resolved.Absent}} absent; unresolved: {{.S.Resolved.Unresolved}} writes (log compacted everywhere), {{.S.Resolved.Reads}} reads</td></tr>
<tr><td>latency p50 / p95 / p99 / max</td><td>{{.S.Latency.P50}} / {{.S.Latency.P95}} / {{.S.Latency.P99}} / {{.S.Latency.Max}} ms</td></tr>
{{range $t, $c := .S.ByType}}<tr><td>{{$t}}</td><td>{{$c.Total}} ({{$c.OK}} ok, {{$c.Fail}} failed, {{$c.Unknown}} unknown)</td></tr>{{end}}
</table>
<table><tr><th colspan=2>cluster</th></tr>
<tr><td>leader changes / elections</td><td>{{.S.LeaderChanges}} / {{.S.Elections}}</td></tr>
<tr><td>faults injected</td><td>{{len .S.Timeline}}</td></tr>
<tr><td>traffic stopped</td><td>{{sec .S.RunEnd}}</td></tr>
{{if .S.HealedAt}}<tr><td>healed / recovered</td><td>{{sec .S.HealedAt}} / {{if .S.RecoveredAt}}{{sec .S.RecoveredAt}}{{else}}no{{end}}</td></tr>{{end}}
{{if .S.RecoveryError}}<tr><td>recovery</td><td>{{.S.RecoveryError}}</td></tr>{{end}}
<tr><td>raft log</td><td>{{.S.Log.Entries}} committed entries{{if .S.Log.Complete}}, complete{{else}}, INCOMPLETE {{.S.Log.Missing}}{{end}}</td></tr>
<tr><td>unexpected exits</td><td>{{len .S.Crashes}}</td></tr>
</table>
</div>

<h2>Anomalies ({{len .S.Anomalies}})</h2>
{{if .S.Anomalies}}<table><tr><th>checker</th><th>type</th><th>key</th><th>description</th><th>visualisation</th></tr>
{{range .S.Anomalies}}<tr><td>{{.Checker}}</td><td>{{.Type}}</td><td>{{.Key}}</td><td>{{.Description}}{{if gt .Occurrences 1}} (seen in {{.Occurrences}} reads){{end}}</td><td>{{if .Visualization}}<a href="{{rel $.Dir .Visualization}}">porcupine</a>{{end}}</td></tr>{{end}}
</table>{{else}}<p>None found.</p>{{end}}
{{if .S.Check}}{{if .S.Check.Error}}<p>Checker error: {{.S.Check.Error}}</p>{{end}}{{end}}

<h2>Latency</h2><img src="latency.svg" width="1100" alt="latency over time">
<h2>Throughput</h2><img src="throughput.svg" width="1100" alt="throughput over time">

<h2>Nemesis timeline</h2>
{{if .S.Timeline}}<table><tr><th>fault</th><th>what</th><th>from</th><th>to</th><th>errors</th></tr>
{{range .S.Timeline}}<tr><td><span class="swatch" style="background:{{color .Name}}"></span>{{.Name}}</td><td>{{.Detail}}</td><td>{{sec .Start}}</td><td>{{sec .End}}</td><td>{{.InjectError}} {{.HealError}}</td></tr>{{end}}
</table>{{else}}<p>No faults were injected.</p>{{end}}

{{if .Snapshots}}<h2>Snapshot faults</h2>
<table><tr><th>from</th><th>leader → victim</th><th>cut / stall</th><th>victim at / checkpoints / snapshot index</th><th>install began</th><th>fetching at kill</th><th>killed mid-install</th><th>verification</th><th>reinstalled / caught up</th></tr>
{{range .Snapshots}}<tr><td>{{sec .Start}}</td><td>{{.Snapshot.Leader}} → {{.Snapshot.Victim}}{{if .Snapshot.Archive}} ({{.Snapshot.Archive}} kept whole){{end}}</td><td>{{.Snapshot.Cut}} / {{.Snapshot.Stall}}</td><td>{{.Snapshot.VictimLast}} / {{.Snapshot.Checkpoints}} / {{.Snapshot.SnapshotIndex}}{{if not .Snapshot.Compacted}} (not compacted){{end}}</td><td>{{yes .Snapshot.InstallStarted}}</td><td>{{yes .Snapshot.Fetching}}</td><td><b>{{yes .Snapshot.KilledMidInstall}}</b></td><td>{{.Snapshot.Verification}}{{if .Snapshot.Error}} — error: {{.Snapshot.Error}}{{end}}</td><td>{{yes .Snapshot.Reinstalled}} / {{yes .Snapshot.CaughtUp}}</td></tr>{{end}}
</table>{{end}}

{{if .S.Installs}}<h2>Snapshot installs</h2>
<table><tr><th>node</th><th>installs (failed; by delta, keys fetched)</th><th>files fetched / reused</th><th>bytes fetched (resumed)</th><th>last process: installs, bytes fetched / reused</th><th>snapshot faults / killed mid-install</th><th>processes</th></tr>
{{range $id, $n := .S.Installs}}<tr><td>{{$id}}</td><td>{{$n.Log.Installs}} ({{$n.Log.Failed}}; {{$n.Log.Deltas}}, {{$n.Log.KeysFetched}})</td><td>{{$n.Log.FilesFetched}} / {{$n.Log.FilesReused}}</td><td>{{$n.Log.BytesFetched}} ({{$n.Log.BytesResumed}})</td><td>{{with $n.Final}}{{.Installs}}, {{.BytesFetched}} / {{.BytesReused}}{{else}}—{{end}}</td><td>{{$n.Faults}} / {{$n.KilledMidInstall}}</td><td>{{$n.Log.Processes}}{{if $n.Error}} ({{$n.Error}}){{end}}</td></tr>{{end}}
</table>
<p>Installs, files and bytes are totalled from each node's node.log over all its processes; a restart resets the metrics, so the last column covers only the process running at the end.</p>{{end}}

<h2>Leaders observed</h2>
<table><tr><th>from</th><th>leader</th><th>term</th></tr>
{{range .S.Leaders}}<tr><td>{{sec .At}}</td><td>{{if .Leader}}{{.Leader}}{{else}}(none){{end}}</td><td>{{.Term}}</td></tr>{{end}}
</table>

{{if .S.Crashes}}<h2>Unexpected process exits</h2><table><tr><th>node</th><th>pid</th><th>status</th><th>time</th></tr>
{{range .S.Crashes}}<tr><td>{{.Node}}</td><td>{{.PID}}</td><td>{{.Status}}</td><td>{{.Time.Format "15:04:05.000"}}</td></tr>{{end}}</table>{{end}}

<h2>Raft logs</h2>
<table><tr><th>node</th><th>first</th><th>last</th><th>committed up to</th><th>listed</th><th>snapshots</th><th>error</th></tr>
{{range $id, $n := .S.Log.Nodes}}<tr><td>{{$id}}</td><td>{{$n.First}}</td><td>{{$n.Last}}</td><td>{{$n.Commit}} ({{$n.CommitSource}})</td><td>{{$n.Listed}}</td><td>{{$n.Snapshots}}</td><td>{{$n.Error}}</td></tr>{{end}}
</table>
{{range .S.Log.Warnings}}<p>⚠ {{.}}</p>{{end}}
{{range .S.Warnings}}<p>⚠ {{.}}</p>{{end}}

<h2>Files</h2><ul>
<li><a href="summary.json">summary.json</a> — everything on this page, machine-readable</li>
<li><a href="history.jsonl">history.jsonl</a> — every request as the clients saw it</li>
<li><a href="history.checked.jsonl">history.checked.jsonl</a> — after resolving unknown outcomes from the raft logs (what was checked)</li>
{{range .Porcupine}}<li><a href="{{.}}">{{.}}</a> — porcupine visualisation of a failing partition</li>{{end}}
{{range .Logs}}<li><a href="{{.}}">{{.}}</a></li>{{end}}
</ul>
</body></html>
`))

func indexHTML(dir string, s *Summary) string {
	banner, class := "VALID", "ok"
	switch {
	case s.Verdict == "illegal":
		banner, class = "ANOMALY", "bad"
	case !s.Valid:
		banner, class = "NOT VALIDATED ("+s.Verdict+")", "warn"
	}
	rel := func(pattern string) []string {
		ms, _ := filepath.Glob(filepath.Join(dir, pattern))
		var out []string
		for _, m := range ms {
			if r, err := filepath.Rel(dir, m); err == nil {
				out = append(out, filepath.ToSlash(r))
			}
		}
		sort.Strings(out)
		return out
	}
	logs := append(rel("nodes/*/node.log"), rel("nodes/*/raft-log.json")...)
	sort.Strings(logs)
	var b bytes.Buffer
	var snaps []nemesis.Event
	for _, e := range s.Timeline {
		if e.Snapshot != nil {
			snaps = append(snaps, e)
		}
	}
	err := indexTmpl.Execute(&b, map[string]any{"S": s, "Dir": dir, "Banner": banner, "Class": class,
		"Porcupine": rel("porcupine/*.html"), "Logs": logs, "Snapshots": snaps})
	if err != nil {
		return "<pre>report: " + template.HTMLEscapeString(err.Error()) + "</pre>"
	}
	return b.String()
}
