package main

import (
	"math"
	"testing"
	"time"
)

func TestParseCPULine(t *testing.T) {
	for _, tc := range []struct {
		line             string
		idle, steal, tot uint64
		wantErr          bool
	}{
		// user nice system idle iowait irq softirq steal guest guest_nice
		{line: "cpu  100 5 50 800 20 1 4 20 30 0", idle: 820, steal: 20, tot: 1000},
		{line: "cpu 10 0 10 80", idle: 80, tot: 100}, // old kernels: four fields
		{line: "cpu0 100 5 50 800 20 1 4 20 0 0", wantErr: true},
		{line: "intr 12345", wantErr: true},
		{line: "cpu  100 x 50 800", wantErr: true},
	} {
		got, err := parseCPULine(tc.line)
		if (err != nil) != tc.wantErr {
			t.Fatalf("%q: err %v, want error %v", tc.line, err, tc.wantErr)
		}
		if err == nil && (got.idle != tc.idle || got.steal != tc.steal || got.total != tc.tot) {
			t.Fatalf("%q: %+v, want idle %d steal %d total %d", tc.line, got, tc.idle, tc.steal, tc.tot)
		}
	}
}

func TestCPUShares(t *testing.T) {
	a := cpuTimes{idle: 800, steal: 20, total: 1000}
	b := cpuTimes{idle: 850, steal: 70, total: 1200}
	idle, steal, ok := cpuShares(a, b)
	if !ok || math.Abs(idle-25) > 1e-9 || math.Abs(steal-25) > 1e-9 {
		t.Fatalf("shares %.2f%% idle, %.2f%% steal, ok %v; want 25, 25, true", idle, steal, ok)
	}
	if _, _, ok := cpuShares(b, b); ok {
		t.Fatal("no time passed: want ok false")
	}
	if c, ok := readCPUTimes(); ok && c.total == 0 {
		t.Fatalf("/proc/stat read as %+v", c)
	}
}

func TestParseSchedstat(t *testing.T) {
	for _, tc := range []struct {
		line string
		want time.Duration
		ok   bool
	}{
		{"123456789 2000 17\n", 123456789, true},
		{"5", 5, true},
		{"", 0, false},
		{"x 1 2", 0, false},
	} {
		got, err := parseSchedstat(tc.line)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseSchedstat(%q) = %v, %v; want %v (ok %v)", tc.line, got, err, tc.want, tc.ok)
		}
	}
}
