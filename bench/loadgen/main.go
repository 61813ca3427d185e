// Command loadgen drives a cairn cluster the way etcd's benchmark tool
// drives etcd, so that bench/compare can put the two side by side:
//
//	loadgen put    --clients C --conns N --key-size 16 --val-size 128 --total T --sequential-keys
//	loadgen range  KEY --consistency l|s|lease --clients C --conns N --total T
//	loadgen commit --clients C --conns N --ops-per-commit K --key-size 16 --val-size 128 --total T
//	loadgen fsync  --dir DIR --total T
//
// It uses cairn's Go client (api.Client). As in etcd's tool, N clients
// (each with its own connections) are shared round-robin by C goroutines,
// a producer goroutine hands out requests, keys are a varint of the request
// number in a --key-size buffer, and every latency is recorded. The result
// is one JSON line on stdout and a summary on stderr.
package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cairn-db/cairn/api"
	pb "github.com/cairn-db/cairn/api/cairnpb"
)

// Result is one run's outcome; bench/compare reads it as JSON.
type Result struct {
	Workload string  `json:"workload"`
	Clients  int     `json:"clients"`
	Conns    int     `json:"conns"`
	Total    int     `json:"total"`
	OK       int     `json:"ok"`
	Errors   int     `json:"errors"`
	FirstErr string  `json:"first_error,omitempty"`
	Seconds  float64 `json:"seconds"`
	// OpsPerSec counts requests (puts, gets, commits; fsyncs).
	OpsPerSec float64 `json:"ops_per_sec"`
	// UpdatesPerSec counts state updates (ops inside commits).
	UpdatesPerSec float64 `json:"updates_per_sec,omitempty"`
	P50Ms         float64 `json:"p50_ms"`
	P90Ms         float64 `json:"p90_ms"`
	P99Ms         float64 `json:"p99_ms"`
	P999Ms        float64 `json:"p999_ms"`
	MeanMs        float64 `json:"mean_ms"`
}

