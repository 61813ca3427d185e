// Package netfault drops and degrades traffic between cairn nodes running
// on one host, with iptables rules in a chain of the run's own
// (CAIRNJ-<run>), hooked from OUTPUT, and optionally tc netem for latency.
//
// Every node has its own loopback address, but the nodes' outgoing
// connections leave from 127.0.0.1 (the kernel's preferred source on lo;
// raftnode's dialer does not bind the node's address). A node's packets are
// therefore recognised by the cgroup v2 group of the sending socket
// (`-m cgroup --path`): the harness starts each node in its own group. Rules
// also match the (source, destination) address pair, which takes over if
// nodes ever bind their own source address. Rules only ever match packets
// sent by a node to another node's address: the harness's clients (on
// 127.0.0.1, outside the node groups) and the nodes' answers to them are
// never touched.
//
// Everything needs root and iptables. A crashed run leaves its chain and
// cgroups behind; Clean (`cairn jepsen clean`) removes every CAIRNJ- chain,
// the jump to it, the lo qdisc this package installs, and every
// cairn-jepsen- cgroup (killing processes left in it).
package netfault

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
)

// ChainPrefix starts the name of every chain this package creates.
const ChainPrefix = "CAIRNJ-"

// Comment tags the jump rules into our chains.
const Comment = "cairn-jepsen"

// Endpoint identifies a node's traffic.
type Endpoint struct {
	ID string
	IP string
	// Cgroup is the node's cgroup v2 path relative to the hierarchy root;
	// empty when nodes do not run in their own groups.
	Cgroup string
}

// Runner runs a command and returns its combined output; tests replace it.
type Runner func(name string, args ...string) ([]byte, error)

// ExecRunner runs commands for real.
func ExecRunner(name string, args ...string) ([]byte, error) {
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.Bytes(), nil
}

// Probe reports why packet filtering cannot be used here, or nil.
func Probe() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (iptables rules and cgroups): run as root, e.g. sudo")
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		return errors.New("iptables not found: apt-get install -y iptables")
	}
	// Per process: concurrent runs must not remove each other's probe chain.
	probe := fmt.Sprintf("%sprobe%d", ChainPrefix, os.Getpid())
	_, _ = ExecRunner("iptables", "-w", "-X", probe)
	if _, err := ExecRunner("iptables", "-w", "-N", probe); err != nil {
		return fmt.Errorf("cannot create an iptables chain: %w", err)
	}
	defer ExecRunner("iptables", "-w", "-X", probe) //nolint:errcheck
	if _, err := ExecRunner("iptables", "-w", "-A", probe, "-m", "cgroup", "--path", "/", "-d", "127.0.0.254", "-j", "DROP"); err != nil {
		return fmt.Errorf("iptables cgroup match unavailable (kernel xt_cgroup): %w", err)
	}
	_, _ = ExecRunner("iptables", "-w", "-F", probe)
	return nil
}

// Net manages one run's rules.
type Net struct {
	run   Runner
	chain string
	nodes map[string]Endpoint

	mu       sync.Mutex
	active   bool   // rules installed in the filter chain
	mangle   bool   // mangle chain created (latency marks)
	tcLoaded bool   // lo root qdisc installed
	desc     string // what is in force
	// partRules are the rule specs the last Partition added, so that
	// Unpartition can delete them and leave other rules in force.
	partRules [][]string
}

// New creates the run's chain and jumps to it from OUTPUT.
func New(runID string, nodes []Endpoint, run Runner) (*Net, error) {
	if run == nil {
		run = ExecRunner
	}
	n := &Net{run: run, chain: ChainPrefix + runID, nodes: map[string]Endpoint{}}
	if len(n.chain) > 28 {
		return nil, fmt.Errorf("netfault: chain name %q too long", n.chain)
	}
	for _, e := range nodes {
		n.nodes[e.ID] = e
	}
	if err := n.ipt("-N", n.chain); err != nil {
		return nil, err
	}
	if err := n.ipt("-I", "OUTPUT", "-m", "comment", "--comment", Comment, "-j", n.chain); err != nil {
		_ = n.ipt("-X", n.chain)
		return nil, err
	}
	return n, nil
}

// Chain is the run's chain name.
func (n *Net) Chain() string { return n.chain }

func (n *Net) ipt(args ...string) error {
	_, err := n.run("iptables", append([]string{"-w"}, args...)...)
	return err
}

// matchers returns the iptables match arguments for "packets sent by from
// to to's address": one per way of recognising from's traffic.
func (n *Net) matchers(from, to string) ([][]string, error) {
	a, ok := n.nodes[from]
	if !ok {
		return nil, fmt.Errorf("netfault: unknown node %q", from)
	}
	b, ok := n.nodes[to]
	if !ok {
		return nil, fmt.Errorf("netfault: unknown node %q", to)
	}
	out := [][]string{{"-s", a.IP, "-d", b.IP}}
	if a.Cgroup != "" {
		out = append(out, []string{"-m", "cgroup", "--path", a.Cgroup, "-d", b.IP})
	}
	return out, nil
}

