package netfault

import (
	"github.com/cairn-db/cairn/jepsen/cluster"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

type fakeRunner struct {
	cmds   []string
	output map[string]string // command prefix -> output
}

func (f *fakeRunner) run(name string, args ...string) ([]byte, error) {
	c := name + " " + strings.Join(args, " ")
	f.cmds = append(f.cmds, c)
	for p, out := range f.output {
		if strings.HasPrefix(c, p) {
			return []byte(out), nil
		}
	}
	return nil, nil
}

func (f *fakeRunner) grep(s string) []string {
	var out []string
	for _, c := range f.cmds {
		if strings.Contains(c, s) {
			out = append(out, c)
		}
	}
	return out
}

func TestPartitionRulesOnlyCrossGroups(t *testing.T) {
	f := &fakeRunner{}
	eps := []Endpoint{{"n1", "127.0.0.11", "cj/n1"}, {"n2", "127.0.0.12", "cj/n2"}, {"n3", "127.0.0.13", "cj/n3"}}
	n, err := New("t1", eps, f.run)
	if err != nil {
		t.Fatal(err)
	}
	if j := f.grep("-I OUTPUT"); len(j) != 1 || !strings.Contains(j[0], "-j CAIRNJ-t1") || !strings.Contains(j[0], Comment) {
		t.Fatalf("jump: %v", f.cmds)
	}
	if err := n.Partition([][]string{{"n1"}, {"n2", "n3"}}); err != nil {
		t.Fatal(err)
	}
	drops := f.grep("-j DROP")
	var pairs []string
	for _, d := range drops {
		i := strings.Index(d, "--comment ")
		pairs = append(pairs, strings.Fields(d[i+10:])[0])
		if !strings.Contains(d, "-A CAIRNJ-t1") {
			t.Fatalf("rule outside our chain: %s", d)
		}
	}
	sort.Strings(pairs)
	// Two matchers (address pair, cgroup) per directed cross-group pair.
	want := "n1->n2 n1->n2 n1->n3 n1->n3 n2->n1 n2->n1 n3->n1 n3->n1"
	if strings.Join(pairs, " ") != want {
		t.Fatalf("dropped pairs %v, want %s", pairs, want)
	}
	for _, d := range drops {
		if strings.Contains(d, "127.0.0.1 ") || strings.HasSuffix(d, "127.0.0.1") {
			t.Fatalf("rule matches the clients' address: %s", d)
		}
		if !strings.Contains(d, "-d 127.0.0.1") { // every rule names a node destination
			t.Fatalf("rule without node destination: %s", d)
		}
	}
	if len(f.grep("--path cj/n1 -d 127.0.0.12")) != 1 {
		t.Fatalf("cgroup matcher missing: %v", drops)
	}
	f.cmds = nil
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"-F CAIRNJ-t1", "-D OUTPUT", "-X CAIRNJ-t1"} {
		if len(f.grep(want)) == 0 {
			t.Fatalf("close did not %s: %v", want, f.cmds)
		}
	}
}

func TestCleanRemovesOnlyOurChains(t *testing.T) {
	f := &fakeRunner{output: map[string]string{
		"iptables -w -t filter -S": `-P INPUT ACCEPT
-P OUTPUT ACCEPT
-N CAIRNJ-abc123
-N DOCKER
-A OUTPUT -m comment --comment cairn-jepsen -j CAIRNJ-abc123
-A OUTPUT -j DOCKER
-A CAIRNJ-abc123 -s 127.0.0.11/32 -d 127.0.0.12/32 -j DROP
`,
		"iptables -w -t mangle -S": "-P OUTPUT ACCEPT\n",
		"tc qdisc show dev lo":     "qdisc noqueue 0: root refcnt 2\n",
	}}
	// A fake cgroup root: ours (cairn-jepsen-*) is removed, others stay.
	// Never the machine's: Clean kills what runs in its jepsen cgroups,
	// which are other runs' nodes while this test runs.
	cg := t.TempDir()
	for _, d := range []string{cluster.CgroupPrefix + "leftover", "system.slice"} {
		if err := os.Mkdir(filepath.Join(cg, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	done, err := clean(f.run, cg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cg, cluster.CgroupPrefix+"leftover")); !os.IsNotExist(err) {
		t.Fatalf("our leftover cgroup is still there (%v)", err)
	}
	if _, err := os.Stat(filepath.Join(cg, "system.slice")); err != nil {
		t.Fatalf("a foreign cgroup was touched: %v", err)
	}
	if d := f.grep("-D OUTPUT"); len(d) != 1 || !strings.Contains(d[0], "-j CAIRNJ-abc123") {
		t.Fatalf("jump removal: %v", f.cmds)
	}
	if len(f.grep("DOCKER")) != 0 && len(f.grep("-X DOCKER")) != 0 {
		t.Fatalf("touched a foreign chain: %v", f.cmds)
	}
	if len(f.grep("-X CAIRNJ-abc123")) != 1 || len(f.grep("tc qdisc del")) != 0 {
		t.Fatalf("commands: %v", f.cmds)
	}
	if len(done) < 2 {
		t.Fatalf("report: %v", done)
	}
}

func TestBlockPortThenUnpartitionKeepsOnlyThePortRule(t *testing.T) {
	f := &fakeRunner{}
	eps := []Endpoint{{"n1", "127.0.0.11", "cj/n1"}, {"n2", "127.0.0.12", "cj/n2"}, {"n3", "127.0.0.13", "cj/n3"}}
	n, err := New("t3", eps, f.run)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Partition([][]string{{"n2"}, {"n1", "n3"}}); err != nil {
		t.Fatal(err)
	}
	added := f.grep("-A CAIRNJ-t3")
	if err := n.BlockPort("n2", "n1", 4242); err != nil {
		t.Fatal(err)
	}
	block := f.grep("--dport 4242")
	if len(block) != 2 {
		t.Fatalf("port rules: %v", block)
	}
	for _, b := range block {
		if !strings.Contains(b, "-I CAIRNJ-t3 1") || !strings.Contains(b, "-d 127.0.0.11") || !strings.Contains(b, "-p tcp") {
			t.Fatalf("port rule: %s", b)
		}
	}
	if err := n.Unpartition(); err != nil {
		t.Fatal(err)
	}
	deleted := f.grep("-D CAIRNJ-t3")
	if len(deleted) != len(added) {
		t.Fatalf("deleted %d rules, partition added %d", len(deleted), len(added))
	}
	for i := range added {
		if strings.Replace(added[i], "-A CAIRNJ-t3", "-D CAIRNJ-t3", 1) != deleted[i] {
			t.Fatalf("delete %q does not match add %q", deleted[i], added[i])
		}
		if strings.Contains(deleted[i], "dport") {
			t.Fatalf("port rule deleted: %s", deleted[i])
		}
	}
	if err := n.Unpartition(); err != nil || len(f.grep("-D CAIRNJ-t3")) != len(added) {
		t.Fatal("a second Unpartition deleted rules again")
	}
	if err := n.BlockPort("n2", "n9", 1); err == nil {
		t.Fatal("unknown node accepted")
	}
	if err := n.BlockPort("n2", "n1", 0); err == nil {
		t.Fatal("port 0 accepted")
	}
}
