package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// cpuTimes is the machine's aggregate CPU time by state, from the "cpu"
// line of /proc/stat (Linux; in USER_HZ ticks). Benchmarks print the share
// of idle and stolen time over their measured phase: on a shared VM, time
// stolen by the hypervisor moves results more than most changes do.
type cpuTimes struct {
	idle, steal, total uint64
}

// readCPUTimes reads /proc/stat; ok is false where there is none.
func readCPUTimes() (cpuTimes, bool) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return cpuTimes{}, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if t, err := parseCPULine(sc.Text()); err == nil {
			return t, true
		}
	}
	return cpuTimes{}, false
}

// parseCPULine parses /proc/stat's aggregate line: "cpu user nice system
// idle iowait irq softirq steal guest guest_nice". Guest time is already
// counted in user and nice, so it is left out of the total.
func parseCPULine(line string) (cpuTimes, error) {
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return cpuTimes{}, fmt.Errorf("not the aggregate cpu line: %q", line)
	}
	var t cpuTimes
	for i, s := range f[1:] {
		if i >= 8 { // guest, guest_nice
			break
		}
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return cpuTimes{}, fmt.Errorf("cpu line field %d: %w", i+1, err)
		}
		t.total += v
		switch i {
		case 3: // idle
			t.idle += v
		case 4: // iowait: idle, waiting for I/O
			t.idle += v
		case 7:
			t.steal = v
		}
	}
	return t, nil
}

// cpuShares returns the idle and stolen percentages of the CPU time
// between a and b; ok is false if no time passed (or the counters went
// backwards).
func cpuShares(a, b cpuTimes) (idlePct, stealPct float64, ok bool) {
	if b.total <= a.total || b.idle < a.idle || b.steal < a.steal {
		return 0, 0, false
	}
	d := float64(b.total - a.total)
	return 100 * float64(b.idle-a.idle) / d, 100 * float64(b.steal-a.steal) / d, true
}

// procCPU is the CPU time a process has run so far, all its threads
// together, from the first field of each /proc/PID/task/*/schedstat
// (Linux; nanoseconds, unlike /proc/PID/stat's 10 ms ticks, so that a
// create of a few ms can be measured); ok is false where there is none.
// Threads that exited in between are missed: Go keeps its threads.
func procCPU(pid int) (time.Duration, bool) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, false
	}
	var sum time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue // the thread exited
		}
		ns, err := parseSchedstat(string(b))
		if err != nil {
			return 0, false
		}
		sum += ns
	}
	return sum, len(tasks) > 0
}

// parseSchedstat reads the time on the CPU from a schedstat line ("run
// wait timeslices", the first two in nanoseconds).
func parseSchedstat(line string) (time.Duration, error) {
	f := strings.Fields(line)
	if len(f) < 1 {
		return 0, fmt.Errorf("empty schedstat")
	}
	v, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("schedstat: %w", err)
	}
	return time.Duration(v), nil
}
