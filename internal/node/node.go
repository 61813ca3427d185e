// Package node assembles one cairn server: the Pebble state machine, the
// raft node, the gRPC API and the HTTP endpoints (metrics, health, pprof).
// cmd/cairn serve parses flags into a Config and calls Start; tests start
// whole in-process clusters the same way on port 0.
package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/internal/tlsconf"
	"github.com/cairn-db/cairn/raftnode"
	"github.com/cairn-db/cairn/snapshot"
)

// Config is everything one node needs.
type Config struct {
	NodeID  string
	DataDir string
	// Listen addresses; port 0 picks a free port (see Node.*Addr for the result).
	RaftAddr string
	GRPCAddr string
	HTTPAddr string // "" disables the HTTP endpoints
	// Advertised addresses (default: the bound ones).
	RaftAdvertise string
	GRPCAdvertise string
	Bootstrap     []raftnode.Peer
	Raft          raftnode.Config // timeouts and thresholds; identity fields are filled from above
	FSM           fsm.ApplierConfig
	Limits        api.Limits
	// CoalesceWrites lets concurrent plain writes share a log entry (api.Config).
	CoalesceWrites bool
	// RetainCheckpoints: how many checkpoints to keep (0: the default, 2).
	// Pinned ones are kept in addition.
	RetainCheckpoints int
	// RecoveryTarget, if > 0, bounds the estimated time a restart would
	// spend replaying the log since the newest checkpoint: a checkpoint is
	// taken before the estimate would exceed it (cadence.go). raft's
	// SnapshotThreshold/SnapshotInterval triggers apply as well.
	RecoveryTarget time.Duration
	// RaftStream, if set, replaces the TCP raft listener (fault tests).
	RaftStream raft.StreamLayer
	// StateFS, if set, is the filesystem under the state machine's Pebble
	// instead of the operating system's (fault tests wrap it to fail
	// reads or writes).
	StateFS vfs.FS
	// TLS, if enabled, encrypts and authenticates the gRPC port, raft
	// (wrapping RaftStream or the TCP listener) and every connection to
	// other members.
	TLS tlsconf.Node
	// HTTPTLS serves the HTTP endpoints over TLS too, with the gRPC port's
	// configuration (client certificates required with TLS.ClientAuth).
	// Needs TLS.
	HTTPTLS bool
	Logger  *slog.Logger
	// BlockProfileRate and MutexProfileFraction, when > 0, turn on the
	// runtime's block and mutex profiles served at /debug/pprof/block and
	// /debug/pprof/mutex (process-wide settings; off by default).
	BlockProfileRate     int
	MutexProfileFraction int
}

// DefaultConfig returns defaults.
func DefaultConfig() Config {
	return Config{Raft: raftnode.DefaultConfig(), FSM: fsm.DefaultApplierConfig(), Limits: api.DefaultLimits(), CoalesceWrites: true}
}

// Node is a running cairn server.
type Node struct {
	cfg       Config
	log       *slog.Logger
	FSM       *fsm.FSM
	Snapshots *snapshot.Store
	fetcher   *snapshot.GRPCFetcher
	cadence   *cadence
	Raft      *raftnode.Node
	API       *api.Server
	grpc      *grpc.Server
	grpcLn    net.Listener
	httpSrv   *http.Server
	httpLn    net.Listener
	health    *health.Server
	registry  *prometheus.Registry
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	stopOnce  sync.Once
	// failed is closed when the state machine has stopped on a storage
	// failure and the node has left raft (watchStateMachine).
	failed     chan struct{}
	failedOnce sync.Once
	// removed is closed when the node saw itself removed (leftCluster).
	removed     chan struct{}
	removedOnce sync.Once
}

