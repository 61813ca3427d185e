package cluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseInstallLog(t *testing.T) {
	log := `=== jepsen 2026-01-01T00:00:00Z: /bin/cairn ["serve"]
time=2026-01-01T00:00:01.000Z level=INFO msg="snapshot: installed" component=snapshot checkpoint=1-50-ab index=50 reused=3 fetched=2 fetched_bytes=4096 resumed_bytes=0 quarantined=0 took=12ms
time=2026-01-01T00:00:02.000Z level=WARN msg="snapshot: install failed" component=snapshot checkpoint=1-90-cd fetched_bytes=100 err="snapshot: fetch x: context canceled"
=== jepsen 2026-01-01T00:00:03Z: /bin/cairn ["serve"]
time=2026-01-01T00:00:04.000Z level=INFO msg="snapshot: installed" component=snapshot checkpoint=1-90-cd index=90 reused=4 fetched=1 fetched_bytes=900 resumed_bytes=100 quarantined=0 took=3ms
time=2026-01-01T00:00:05.000Z level=INFO msg="snapshot: checkpoint created" component=snapshot id=x index=99
time=2026-01-01T00:00:06.000Z level=INFO msg="snapshot: installed" node=n2 component=snapshot checkpoint=4-264-17 index=264 delta=true keys_fetched=6 keys_deleted=0 keys_reused=5 fetched_bytes=175 sent_bytes=318 reused_bytes=92 state_bytes=26815 took=30.9ms
`
	got, err := ParseInstallLog(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	want := InstallLog{Installs: 3, Failed: 1, FilesFetched: 3, FilesReused: 7, BytesFetched: 5271, BytesResumed: 100, Deltas: 1, KeysFetched: 6, Processes: 2}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP cairn_checkpoint_installs_total Checkpoint installs by result.
# TYPE cairn_checkpoint_installs_total counter
cairn_checkpoint_installs_total{result="error"} 1
cairn_checkpoint_installs_total{result="ok"} 2
cairn_checkpoint_install_bytes_fetched_total 1.5e+06
cairn_checkpoint_install_bytes_fetched_total_other 7
`
	m, err := ParseMetrics(strings.NewReader(text), "cairn_checkpoint_installs_total", "cairn_checkpoint_install_bytes_fetched_total", "absent")
	if err != nil {
		t.Fatal(err)
	}
	if m["cairn_checkpoint_installs_total"] != 3 || m["cairn_checkpoint_install_bytes_fetched_total"] != 1.5e6 || m["absent"] != 0 {
		t.Fatalf("%v", m)
	}
}

func TestStoreState(t *testing.T) {
	n := &Node{DataDir: t.TempDir()}
	empty, err := n.Store()
	if err != nil || len(empty.All) != 0 {
		t.Fatalf("missing store: %+v %v", empty, err)
	}
	mk := func(p string, size int) {
		t.Helper()
		p = filepath.Join(n.DataDir, "snapshots", p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mk("manifests/1-10-a/meta.json", 1)
	before, _ := n.Store()
	mk("manifests/2-90-b/meta.json", 1)
	mk("manifests/2-90-b/PENDING", 0)
	mk("files/abc.partial", 5)
	mk("files/def", 9)
	after, err := n.Store()
	if err != nil {
		t.Fatal(err)
	}
	if np := after.NewPending(before); len(np) != 1 || np[0] != "2-90-b" || len(after.All) != 2 {
		t.Fatalf("pending %v, all %v", np, after.All)
	}
	if len(after.Partial) != 1 || after.Partial["abc.partial"] != 5 {
		t.Fatalf("partial %v", after.Partial)
	}
}
