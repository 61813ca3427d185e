package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	pb "github.com/cairn-db/cairn/api/cairnpb"
)

func TestSplitCheckpointURL(t *testing.T) {
	for _, tc := range []struct{ in, bucket, id string }{
		{"file:///backups/cairn", "file:///backups/cairn", ""},
		{"file:///backups/cairn/", "file:///backups/cairn/", ""},
		{"file:///backups/cairn/3-1204-1795320001687", "file:///backups/cairn", "3-1204-1795320001687"},
		{"file:///backups/cairn/3-1204-1795320001687.2", "file:///backups/cairn", "3-1204-1795320001687.2"},
		{"file:///backups/cairn/checkpoints/3-1204-1795320001687.json", "file:///backups/cairn", "3-1204-1795320001687"},
		{"s3://bucket/3-1-2?region=eu-west-1", "s3://bucket?region=eu-west-1", "3-1-2"},
		{"s3://bucket?region=eu-west-1&prefix=cairn/", "s3://bucket?region=eu-west-1&prefix=cairn/", ""},
	} {
		b, id, err := splitCheckpointURL(tc.in)
		if err != nil || b != tc.bucket || id != tc.id {
			t.Errorf("splitCheckpointURL(%q) = %q, %q, %v; want %q, %q", tc.in, b, id, err, tc.bucket, tc.id)
		}
	}
	if _, _, err := splitCheckpointURL("/just/a/path"); err == nil {
		t.Error("a path without a scheme was accepted")
	}
}

// TestCheckpointCLI drives checkpoint create/list/show/verify/pin/export
// and restore through the binary, and starts a new node on the restored
// data dir.
func TestCheckpointCLI(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	c := startProcCluster(t, 1)
	cl := c.client()
	c.waitLeader(ctx, cl)
	eps := "--endpoints=" + strings.Join(c.endpoints(), ",")
	ok := func(args ...string) string {
		t.Helper()
		out, errOut, code := runCLI(t, nil, append([]string{eps}, args...)...)
		if code != 0 {
			t.Fatalf("cairn %s: exit %d, stderr %q", strings.Join(args, " "), code, errOut)
		}
		return out
	}
	for i := 0; i < 50; i++ {
		if _, err := cl.Put(ctx, []byte(fmt.Sprintf("k%03d", i)), []byte(fmt.Sprintf("v%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	p, err := cl.RegisterProducer(ctx, "etl", api.DefaultProducerOptions())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Commit(ctx, []*pb.Op{api.AddOp([]byte("n"), 1)}, map[string]int64{"clicks-3": 9001}); err != nil {
		t.Fatal(err)
	}

	id := strings.TrimSpace(ok("checkpoint", "create"))
	if !checkpointIDRe.MatchString(id) {
		t.Fatalf("checkpoint create printed %q, want an id", id)
	}
	if out := ok("checkpoint", "list"); !strings.Contains(out, id) || !strings.Contains(out, "etl@1 seq=1 [clicks-3=9001]") || !strings.Contains(out, "unverified") {
		t.Fatalf("checkpoint list:\n%s", out)
	}
	var list api.CheckpointList
	if err := json.Unmarshal([]byte(ok("checkpoint", "list", "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	if list.Node != "n1" || len(list.Checkpoints) != 1 || list.Checkpoints[0].Producers[0].Offsets[0].Offset != 9001 {
		t.Fatalf("checkpoint list -o json: %+v", list)
	}
	if out := ok("checkpoint", "show", id); !strings.Contains(out, "raft configuration") || !strings.Contains(out, ".sst") && !strings.Contains(out, ".log") {
		t.Fatalf("checkpoint show:\n%s", out)
	}
	if out := ok("checkpoint", "verify", "latest"); !strings.HasPrefix(out, "ok: ") {
		t.Fatalf("checkpoint verify: %q", out)
	}
	if out := ok("checkpoint", "pin", "latest"); out != "OK pinned "+id+"\n" {
		t.Fatalf("pin latest: %q, want the id it resolved to (%s)", out, id)
	}
	if !strings.Contains(ok("checkpoint", "list"), "pinned") {
		t.Fatal("list does not show the pin")
	}
	if out := ok("checkpoint", "unpin", id); out != "OK unpinned "+id+"\n" {
		t.Fatalf("unpin: %q", out)
	}
	if _, errOut, code := runCLI(t, nil, eps, "checkpoint", "show", "9-9-9"); code == 0 || !strings.Contains(errOut, "not found") {
		t.Fatalf("show of a missing checkpoint: exit %d, %q", code, errOut)
	}

	bucket := "file://" + filepath.Join(t.TempDir(), "savepoints")
	var ex api.ExportProgress
	if err := json.Unmarshal([]byte(ok("checkpoint", "export", id, "--to", bucket, "-o", "json")), &ex); err != nil {
		t.Fatal(err)
	}
	if !ex.Done || ex.FilesUploaded == 0 || ex.BytesUploaded != ex.BytesTotal {
		t.Fatalf("export: %+v", ex)
	}
	if out := ok("restore", "--from", bucket, "--list"); !strings.Contains(out, id) {
		t.Fatalf("restore --list:\n%s", out)
	}

	// Restore into a new data dir and start a one-node cluster on it.
	ports, err := freePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	nd := &procNode{id: "r1", grpc: ports[0], raft: ports[1], http: ports[2], dir: filepath.Join(t.TempDir(), "r1")}
	nd.log = nd.dir + ".log"
	if out := ok("restore", "--from", bucket+"/"+id, "--data-dir", nd.dir, "--node-id", "r1", "--raft-addr", nd.raft); !strings.Contains(out, "restored checkpoint "+id) {
		t.Fatalf("restore: %q", out)
	}
	if _, errOut, code := runCLI(t, nil, "restore", "--from", bucket, "--data-dir", nd.dir, "--node-id", "r1"); code == 0 || !strings.Contains(errOut, "already holds state") {
		t.Fatalf("second restore into the same dir: exit %d, %q", code, errOut)
	}
	c2 := &procCluster{t: t, nodes: []*procNode{nd}}
	t.Cleanup(c2.stopAll)
	c2.start(nd)
	cl2 := c2.client()
	c2.waitLeader(ctx, cl2)
	v, _, err := cl2.Get(ctx, []byte("k049"))
	if err != nil || string(v.Bytes) != "v49" {
		t.Fatalf("restored node: k049 = %q, %v", v.Bytes, err)
	}
	offs, err := cl2.GetOffsets(ctx, "etl")
	if err != nil || len(offs.GetOffsets()) != 1 || offs.GetOffsets()[0].GetSource() != "clicks-3" || offs.GetOffsets()[0].GetOffset() != 9001 {
		t.Fatalf("restored producer offsets: %v, %v", offs, err)
	}
	if _, err := cl2.Put(ctx, []byte("new"), []byte("write")); err != nil {
		t.Fatal(err)
	}
}