// Start opens the state, starts raft, and serves gRPC (and HTTP).
func Start(cfg Config) (n *Node, err error) {
	if cfg.NodeID == "" || cfg.DataDir == "" {
		return nil, errors.New("node: NodeID and DataDir are required")
	}
	l := cfg.Logger
	if l == nil {
		l = slog.Default()
	}
	n = &Node{cfg: cfg, log: l.With("node", cfg.NodeID), failed: make(chan struct{}), removed: make(chan struct{})}
	began := time.Now()
	var tSnap, tState time.Duration
	if cfg.BlockProfileRate > 0 {
		runtime.SetBlockProfileRate(cfg.BlockProfileRate)
	}
	if cfg.MutexProfileFraction > 0 {
		runtime.SetMutexProfileFraction(cfg.MutexProfileFraction)
	}
	started := n // the error returns below set n to nil
	defer func() {
		if err != nil {
			started.Stop()
		}
	}()
	if err := claimDataDir(cfg.DataDir, cfg.NodeID); err != nil {
		return nil, err
	}
	tlsCfgs, err := cfg.TLS.Load()
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	if cfg.HTTPTLS && tlsCfgs == nil {
		return nil, errors.New("node: HTTP over TLS needs the node's TLS certificate (--tls-ca, --tls-cert, --tls-key)")
	}
	// Listen first so that advertised addresses are known (port 0), and so
	// that no step can fail once goroutines are running.
	if n.grpcLn, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
		return nil, fmt.Errorf("node: listen grpc %s: %w", cfg.GRPCAddr, err)
	}
	if cfg.HTTPAddr != "" {
		if n.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return nil, fmt.Errorf("node: listen http %s: %w", cfg.HTTPAddr, err)
		}
	}
	grpcAdv := cfg.GRPCAdvertise
	if grpcAdv == "" {
		grpcAdv = n.grpcLn.Addr().String()
	}
	// Checkpoints: Pebble checkpoints + manifests in a content-addressed
	// store beside the state (same filesystem: hard links), shipped to
	// followers file by file over gRPC (snapshot/DESIGN.md).
	var peerTLS *tls.Config // connections to members; nil: plaintext
	var raftTLS *raftnode.StreamTLS
	if tlsCfgs != nil {
		peerTLS = tlsCfgs.PeerClient
		raftTLS = &raftnode.StreamTLS{Server: tlsCfgs.PeerServer, Client: tlsCfgs.PeerClient}
		raftAdv := cfg.RaftAdvertise
		if raftAdv == "" {
			raftAdv = cfg.RaftAddr
		}
		if bad := tlsCfgs.Uncovered(grpcAdv, raftAdv); len(bad) > 0 {
			n.log.Warn("the node's TLS certificate does not name these advertised addresses: members and clients dialling them will refuse it (add them to the certificate's subjectAltName)",
				"addresses", bad, "names", append(append([]string{}, tlsCfgs.Leaf.DNSNames...), ipStrings(tlsCfgs.Leaf.IPAddresses)...))
		}
	}
	n.fetcher = snapshot.NewGRPCFetcher(grpc.WithTransportCredentials(tlsconf.Credentials(peerTLS)))
	scfg := snapshot.DefaultConfig(filepath.Join(cfg.DataDir, "snapshots"), cfg.NodeID, grpcAdv)
	scfg.Fetcher, scfg.Logger = n.fetcher, n.log
	if cfg.RetainCheckpoints > 0 {
		scfg.Retain = cfg.RetainCheckpoints
	}
	scfg.PebbleOptions = func() *pebble.Options { return fsm.PebbleOptions(vfs.Default) }
	scfg.Fallback = &fsm.FullCheckpointer{FS: vfs.Default, ScratchDir: filepath.Join(cfg.DataDir, "state", "checkpoints")}
	scfg.Sources = n.snapshotSources
	scfg.Extra = checkpointExtra
	n.registry = prometheus.NewRegistry()
	n.cadence = newCadence(cfg.RecoveryTarget, nil)
	n.cadence.setMaxBytes(cfg.Raft.SnapshotBytes)
	scfg.Metrics = newSnapMetrics(n.registry, n.cadence)
	if n.Snapshots, err = snapshot.Open(scfg); err != nil {
		return nil, err
	}
	tSnap = time.Since(began)
	fcfg := fsm.DefaultConfig(filepath.Join(cfg.DataDir, "state"))
	fcfg.Applier, fcfg.Logger, fcfg.Checkpointer = cfg.FSM, n.log, n.Snapshots.Checkpointer()
	if cfg.StateFS != nil {
		fcfg.FS = cfg.StateFS
	}
	// Tables are checksummed as Pebble writes them, so that a checkpoint
	// reads (almost) nothing (snapshot/prehash.go).
	tables := n.Snapshots.PebbleEventListener(filepath.Join(fcfg.Dir, "db"))
	fcfg.PebbleOptions = func(o *pebble.Options) { o.EventListener = &tables }
	if n.FSM, err = fsm.Open(fcfg); err != nil {
		return nil, err
	}
	if err := n.catchUpToSnapshot(); err != nil {
		return nil, err
	}
	tState = time.Since(began) - tSnap
	timed := n.cadence.wrap(n.FSM)
	rc := cfg.Raft
	rc.NodeID, rc.Dir, rc.RaftAddr, rc.AdvertiseAddr = cfg.NodeID, filepath.Join(cfg.DataDir, "raft"), cfg.RaftAddr, cfg.RaftAdvertise
	rc.GRPCAddr, rc.Bootstrap, rc.Logger, rc.StreamLayer = grpcAdv, cfg.Bootstrap, n.log, cfg.RaftStream
	rc.SnapshotStore, rc.StreamTLS = n.Snapshots, raftTLS
	if n.Raft, err = raftnode.New(rc, timed); err != nil {
		return nil, err
	}
	// What a slow start spent its time on (etcd logs the same for its backend).
	n.log.Info("node opened", "snapshots", tSnap, "state", tState, "raft", time.Since(began)-tSnap-tState)
	acfg := api.DefaultConfig()
	acfg.NodeID, acfg.GRPCAddr, acfg.Limits, acfg.Logger = cfg.NodeID, grpcAdv, cfg.Limits, n.log
	acfg.CoalesceWrites = cfg.CoalesceWrites
	acfg.PeerTLS = peerTLS
	if n.API, err = api.NewServer(acfg, n.Raft, n.FSM); err != nil {
		return nil, err
	}
	n.API.SetCheckpoints(checkpointCatalog{Store: n.Snapshots, raft: n.Raft, cadence: n.cadence})
	n.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), newCollector(n),
		newCadenceCollector(n.cadence))
	for _, c := range raftMetricCollectors() {
		if err := n.registry.Register(c); err != nil {
			n.log.Warn("raft metrics not exported", "err", err)
		}
	}
	metrics := newGRPCMetrics(n.registry)
	gopts := []grpc.ServerOption{grpc.ChainUnaryInterceptor(metrics.unary, n.API.UnaryInterceptor()),
		grpc.ChainStreamInterceptor(n.API.StreamInterceptor()), grpc.MaxRecvMsgSize(8 << 20)}
	if tlsCfgs != nil {
		gopts = append(gopts, grpc.Creds(credentials.NewTLS(tlsCfgs.GRPCServer)))
	}
	n.grpc = grpc.NewServer(gopts...)
	n.API.Register(n.grpc)
	snapshot.NewServer(n.Snapshots).Register(n.grpc)
	n.health = health.NewServer()
	healthpb.RegisterHealthServer(n.grpc, n.health)
	reflection.Register(n.grpc)
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	n.startCadence(timed)
	n.wg.Add(4)
	go func() { defer n.wg.Done(); n.cadence.run(ctx) }()
	go func() { defer n.wg.Done(); _ = n.grpc.Serve(n.grpcLn) }()
	go func() { defer n.wg.Done(); n.API.AnnounceLoop(ctx) }()
	go func() { defer n.wg.Done(); n.healthLoop(ctx) }()
	if n.httpLn != nil {
		n.httpSrv = &http.Server{Handler: n.httpHandler(), ReadHeaderTimeout: 10 * time.Second}
		ln := n.httpLn
		if cfg.HTTPTLS {
			ln = tls.NewListener(ln, tlsCfgs.GRPCServer)
		}
		n.wg.Add(1)
		go func() { defer n.wg.Done(); _ = n.httpSrv.Serve(ln) }()
	}
	return n, nil
}

