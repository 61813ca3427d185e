package main

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
)

// TestCLI runs the built binary's client and admin commands against a
// three-process cluster.
func TestCLI(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Second)
	defer cancel()
	c := startProcCluster(t, 3)
	cl := c.client()
	c.waitLeader(ctx, cl)
	eps := "--endpoints=" + strings.Join(c.endpoints(), ",")
	run := func(args ...string) (string, string, int) {
		t.Helper()
		return runCLI(t, nil, append([]string{eps}, args...)...)
	}
	ok := func(args ...string) string {
		t.Helper()
		out, errOut, code := run(args...)
		if code != 0 {
			t.Fatalf("cairn %s: exit %d, stderr %q", strings.Join(args, " "), code, errOut)
		}
		return out
	}

	// put / get, text and JSON.
	if out := ok("put", "k1", "hello world"); !regexp.MustCompile(`^OK index=[1-9][0-9]*\n$`).MatchString(out) {
		t.Errorf("put output %q, want OK index=N", out)
	}
	for _, cons := range []string{"linearizable", "lease", "stale"} {
		// A stale read may be served by a follower that has not applied
		// the put yet, so poll it; the others must see it at once.
		got := ""
		for deadline := time.Now().Add(10 * time.Second); ; {
			got = ok("get", "k1", "--consistency", cons)
			if got == "hello world\n" || cons != "stale" || time.Now().After(deadline) {
				break
			}
		}
		if got != "hello world\n" {
			t.Errorf("get --consistency %s = %q, want %q", cons, got, "hello world\n")
		}
	}
	var gj map[string]any
	if err := json.Unmarshal([]byte(ok("get", "k1", "-o", "json")), &gj); err != nil {
		t.Fatal(err)
	}
	if gj["key"] != "k1" || gj["value"] != "hello world" || gj["type"] != "bytes" || gj["index"].(float64) < 1 {
		t.Errorf("get -o json = %v", gj)
	}
	// An integer made by an AddOp reads in decimal, typed int in JSON.
	if _, err := cl.Batch(ctx, api.AddOp([]byte("counter"), 40), api.AddOp([]byte("counter"), 2)); err != nil {
		t.Fatal(err)
	}
	if out := ok("get", "counter"); out != "42\n" {
		t.Errorf("get counter = %q, want 42", out)
	}
	if err := json.Unmarshal([]byte(ok("get", "counter", "-o", "json")), &gj); err != nil {
		t.Fatal(err)
	}
	if gj["type"] != "int" || gj["value"] != float64(42) {
		t.Errorf("get counter -o json = %v, want type int value 42", gj)
	}
	// A missing key: exit 1, "not found" on stderr, nothing on stdout.
	out, errOut, code := run("get", "no-such-key")
	if code != 1 || !strings.Contains(errOut, "not found") || out != "" {
		t.Errorf("get missing: exit %d, stdout %q, stderr %q; want exit 1 and \"not found\" on stderr", code, out, errOut)
	}

	// scan: pagination, limits, ranges, JSON.
	var want []string
	for i := range 7 {
		k := fmt.Sprintf("s/%02d", i)
		ok("put", k, "v"+k)
		want = append(want, k+"\tv"+k)
	}
	lines := func(s string) []string { return strings.Split(strings.TrimSuffix(s, "\n"), "\n") }
	if got := lines(ok("scan", "--prefix", "s/", "--page-size", "2")); !slices.Equal(got, want) {
		t.Errorf("scan --prefix s/ --page-size 2 = %q, want %q", got, want)
	}
	out, errOut, code = run("scan", "--prefix", "s/", "--page-size", "2", "--limit", "3")
	if code != 0 || !slices.Equal(lines(out), want[:3]) || !strings.Contains(errOut, "more keys") {
		t.Errorf("scan --limit 3: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if got := lines(ok("scan", "--start", "s/02", "--end", "s/05")); !slices.Equal(got, want[2:5]) {
		t.Errorf("scan --start s/02 --end s/05 = %q, want %q", got, want[2:5])
	}
	var sj struct {
		KVs []struct {
			Key, Type string
			Value     any
		}
		Count int
		More  bool
	}
	if err := json.Unmarshal([]byte(ok("scan", "--prefix", "s/", "-o", "json", "--limit", "0")), &sj); err != nil {
		t.Fatal(err)
	}
	if sj.Count != 7 || len(sj.KVs) != 7 || sj.More || sj.KVs[6].Key != "s/06" || sj.KVs[6].Value != "vs/06" || sj.KVs[6].Type != "bytes" {
		t.Errorf("scan -o json = %+v", sj)
	}

	// del.
	if out := ok("del", "k1"); !strings.HasPrefix(out, "OK index=") {
		t.Errorf("del output %q", out)
	}
	if _, errOut, code := run("get", "k1"); code != 1 || !strings.Contains(errOut, "not found") {
		t.Errorf("get after del: exit %d, stderr %q", code, errOut)
	}

	// Endpoints from the environment.
	out, errOut, code = runCLI(t, []string{"CAIRN_ENDPOINTS=" + strings.Join(c.endpoints(), ",")}, "get", "s/00")
	if code != 0 || out != "vs/00\n" {
		t.Errorf("get with CAIRN_ENDPOINTS: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// An unreachable cluster: a clear message and exit 1.
	dead, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	_, errOut, code = runCLI(t, nil, "--endpoints", dead[0], "--timeout", "1s", "put", "a", "b")
	if code != 1 || !strings.Contains(errOut, "is the cluster running?") || !strings.Contains(errOut, dead[0]) {
		t.Errorf("put to nothing: exit %d, stderr %q", code, errOut)
	}

	// cluster status -o json: exactly the documented fields, one leader,
	// the pids of our processes.
	statusJSON := func() []map[string]any {
		t.Helper()
		var st struct{ Nodes []map[string]any }
		if err := json.Unmarshal([]byte(ok("cluster", "status", "-o", "json")), &st); err != nil {
			t.Fatal(err)
		}
		return st.Nodes
	}
	fields := []string{"applied_index", "commit_index", "grpc_address", "id", "note", "pid", "raft_address", "role", "term", "voter"}
	nodes := statusJSON()
	if len(nodes) != 3 {
		t.Fatalf("cluster status: %d nodes, want 3: %v", len(nodes), nodes)
	}
	leaders := 0
	for i, n := range nodes {
		var keys []string
		for k := range n {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if !slices.Equal(keys, fields) {
			t.Errorf("node %d has fields %v, want exactly %v", i, keys, fields)
		}
		p := c.nodes[i]
		if n["id"] != p.id || n["grpc_address"] != p.grpc || n["raft_address"] != p.raft || int(n["pid"].(float64)) != p.cmd.Process.Pid {
			t.Errorf("node %d = %v, want %s grpc %s raft %s pid %d", i, n, p.id, p.grpc, p.raft, p.cmd.Process.Pid)
		}
		if n["voter"] != true || n["note"] != "" {
			t.Errorf("node %d = %v, want a voter with no note", i, n)
		}
		switch n["role"] {
		case "leader":
			leaders++
		case "follower":
		default:
			t.Errorf("node %s role %v", n["id"], n["role"])
		}
	}
	if leaders != 1 {
		t.Errorf("%d leaders in %v", leaders, nodes)
	}
	if out := ok("cluster", "status"); !strings.Contains(out, "ROLE") || !strings.Contains(out, "leader") {
		t.Errorf("cluster status table:\n%s", out)
	}

	// transfer-leader moves leadership to the named node.
	var target string
	for _, n := range nodes {
		if n["role"] == "follower" {
			target = n["id"].(string)
			break
		}
	}
	if out := ok("cluster", "transfer-leader", target); out != "OK leader is "+target+"\n" {
		t.Errorf("transfer-leader %s: %q", target, out)
	}
	waitFor(ctx, t, "leadership on "+target, func() (bool, string) {
		for _, n := range statusJSON() {
			if n["role"] == "leader" {
				return n["id"] == target, fmt.Sprintf("leader %v", n["id"])
			}
		}
		return false, "no leader"
	})

	// cluster add (a non-voter started without --bootstrap) and remove.
	extra, err := freePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	n4 := &procNode{id: "n4", grpc: extra[0], raft: extra[1], http: extra[2], dir: t.TempDir()}
	n4.log = n4.dir + ".log"
	c.nodes = append(c.nodes, n4) // stopped and logged with the others
	c.start(n4)
	if out := ok("cluster", "add", "n4", n4.raft, "--grpc-addr", n4.grpc, "--non-voter"); !strings.HasPrefix(out, "OK added n4 (non-voter)") {
		t.Errorf("cluster add: %q", out)
	}
	waitFor(ctx, t, "n4 replicating", func() (bool, string) {
		for _, n := range statusJSON() {
			if n["id"] == "n4" {
				return n["role"] == "follower" && n["applied_index"].(float64) > 0, fmt.Sprintf("%v", n)
			}
		}
		return false, "n4 not listed"
	})
	if out := ok("cluster", "remove", "n4"); out != "OK removed n4\n" {
		t.Errorf("cluster remove: %q", out)
	}
	if nodes := statusJSON(); len(nodes) != 3 {
		t.Errorf("after remove: %d nodes: %v", len(nodes), nodes)
	}
	// The removed node exits by itself, status 0 (nothing to restart).
	select {
	case <-n4.done:
		if code := n4.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("removed n4 exited with status %d", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("removed n4 still runs 30 s after its removal")
	}
	if l := logTail(n4.log, 40); !strings.Contains(l, "removed from the cluster") {
		t.Errorf("n4's log does not say it was removed:\n%s", l)
	}
}
