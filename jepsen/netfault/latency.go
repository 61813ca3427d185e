package netfault

import (
	"errors"
	"fmt"
	"strings"
)

// Latency on node-to-node links uses tc netem on lo: an HTB root qdisc
// (handle ca1e:) whose default class carries all other loopback traffic
// untouched, a second class with a netem child for packets marked 0xca1e,
// and mangle rules in the run's chain that mark packets sent by one node to
// another. The root qdisc is global to lo: while it is installed every
// loopback packet passes through HTB (at 100 Gbit/s, so without effect on
// rate). It is removed on heal.

const (
	tcHandle = "ca1e:"
	tcMark   = "0xca1e"
)

// LatencyProbe reports whether tc netem can be used (the kernel needs
// sch_htb and sch_netem), by installing and removing the qdiscs.
func LatencyProbe(run Runner) error {
	if run == nil {
		run = ExecRunner
	}
	n := &Net{run: run}
	if err := n.tcLoadLocked("delay 1ms"); err != nil {
		return err
	}
	return n.tcUnloadLocked()
}

func (n *Net) tc(args ...string) error {
	_, err := n.run("tc", args...)
	return err
}

func (n *Net) tcLoadLocked(netem string) error {
	steps := [][]string{
		{"qdisc", "add", "dev", "lo", "root", "handle", tcHandle, "htb", "default", "1"},
		{"class", "add", "dev", "lo", "parent", tcHandle, "classid", tcHandle + "1", "htb", "rate", "100gbit"},
		{"class", "add", "dev", "lo", "parent", tcHandle, "classid", tcHandle + "2", "htb", "rate", "100gbit"},
		append([]string{"qdisc", "add", "dev", "lo", "parent", tcHandle + "2", "handle", "ca12:", "netem"}, strings.Fields(netem)...),
		{"filter", "add", "dev", "lo", "parent", tcHandle, "protocol", "ip", "prio", "1", "handle", tcMark, "fw", "flowid", tcHandle + "2"},
	}
	n.tcLoaded = true
	for _, s := range steps {
		if err := n.tc(s...); err != nil {
			return errors.Join(fmt.Errorf("netfault: tc netem unavailable: %w", err), n.tcUnloadLocked())
		}
	}
	return nil
}

func (n *Net) tcUnloadLocked() error {
	n.tcLoaded = false
	out, err := n.run("tc", "qdisc", "show", "dev", "lo")
	if err != nil {
		return err
	}
	if !strings.Contains(string(out), "qdisc htb "+tcHandle) {
		return nil
	}
	return n.tc("qdisc", "del", "dev", "lo", "root", "handle", tcHandle)
}

// Delay adds netem delay (e.g. "delay 50ms 20ms loss 2%") to the given
// links, replacing whatever rules were in force.
func (n *Net) Delay(links []Link, netem string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.flushLocked(); err != nil {
		return err
	}
	if !n.mangle {
		if err := n.ipt("-t", "mangle", "-N", n.chain); err != nil {
			return err
		}
		n.mangle = true
		if err := n.ipt("-t", "mangle", "-I", "OUTPUT", "-m", "comment", "--comment", Comment, "-j", n.chain); err != nil {
			return err
		}
	}
	if err := n.tcLoadLocked(netem); err != nil {
		return err
	}
	for _, l := range links {
		ms, err := n.matchers(l.From, l.To)
		if err != nil {
			return err
		}
		for _, m := range ms {
			args := append([]string{"-t", "mangle", "-A", n.chain}, m...)
			args = append(args, "-m", "comment", "--comment", l.From+"->"+l.To+" netem", "-j", "MARK", "--set-mark", tcMark)
			if err := n.ipt(args...); err != nil {
				return err
			}
		}
	}
	n.active, n.desc = true, fmt.Sprintf("netem %q on %d links", netem, len(links))
	return nil
}