// GRPCAddr is the bound gRPC address.
func (n *Node) GRPCAddr() string { return n.grpcLn.Addr().String() }

// HTTPAddr is the bound HTTP address ("" when disabled).
func (n *Node) HTTPAddr() string {
	if n.httpLn == nil {
		return ""
	}
	return n.httpLn.Addr().String()
}

// Ready reports whether the node is serving and caught up: a leader is
// known, the state machine is healthy, and it has applied what it knows
// to be committed (within maxLag entries).
func (n *Node) Ready() (bool, string) {
	const maxLag = 1000
	st := n.Raft.Status()
	switch {
	case n.isRemoved():
		return false, "removed from the cluster"
	case n.FSM.Err() != nil:
		return false, "state machine stopped: " + n.FSM.Err().Error()
	case st.LeaderID == "":
		return false, "no leader known"
	case st.Role == "leader" && !st.Ready:
		return false, "leader catching up"
	case st.LastIndex == 0 && st.AppliedIndex == 0:
		// A node added to a cluster has no log until the leader's first
		// entries or checkpoint reach it; its commit index is 0 meanwhile,
		// so the check below would call it caught up (a wiped member whose
		// checkpoint installs kept failing showed as ready).
		return false, "joining: no log yet (waiting for the leader's entries or a checkpoint)"
	case st.AppliedIndex+maxLag < st.CommitIndex:
		return false, fmt.Sprintf("applying: %d of %d", st.AppliedIndex, st.CommitIndex)
	}
	return true, "ok"
}

