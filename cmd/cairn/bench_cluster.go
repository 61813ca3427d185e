package main

// What `bench restart` and `bench checkpoint` share: clusters of
// `cairn serve` processes on free ports in a benchmark data directory.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cairn-db/cairn/api"
	pb "github.com/cairn-db/cairn/api/cairnpb"
	"github.com/cairn-db/cairn/jepsen/cluster"
)

// benchDataDir returns dir, created if missing, or else a new temporary
// directory that done removes unless keep.
func benchDataDir(dir, tmpPrefix string, keep bool) (_ string, done func(), err error) {
	if dir != "" {
		return dir, func() {}, os.MkdirAll(dir, 0o755)
	}
	d, err := os.MkdirTemp("", tmpPrefix)
	if err != nil {
		return "", nil, err
	}
	if keep {
		return d, func() {}, nil
	}
	return d, func() { os.RemoveAll(d) }, nil
}

// benchProc is one `cairn serve` process slot of a benchmark cluster; its
// ports and data dir survive restarts.
type benchProc struct {
	id, dir, log     string
	grpc, raft, http string
	cmd              *exec.Cmd
	done             chan struct{}
}

// layoutBenchProcs lays out n process slots n1..nN in dir on free ports,
// without starting them.
func layoutBenchProcs(dir string, n int) ([]*benchProc, error) {
	ports, err := freePorts(3 * n)
	if err != nil {
		return nil, err
	}
	procs := make([]*benchProc, n)
	for i := range procs {
		p := &benchProc{id: fmt.Sprintf("n%d", i+1), grpc: ports[3*i], raft: ports[3*i+1], http: ports[3*i+2]}
		p.dir, p.log = filepath.Join(dir, p.id), filepath.Join(dir, p.id+".log")
		procs[i] = p
	}
	return procs, nil
}

// bootstrapList is the --bootstrap value that makes procs one cluster.
func bootstrapList(procs []*benchProc) string {
	peers := make([]string, len(procs))
	for i, p := range procs {
		peers[i] = p.id + "=" + p.raft
	}
	return strings.Join(peers, ",")
}

// start runs `cairn serve` (bin) on p's ports and data dir, with args
// after those, its output appended to p.log.
func (p *benchProc) start(bin string, args ...string) error {
	lf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer lf.Close()
	all := append([]string{"serve", "--node-id", p.id, "--data-dir", p.dir, "--grpc-addr", p.grpc,
		"--raft-addr", p.raft, "--http-addr", p.http}, args...)
	c := exec.Command(bin, all...)
	c.Stdout, c.Stderr = lf, lf
	detach(c)
	if err := c.Start(); err != nil {
		return fmt.Errorf("bench: start %s: %w", p.id, err)
	}
	p.cmd, p.done = c, make(chan struct{})
	go func() { _ = c.Wait(); close(p.done) }()
	return nil
}

// pid is the running process's id (0 if it is not running).
func (p *benchProc) pid() int {
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// stop signals the process and waits for it to exit; after a minute it
// kills it. A process that does not exit cleanly after SIGTERM is an
// error too.
func (p *benchProc) stop(sig syscall.Signal) error {
	if p.cmd == nil {
		return nil
	}
	defer func() { p.cmd = nil }()
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("bench: %s did not stop within a minute of %v (see %s)", p.id, sig, p.log)
	}
	if sig == syscall.SIGTERM && !p.cmd.ProcessState.Success() {
		return fmt.Errorf("bench: %s exited with %v after SIGTERM (see %s)", p.id, p.cmd.ProcessState, p.log)
	}
	return nil
}

// metrics reads the named counters and gauges from p's /metrics in one
// scrape, each summed over its label sets (0 when absent).
func (p *benchProc) metrics(ctx context.Context, names ...string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.http+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return cluster.ParseMetrics(resp.Body, names...)
}

// localStatus asks one node for its own status.
func (p *benchProc) localStatus(ctx context.Context) (*pb.NodeStatus, error) {
	cc, err := grpc.NewClient(p.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := pb.NewClusterClient(cc).Status(ctx, &pb.StatusRequest{Local: true})
	if err != nil {
		return nil, err
	}
	if len(st.GetNodes()) != 1 {
		return nil, errors.New("local status without a node")
	}
	return st.GetNodes()[0], nil
}

// waitUntil polls cond every 20 ms until it holds, for at most d.
func waitUntil(ctx context.Context, what string, d time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(d)
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: %s: not within %v (last error: %v)", what, d, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func randomValue(rng *rand.Rand, n int) []byte {
	v := make([]byte, n)
	for j := 0; j < n; j += 8 {
		x := rng.Uint64()
		for b := 0; b < 8 && j+b < n; b++ {
			v[j+b] = byte(x >> (8 * b))
		}
	}
	return v
}

// loadValues writes n random values of valueSize bytes under key(0..n-1),
// in batches of about batchBytes, loaders batches at a time. A batch whose
// outcome is unknown is sent again (puts of the same values). With a
// progress writer it reports the keys written every 10 s.
func loadValues(ctx context.Context, c *api.Client, loaders, batchBytes, valueSize int, n int64,
	key func(int64) []byte, progress io.Writer) error {
	per := int64(max(1, batchBytes/valueSize))
	var next, written atomic.Int64
	if progress != nil {
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			t := time.NewTicker(10 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					fmt.Fprintf(progress, "  %d / %d keys\n", written.Load(), n)
				}
			}
		}()
	}
	var wg sync.WaitGroup
	errs := make([]error, loaders)
	for g := range loaders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), uint64(time.Now().UnixNano())))
			for ctx.Err() == nil {
				lo := next.Add(per) - per
				if lo >= n {
					return
				}
				hi := min(lo+per, n)
				ops := make([]*pb.Op, 0, hi-lo)
				for k := lo; k < hi; k++ {
					ops = append(ops, api.PutOp(key(k), randomValue(rng, valueSize)))
				}
				for {
					_, err := c.Batch(ctx, ops...)
					if err == nil {
						break
					}
					// An unknown outcome is retried (a Batch of Puts may
					// apply twice), unless the load was cancelled: every
					// attempt with a cancelled context is unknown too.
					if !errors.Is(err, api.ErrUnknownOutcome) || ctx.Err() != nil {
						errs[g] = err
						return
					}
				}
				written.Add(hi - lo)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return ctx.Err()
}