// Partition drops every packet between nodes in different groups (both
// directions). Nodes not listed in any group are left connected to all.
// It replaces whatever rules were in force.
func (n *Net) Partition(groups [][]string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.flushLocked(); err != nil {
		return err
	}
	n.partRules = nil
	group := map[string]int{}
	for i, g := range groups {
		for _, id := range g {
			group[id] = i
		}
	}
	for a, ga := range group {
		for b, gb := range group {
			if ga == gb {
				continue
			}
			ms, err := n.matchers(a, b)
			if err != nil {
				return err
			}
			for _, m := range ms {
				spec := append(append([]string{}, m...), "-m", "comment", "--comment", a+"->"+b, "-j", "DROP")
				if err := n.ipt(append([]string{"-A", n.chain}, spec...)...); err != nil {
					return err
				}
				n.partRules = append(n.partRules, spec)
			}
		}
	}
	n.active, n.desc = true, fmt.Sprintf("partition %v", groups)
	return nil
}

// BlockPort drops every TCP packet sent by from to to's address and port,
// in addition to the rules in force (it is inserted first in the chain).
// The snapshot nemesis uses it to stall one node's checkpoint fetch from
// another while their raft traffic flows.
func (n *Net) BlockPort(from, to string, port int) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if port <= 0 || port > 65535 {
		return fmt.Errorf("netfault: bad port %d", port)
	}
	ms, err := n.matchers(from, to)
	if err != nil {
		return err
	}
	for _, m := range ms {
		args := append([]string{"-I", n.chain, "1"}, m...)
		args = append(args, "-p", "tcp", "--dport", strconv.Itoa(port),
			"-m", "comment", "--comment", fmt.Sprintf("%s->%s:%d", from, to, port), "-j", "DROP")
		if err := n.ipt(args...); err != nil {
			return err
		}
	}
	n.active = true
	if n.desc != "" {
		n.desc += "; "
	}
	n.desc += fmt.Sprintf("block %s->%s tcp port %d", from, to, port)
	return nil
}

// Unpartition deletes the rules of the last Partition and leaves any other
// rule (BlockPort) in force.
func (n *Net) Unpartition() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var errs []error
	for _, spec := range n.partRules {
		errs = append(errs, n.ipt(append([]string{"-D", n.chain}, spec...)...))
	}
	n.partRules = nil
	return errors.Join(errs...)
}

// Link is a directed node pair.
type Link struct{ From, To string }

// Loss drops each packet on the given links with probability p (iptables
// statistic match), replacing whatever rules were in force.
func (n *Net) Loss(links []Link, p float64) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.flushLocked(); err != nil {
		return err
	}
	for _, l := range links {
		ms, err := n.matchers(l.From, l.To)
		if err != nil {
			return err
		}
		for _, m := range ms {
			args := append([]string{"-A", n.chain}, m...)
			args = append(args, "-m", "statistic", "--mode", "random", "--probability", fmt.Sprintf("%.3f", p),
				"-m", "comment", "--comment", l.From+"->"+l.To+" loss", "-j", "DROP")
			if err := n.ipt(args...); err != nil {
				return err
			}
		}
	}
	n.active, n.desc = true, fmt.Sprintf("loss %.0f%% on %d links", p*100, len(links))
	return nil
}

// Heal removes every rule (the chain and its jump stay until Close).
func (n *Net) Heal() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.flushLocked()
}

func (n *Net) flushLocked() error {
	var errs []error
	if err := n.ipt("-F", n.chain); err != nil {
		errs = append(errs, err)
	}
	if n.mangle {
		if err := n.ipt("-t", "mangle", "-F", n.chain); err != nil {
			errs = append(errs, err)
		}
	}
	if n.tcLoaded {
		errs = append(errs, n.tcUnloadLocked())
	}
	n.active, n.desc, n.partRules = false, "", nil
	return errors.Join(errs...)
}

// Close removes the rules, the jumps and the chains.
func (n *Net) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	errs := []error{n.flushLocked()}
	errs = append(errs, n.ipt("-D", "OUTPUT", "-m", "comment", "--comment", Comment, "-j", n.chain))
	errs = append(errs, n.ipt("-X", n.chain))
	if n.mangle {
		errs = append(errs, n.ipt("-t", "mangle", "-D", "OUTPUT", "-m", "comment", "--comment", Comment, "-j", n.chain))
		errs = append(errs, n.ipt("-t", "mangle", "-X", n.chain))
		n.mangle = false
	}
	return errors.Join(errs...)
}

// Describe says what is in force ("" when healed).
func (n *Net) Describe() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.desc
}