func (n *Node) healthLoop(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		if err := n.FSM.Err(); err != nil {
			n.leaveRaft(err)
		}
		select {
		case <-n.Raft.Removed():
			n.leftCluster()
		default:
		}
		st := healthpb.HealthCheckResponse_NOT_SERVING
		if ok, _ := n.Ready(); ok {
			st = healthpb.HealthCheckResponse_SERVING
		}
		n.health.SetServingStatus("", st)
		n.health.SetServingStatus("cairn.v1.KV", st)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// leaveRaft takes a node whose state machine stopped on a storage failure
// out of raft, as if it had crashed. Kept in, it would go on acknowledging
// appends, voting, and — as leader — holding leadership while it applies
// nothing: every write through it would end with an unknown outcome and
// every linearizable read would wait, and the healthy members would never
// elect another leader. Out, they do at once. The process stays up to say
// why (/healthz, /readyz, Failed); `cairn serve` exits non-zero so that a
// supervisor restarts it, which replays the raft log into the state
// machine (etcd exits on a backend failure for the same reason).
func (n *Node) leaveRaft(err error) {
	n.failedOnce.Do(func() {
		n.log.Error("state machine stopped on a storage failure; leaving raft. Restart the node to recover (its raft log is intact)", "err", err)
		if serr := n.Raft.Shutdown(); serr != nil {
			n.log.Warn("raft shutdown", "err", serr)
		}
		close(n.failed)
	})
}

// leftCluster stops raft on a node that was removed from the cluster (a
// removed follower's raft would otherwise run on, hearing from no one) and
// marks it, so that health checks fail and `cairn serve` exits.
func (n *Node) leftCluster() {
	n.removedOnce.Do(func() {
		n.log.Warn("this node was removed from the cluster; raft stopped. Wipe its data directory before adding it back")
		if err := n.Raft.Shutdown(); err != nil {
			n.log.Warn("raft shutdown", "err", err)
		}
		close(n.removed)
	})
}

// Removed is closed once the node has seen itself removed from the cluster
// and stopped raft (leftCluster).
func (n *Node) Removed() <-chan struct{} { return n.removed }

func (n *Node) isRemoved() bool {
	select {
	case <-n.removed:
		return true
	default:
		return false
	}
}

// Failed is closed once the state machine has stopped on a storage failure
// and the node has left raft (see leaveRaft); Err says why.
func (n *Node) Failed() <-chan struct{} { return n.failed }

// Err is the state machine's storage failure, or nil.
func (n *Node) Err() error { return n.FSM.Err() }

func (n *Node) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(n.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := n.FSM.Err(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		if n.isRemoved() {
			http.Error(w, "removed from the cluster", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		ok, why := n.Ready()
		if !ok {
			http.Error(w, why, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// Stop shuts everything down in reverse order. Safe to call twice.
func (n *Node) Stop() {
	n.stopOnce.Do(func() {
		if n.cancel != nil {
			n.cancel()
		}
		if n.httpSrv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = n.httpSrv.Shutdown(ctx)
			cancel()
		} else if n.httpLn != nil {
			_ = n.httpLn.Close()
		}
		if n.API != nil {
			_ = n.API.Close() // ends open Watch streams so GracefulStop need not wait them out
		}
		if n.grpc != nil {
			stopped := make(chan struct{})
			go func() { n.grpc.GracefulStop(); close(stopped) }()
			select {
			case <-stopped:
			case <-time.After(2 * time.Second):
				n.grpc.Stop()
			}
		} else if n.grpcLn != nil {
			_ = n.grpcLn.Close()
		}
		if n.Raft != nil {
			if err := n.Raft.Shutdown(); err != nil {
				n.log.Warn("raft shutdown", "err", err)
			}
		}
		n.wg.Wait()
		if n.fetcher != nil {
			_ = n.fetcher.Close()
		}
		if n.FSM != nil {
			_ = n.FSM.Close()
		}
	})
}

// Registry is the node's Prometheus registry.
func (n *Node) Registry() *prometheus.Registry { return n.registry }

func ipStrings(ips []net.IP) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}
