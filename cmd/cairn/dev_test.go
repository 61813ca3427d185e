//go:build unix

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// devPortBase finds a port base whose gRPC, raft and HTTP ports for nodes
// nodes are all free at the moment.
func devPortBase(t *testing.T, nodes int) int {
	t.Helper()
	for range 100 {
		base := 20000 + rand.IntN(40000)
		free := true
		for _, off := range []int{0, 100, 200} {
			for i := 1; i <= nodes && free; i++ {
				ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(base+off+i))
				if err != nil {
					free = false
					break
				}
				ln.Close()
			}
		}
		if free {
			return base
		}
	}
	t.Fatal("no free port range found")
	return 0
}

// devProc is a running `cairn dev`.
type devProc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	out    bytes.Buffer // everything printed so far
	done   chan struct{}
	exitOK bool
}

func (d *devProc) output() string { d.mu.Lock(); defer d.mu.Unlock(); return d.out.String() }

func startDev(t *testing.T, args ...string) *devProc {
	t.Helper()
	d := &devProc{done: make(chan struct{})}
	d.cmd = exec.Command(cairnBin, append([]string{"dev"}, args...)...)
	pr, pw := io.Pipe()
	d.cmd.Stdout, d.cmd.Stderr = pw, pw
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			d.mu.Lock()
			d.out.WriteString(sc.Text() + "\n")
			d.mu.Unlock()
		}
	}()
	go func() {
		err := d.cmd.Wait()
		d.exitOK = err == nil
		pw.Close()
		close(d.done)
	}()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			_ = d.cmd.Process.Signal(os.Interrupt)
			select {
			case <-d.done:
			case <-time.After(20 * time.Second):
				_ = d.cmd.Process.Kill()
			}
		}
		if t.Failed() {
			t.Logf("cairn dev output:\n%s", d.output())
		}
	})
	return d
}

// waitOutput waits until the output matches re, failing if dev exits first.
func (d *devProc) waitOutput(ctx context.Context, t *testing.T, re *regexp.Regexp) {
	t.Helper()
	for !re.MatchString(d.output()) {
		select {
		case <-d.done:
			t.Fatalf("cairn dev exited before printing %q:\n%s", re, d.output())
		case <-ctx.Done():
			t.Fatalf("cairn dev did not print %q in time:\n%s", re, d.output())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// interrupt sends SIGINT and waits for dev to exit; it returns the node
// pids dev reported.
func (d *devProc) interrupt(ctx context.Context, t *testing.T) []int {
	t.Helper()
	return d.stopWith(ctx, t, os.Interrupt)
}

// stopWith is interrupt with another signal.
func (d *devProc) stopWith(ctx context.Context, t *testing.T, sig os.Signal) []int {
	t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
	case <-ctx.Done():
		t.Fatalf("cairn dev did not exit after %v:\n%s", sig, d.output())
	}
	var pids []int
	for _, m := range regexp.MustCompile(`pid (\d+)`).FindAllStringSubmatch(d.output(), -1) {
		p, _ := strconv.Atoi(m[1])
		pids = append(pids, p)
	}
	return pids
}

// TestDev starts `cairn dev`, uses the cluster, stops it with SIGINT,
// restarts it on the same directory with its data, and checks that a taken
// port and a mismatched layout fail clearly.
func TestDev(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 55*time.Second)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "dev")
	base := devPortBase(t, 3)
	eps := fmt.Sprintf("--endpoints=127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", base+1, base+2, base+3)
	ready := regexp.MustCompile(`(?m)^ready: leader n\d`)

	d := startDev(t, "--dir", dir, "--port-base", strconv.Itoa(base))
	d.waitOutput(ctx, t, ready)
	if !strings.Contains(d.output(), "started a new 3-node cluster") || !strings.Contains(d.output(), "put hello world") {
		t.Errorf("dev output lacks the summary or the hint:\n%s", d.output())
	}
	if out, errOut, code := runCLI(t, nil, eps, "put", "dev-key", "dev-value"); code != 0 {
		t.Fatalf("put against cairn dev: exit %d: %s%s", code, out, errOut)
	}
	pids := d.interrupt(ctx, t)
	if !d.exitOK || !strings.Contains(d.output(), "all nodes stopped") {
		t.Errorf("cairn dev did not stop cleanly:\n%s", d.output())
	}
	if len(pids) != 3 {
		t.Fatalf("dev reported pids %v, want 3", pids)
	}
	for _, p := range pids {
		// dev waited for (reaped) its children, so they are gone entirely.
		if err := syscall.Kill(p, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("node pid %d still exists after dev exited (kill 0: %v)", p, err)
		}
	}
	for i := 1; i <= 3; i++ {
		if _, err := os.Stat(filepath.Join(dir, fmt.Sprintf("n%d.log", i))); err != nil {
			t.Errorf("log of n%d: %v", i, err)
		}
	}

	// Again on the same directory: the same cluster, with its data.
	d = startDev(t, "--dir", dir, "--port-base", strconv.Itoa(base))
	d.waitOutput(ctx, t, ready)
	if !strings.Contains(d.output(), "restarted the 3-node cluster") {
		t.Errorf("second run does not say it restarted:\n%s", d.output())
	}
	if out, errOut, code := runCLI(t, nil, eps, "get", "dev-key"); code != 0 || out != "dev-value\n" {
		t.Errorf("get after restart: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	// While it runs, a second dev on the same ports fails at once.
	out, errOut, code := runCLI(t, nil, "dev", "--dir", filepath.Join(t.TempDir(), "other"), "--port-base", strconv.Itoa(base))
	if code == 0 || !strings.Contains(errOut, "already in use") || !strings.Contains(errOut, fmt.Sprintf("127.0.0.1:%d", base+1)) {
		t.Errorf("dev on taken ports: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// Its terminal closes (SIGHUP): the nodes stop with it.
	pids = d.stopWith(ctx, t, syscall.SIGHUP)
	if !d.exitOK || !strings.Contains(d.output(), "all nodes stopped") {
		t.Errorf("second cairn dev did not stop cleanly on SIGHUP:\n%s", d.output())
	}
	for _, p := range pids {
		if err := syscall.Kill(p, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("node pid %d still exists after dev's SIGHUP (kill 0: %v)", p, err)
		}
	}

	// A different node count on the same directory is refused.
	_, errOut, code = runCLI(t, nil, "dev", "--dir", dir, "--port-base", strconv.Itoa(base), "--nodes", "1")
	if code == 0 || !strings.Contains(errOut, "holds a cluster of 3 nodes") {
		t.Errorf("dev with --nodes 1 on a 3-node dir: exit %d, stderr %q", code, errOut)
	}
}
