// Starting, stopping and measuring the clusters under test.

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// system is one cluster under test.
type system struct {
	name    string
	kind    string // "etcd" or "cairn"
	bin     string
	flags   []string
	procs   []*proc
	clients []string // client endpoints host:port
	http    []string // cairn: HTTP addresses
}

type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

func startProc(dir, logName, bin string, args ...string) (*proc, error) {
	lf, err := os.Create(filepath.Join(dir, logName))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = ownProcessGroup()
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{}), log: lf}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.log.Close()
}

// cpuTime sums user and system CPU of the system's processes (Linux).
func (s *system) cpuTime() time.Duration {
	var total time.Duration
	for _, p := range s.procs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
		if err != nil {
			continue
		}
		// Fields after the parenthesised command name; utime and stime are
		// fields 14 and 15 of the line, in clock ticks (USER_HZ = 100).
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(u+st) * 10 * time.Millisecond
	}
	return total
}

func (s *system) stop() {
	for _, p := range s.procs {
		p.stop()
	}
	s.procs = nil
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

func (s *system) start(ctx context.Context, root string) error {
	dir := filepath.Join(root, s.name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ports, err := freePorts(9)
	if err != nil {
		return err
	}
	addr := func(p int) string { return fmt.Sprintf("127.0.0.1:%d", p) }
	var health []string
	switch s.kind {
	case "etcd":
		var initial []string
		for i := 0; i < 3; i++ {
			initial = append(initial, fmt.Sprintf("e%d=http://%s", i+1, addr(ports[3+i])))
		}
		for i := 0; i < 3; i++ {
			name := fmt.Sprintf("e%d", i+1)
			cu, pu := "http://"+addr(ports[i]), "http://"+addr(ports[3+i])
			p, err := startProc(dir, name+".log", s.bin, "--name", name, "--data-dir", filepath.Join(dir, name),
				"--listen-client-urls", cu, "--advertise-client-urls", cu, "--listen-peer-urls", pu, "--initial-advertise-peer-urls", pu,
				"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new", "--initial-cluster-token", "compare")
			if err != nil {
				return err
			}
			s.procs = append(s.procs, p)
			s.clients = append(s.clients, addr(ports[i]))
			health = append(health, cu+"/health")
		}
	case "cairn":
		var peers []string
		for i := 0; i < 3; i++ {
			peers = append(peers, fmt.Sprintf("n%d=%s", i+1, addr(ports[3+i])))
		}
		for i := 0; i < 3; i++ {
			name := fmt.Sprintf("n%d", i+1)
			args := []string{"serve", "--node-id", name, "--data-dir", filepath.Join(dir, name),
				"--grpc-addr", addr(ports[i]), "--raft-addr", addr(ports[3+i]), "--http-addr", addr(ports[6+i]),
				"--bootstrap", strings.Join(peers, ",")}
			p, err := startProc(dir, name+".log", s.bin, append(args, s.flags...)...)
			if err != nil {
				return err
			}
			s.procs = append(s.procs, p)
			s.clients = append(s.clients, addr(ports[i]))
			s.http = append(s.http, addr(ports[6+i]))
			health = append(health, "http://"+addr(ports[6+i])+"/readyz")
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, u := range health {
		for {
			if ok, _ := httpOK(ctx, u); ok {
				break
			}
			for _, p := range s.procs {
				select {
				case <-p.done:
					return fmt.Errorf("a %s process exited; see %s", s.name, p.log.Name())
				default:
				}
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("%s not ready after 60s (%s)", s.name, u)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nil
}

func httpOK(ctx context.Context, url string) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return false, string(b)
	}
	// etcd's /health answers 200 with {"health":"false"} while it has no leader.
	if strings.Contains(string(b), `"health":"false"`) {
		return false, string(b)
	}
	return true, string(b)
}