type options struct {
	endpoints    string
	clients      int
	conns        int
	total        int
	keySize      int
	valSize      int
	keySpace     int
	seqKeys      bool
	consistency  string
	opsPerCommit int
	commitOp     string
	dir          string
	blockSize    int
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: loadgen put|range|commit|fsync [flags]")
	}
	mode := args[0]
	var o options
	fs := flag.NewFlagSet(mode, flag.ContinueOnError)
	fs.StringVar(&o.endpoints, "endpoints", strings.Join(api.DefaultEndpoints, ","), "gRPC endpoints, comma separated")
	fs.IntVar(&o.clients, "clients", 1, "concurrent requesters")
	fs.IntVar(&o.conns, "conns", 1, "client objects (each with its own connections) shared by the requesters")
	fs.IntVar(&o.total, "total", 10000, "requests in total")
	fs.IntVar(&o.keySize, "key-size", 16, "key bytes")
	fs.IntVar(&o.valSize, "val-size", 8, "value bytes")
	fs.IntVar(&o.keySpace, "key-space-size", 1, "distinct keys")
	fs.BoolVar(&o.seqKeys, "sequential-keys", false, "keys in request order (else random)")
	fs.StringVar(&o.consistency, "consistency", "l", "range: l (linearizable), s (stale/serializable) or lease")
	fs.IntVar(&o.opsPerCommit, "ops-per-commit", 1000, "commit: ops per producer commit")
	fs.StringVar(&o.commitOp, "op", "put", "commit: put (--val-size bytes) or add (+1 to a counter)")
	fs.StringVar(&o.dir, "dir", os.TempDir(), "fsync: directory on the disk to measure")
	fs.IntVar(&o.blockSize, "block-size", 4096, "fsync: bytes written before each fdatasync")
	var key string
	rest := args[1:]
	if mode == "range" && len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		key, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		return err
	}
	if o.commitOp != "put" && o.commitOp != "add" {
		return fmt.Errorf("--op must be put or add, got %q", o.commitOp)
	}
	if o.clients < 1 || o.conns < 1 || o.total < 1 || o.keySpace < 1 {
		return errors.New("--clients, --conns, --total and --key-space-size must be >= 1")
	}
	if need := binary.PutVarint(make([]byte, binary.MaxVarintLen64), int64(o.keySpace)); o.keySize < need {
		return fmt.Errorf("--key-size %d cannot hold %d distinct keys (need %d bytes)", o.keySize, o.keySpace, need)
	}
	var res *Result
	var err error
	switch mode {
	case "put", "range", "commit":
		res, err = load(mode, key, o)
	case "fsync":
		res, err = fsyncCost(o)
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "%s: %d ok, %d errors in %.2fs: %.0f/s (updates %.0f/s) p50 %.3fms p90 %.3fms p99 %.3fms p99.9 %.3fms\n",
		res.Workload, res.OK, res.Errors, res.Seconds, res.OpsPerSec, res.UpdatesPerSec, res.P50Ms, res.P90Ms, res.P99Ms, res.P999Ms)
	if res.FirstErr != "" {
		fmt.Fprintln(os.Stderr, "first error:", res.FirstErr)
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// request is one unit of work handed to a requester.
type request struct {
	key []byte   // put, range
	ops []*pb.Op // commit
}

type worker struct {
	c    *api.Client
	prod *api.Producer
	lat  []time.Duration
	errs int
	err  error
}

func load(mode, key string, o options) (*Result, error) {
	ctx := context.Background()
	eps := strings.Split(o.endpoints, ",")
	clients := make([]*api.Client, o.conns)
	for i := range clients {
		c, err := api.NewClient(api.DefaultClientConfig(eps...))
		if err != nil {
			return nil, err
		}
		defer c.Close()
		clients[i] = c
	}
	val := make([]byte, o.valSize)
	_, _ = rand.Read(val)
	// Find the leader on every client before the clock starts (a write
	// through a follower is forwarded and names the leader), as etcd's
	// tool does with --target-leader.
	for i, c := range clients {
		if _, err := c.Put(ctx, []byte(fmt.Sprintf("loadgen/warmup/%d", i)), val); err != nil {
			return nil, fmt.Errorf("warm-up put: %w", err)
		}
	}
	if mode == "range" {
		if key == "" {
			key = "foo"
		}
		if _, err := clients[0].Put(ctx, []byte(key), val); err != nil {
			return nil, fmt.Errorf("writing the key to read: %w", err)
		}
	}
	cons := pb.Consistency_LINEARIZABLE
	switch o.consistency {
	case "l":
	case "s":
		cons = pb.Consistency_STALE
	case "lease":
		cons = pb.Consistency_LEASE
	default:
		return nil, fmt.Errorf("--consistency must be l, s or lease, got %q", o.consistency)
	}
	workers := make([]*worker, o.clients)
	tag := fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano())
	for i := range workers {
		w := &worker{c: clients[i%o.conns], lat: make([]time.Duration, 0, o.total/o.clients+1)}
		if mode == "commit" {
			p, err := w.c.RegisterProducer(ctx, fmt.Sprintf("loadgen-%s-%d", tag, i), api.ProducerOptions{MaxOps: o.opsPerCommit})
			if err != nil {
				return nil, fmt.Errorf("register producer: %w", err)
			}
			w.prod = p
		}
		workers[i] = w
	}

	reqs := make(chan request, o.clients)
	go func() {
		defer close(reqs)
		k := make([]byte, o.keySize)
		next := func(i int) []byte {
			n := i % o.keySpace
			if !o.seqKeys {
				n = int(randUint64() % uint64(o.keySpace))
			}
			binary.PutVarint(k, int64(n))
			if mode == "commit" && o.commitOp == "add" {
				k[len(k)-1] = 'c' // counters: a key space of their own, never a byte value
			}
			return append([]byte(nil), k...)
		}
		for i := 0; i < o.total; i++ {
			switch mode {
			case "put":
				reqs <- request{key: next(i)}
			case "range":
				reqs <- request{key: []byte(key)}
			case "commit":
				ops := make([]*pb.Op, o.opsPerCommit)
				for j := range ops {
					if o.commitOp == "add" {
						ops[j] = api.AddOp(next(i*o.opsPerCommit+j), 1)
					} else {
						ops[j] = api.PutOp(next(i*o.opsPerCommit+j), val)
					}
				}
				reqs <- request{ops: ops}
			}
		}
	}()

	var wg sync.WaitGroup
	start := time.Now()
	for i, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var seq int64
			src := fmt.Sprintf("source-%d", i)
			for r := range reqs {
				t0 := time.Now()
				var err error
				switch mode {
				case "put":
					_, err = w.c.Put(ctx, r.key, val)
				case "range":
					_, _, err = w.c.Get(ctx, r.key, api.WithConsistency(cons))
				case "commit":
					seq++
					_, err = w.prod.Commit(ctx, r.ops, map[string]int64{src: seq})
				}
				if err != nil {
					w.errs++
					if w.err == nil {
						w.err = err
					}
					continue
				}
				w.lat = append(w.lat, time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	res := &Result{Workload: mode, Clients: o.clients, Conns: o.conns, Total: o.total, Seconds: elapsed.Seconds()}
	var all []time.Duration
	for _, w := range workers {
		all = append(all, w.lat...)
		res.Errors += w.errs
		if w.err != nil && res.FirstErr == "" {
			res.FirstErr = w.err.Error()
		}
	}
	res.OK = len(all)
	res.OpsPerSec = float64(res.OK) / elapsed.Seconds()
	if mode == "commit" {
		res.UpdatesPerSec = res.OpsPerSec * float64(o.opsPerCommit)
	}
	summarize(res, all)
	return res, nil
}

// fsyncCost measures what one small write plus fdatasync costs on the disk
// holding dir: the floor under every durable write (bbolt does two per
// raft-log append).
func fsyncCost(o options) (*Result, error) {
	f, err := os.CreateTemp(o.dir, "fsync-cost-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, o.blockSize)
	_, _ = rand.Read(buf)
	// Preallocate so that each write overwrites a block, as a log store
	// with preallocated pages does; then the same through appends.
	if _, err := f.Write(make([]byte, o.blockSize*o.total)); err != nil {
		return nil, err
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	lat := make([]time.Duration, 0, o.total)
	start := time.Now()
	for i := 0; i < o.total; i++ {
		t0 := time.Now()
		if _, err := f.WriteAt(buf, int64(i*o.blockSize)); err != nil {
			return nil, err
		}
		if err := fdatasync(f); err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(t0))
	}
	elapsed := time.Since(start)
	res := &Result{Workload: "fsync " + filepath.Base(o.dir), Clients: 1, Conns: 1, Total: o.total, OK: o.total,
		Seconds: elapsed.Seconds(), OpsPerSec: float64(o.total) / elapsed.Seconds()}
	summarize(res, lat)
	return res, nil
}

func summarize(res *Result, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	ms := func(x time.Duration) float64 { return float64(x) / float64(time.Millisecond) }
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(d)))) - 1
		return ms(d[max(0, min(i, len(d)-1))])
	}
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	res.P50Ms, res.P90Ms, res.P99Ms, res.P999Ms = q(0.50), q(0.90), q(0.99), q(0.999)
	res.MeanMs = ms(sum / time.Duration(len(d)))
}

func randUint64() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:])
}
