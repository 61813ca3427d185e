package netfault

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cairn-db/cairn/jepsen/cluster"
)

// Clean removes everything a crashed run may have left: jumps to and
// CAIRNJ- chains in the filter and mangle tables, the lo root qdisc with
// our handle, and cairn-jepsen- cgroups (after killing any process still
// in them). It returns what it removed.
//
// It acts on every run's leftovers, so it is for when no run is going on:
// the cgroup part kills the processes of any run still going.
func Clean(run Runner) ([]string, error) {
	root, err := cluster.Cgroup2Root()
	if err != nil {
		root = "" // no cgroup2: nothing of ours there
	}
	return clean(run, root)
}

// clean is Clean with the cgroup2 root given ("" skips cgroups), so that
// tests never touch the machine's cgroups: a test once killed every
// jepsen run's nodes on the machine while it ran.
func clean(run Runner, cgroupRoot string) ([]string, error) {
	if run == nil {
		run = ExecRunner
	}
	var done []string
	var errs []error
	for _, table := range []string{"filter", "mangle"} {
		out, err := run("iptables", "-w", "-t", table, "-S")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var chains []string
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			switch {
			case len(f) == 2 && f[0] == "-N" && strings.HasPrefix(f[1], ChainPrefix):
				chains = append(chains, f[1])
			case len(f) > 2 && f[0] == "-A" && strings.Contains(line, "-j "+ChainPrefix):
				// Delete the jump: same rule spec with -D.
				args := append([]string{"-w", "-t", table, "-D"}, unquote(f[1:])...)
				if _, err := run("iptables", args...); err != nil {
					errs = append(errs, err)
				} else {
					done = append(done, fmt.Sprintf("iptables -t %s: removed %s", table, line))
				}
			}
		}
		for _, c := range chains {
			if _, err := run("iptables", "-w", "-t", table, "-F", c); err != nil {
				errs = append(errs, err)
			}
			if _, err := run("iptables", "-w", "-t", table, "-X", c); err != nil {
				errs = append(errs, err)
			} else {
				done = append(done, fmt.Sprintf("iptables -t %s: removed chain %s", table, c))
			}
		}
	}
	if out, err := run("tc", "qdisc", "show", "dev", "lo"); err == nil && strings.Contains(string(out), "qdisc htb "+tcHandle) {
		if _, err := run("tc", "qdisc", "del", "dev", "lo", "root", "handle", tcHandle); err != nil {
			errs = append(errs, err)
		} else {
			done = append(done, "tc: removed lo root qdisc "+tcHandle)
		}
	}
	if cgroupRoot != "" {
		dirs, _ := filepath.Glob(filepath.Join(cgroupRoot, cluster.CgroupPrefix+"*"))
		for _, d := range dirs {
			for _, pid := range cluster.CgroupPIDs(d) {
				if p, err := os.FindProcess(pid); err == nil && p.Kill() == nil {
					done = append(done, fmt.Sprintf("killed leftover process %d in %s", pid, d))
				}
			}
			if err := removeWhenEmpty(d); err != nil {
				errs = append(errs, err)
			} else {
				done = append(done, "removed cgroup "+d)
			}
		}
	}
	return done, errors.Join(errs...)
}

func removeWhenEmpty(dir string) error {
	var err error
	for range 50 {
		if err = cluster.RemoveCgroupTree(dir); err == nil {
			return nil
		}
		if _, serr := os.Stat(dir); os.IsNotExist(serr) {
			return nil
		}
		time.Sleep(20 * time.Millisecond) // poll: killed processes take a moment to leave the group
	}
	return err
}

// unquote strips the quotes iptables -S puts around comments.
func unquote(f []string) []string {
	out := make([]string, 0, len(f))
	for _, s := range f {
		out = append(out, strings.Trim(s, `"`))
	}
	return out
}
