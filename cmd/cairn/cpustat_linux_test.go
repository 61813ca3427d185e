//go:build linux

package main

import (
	"os"
	"testing"
	"time"
)

// procCPU counts this process's threads' CPU time in nanoseconds: work
// done in between shows up, to well under the 10 ms of /proc/PID/stat.
func TestProcCPUCountsWork(t *testing.T) {
	before, ok := procCPU(os.Getpid())
	if !ok || before <= 0 {
		t.Fatalf("procCPU = %v, %v", before, ok)
	}
	x := 0
	deadline := time.Now().Add(10 * time.Second)
	for {
		for i := 0; i < 1_000_000; i++ {
			x += i
		}
		now, ok := procCPU(os.Getpid())
		if !ok {
			t.Fatal("procCPU failed")
		}
		if d := now - before; d >= 2*time.Millisecond {
			if d%(10*time.Millisecond) == 0 {
				t.Fatalf("CPU grew by %v, a multiple of 10 ms: ticks, not nanoseconds", d)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CPU did not grow in 10 s of work (x=%d)", x)
		}
	}
	if _, ok := procCPU(1 << 30); ok {
		t.Fatal("procCPU of a pid that does not exist reported ok")
	}
}
