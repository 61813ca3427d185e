package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cairn-db/cairn/internal/node"
	"github.com/cairn-db/cairn/raftnode"
)

func newServeCmd() *cobra.Command {
	cfg := node.DefaultConfig()
	var bootstrap, join, logLevel string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run one cairn node",
		Long: `Run one cairn node. A new cluster starts with the same --bootstrap list on every
node; a node added later starts with --join pointing at any member's gRPC address.
Every flag can also be set as CAIRN_<FLAG> (e.g. CAIRN_DATA_DIR).`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd.Flags()); err != nil {
				return err
			}
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
			peers, err := parsePeers(bootstrap)
			if err != nil {
				return err
			}
			cfg.Bootstrap = peers
			if cfg.NodeID == "" || cfg.DataDir == "" {
				return fmt.Errorf("--node-id and --data-dir are required")
			}
			n, err := node.Start(cfg)
			if err != nil {
				return err
			}
			defer n.Stop()
			cfg.Logger.Info("cairn node serving", "node", cfg.NodeID, "grpc", n.GRPCAddr(), "raft", cfg.RaftAddr, "http", n.HTTPAddr(), "pid", os.Getpid())
			if join != "" {
				if err := joinCluster(cmd.Context(), join, cfg, n.GRPCAddr()); err != nil {
					return err
				}
			}
			select {
			case <-cmd.Context().Done():
				cfg.Logger.Info("shutting down")
				return nil
			case <-n.Removed():
				// etcd's removed member exits too. Status 0: nothing for a
				// supervisor to restart (Restart=on-failure).
				cfg.Logger.Warn("this node was removed from the cluster; exiting. To add it back, wipe its data directory and start it with --join")
				return nil
			case <-n.Failed():
				// Exit non-zero so that a supervisor restarts the node: the
				// restart replays the raft log into the state machine.
				return fmt.Errorf("the state machine stopped on a storage failure (%v); the node left the cluster, restart it to recover (its raft log is intact)", n.Err())
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.NodeID, "node-id", "", "unique node id (required)")
	f.StringVar(&cfg.DataDir, "data-dir", "", "directory for the raft log and state (required)")
	f.StringVar(&cfg.RaftAddr, "raft-addr", "127.0.0.1:7201", "raft listen address host:port")
	f.StringVar(&cfg.GRPCAddr, "grpc-addr", "127.0.0.1:7101", "gRPC listen address host:port")
	f.StringVar(&cfg.HTTPAddr, "http-addr", "127.0.0.1:7301", "HTTP address for /metrics, /healthz, /readyz, /debug/pprof (empty disables)")
	f.StringVar(&cfg.RaftAdvertise, "raft-advertise", "", "raft address peers dial (default: --raft-addr)")
	f.StringVar(&cfg.GRPCAdvertise, "grpc-advertise", "", "gRPC address clients and peers use (default: --grpc-addr)")
	f.StringVar(&bootstrap, "bootstrap", "", "initial members n1=RAFTADDR,n2=RAFTADDR,... (same on every node of a new cluster)")
	f.StringVar(&join, "join", "", "gRPC address of a member to join through (for a node added to a running cluster)")
	f.StringVar(&cfg.TLS.CAFile, "tls-ca", "", "TLS: CA bundle (PEM) that signed every member's certificate; with --tls-cert and --tls-key, gRPC and raft use TLS and members verify each other")
	f.StringVar(&cfg.TLS.CertFile, "tls-cert", "", "TLS: this node's certificate (PEM; serverAuth and clientAuth usages, SANs for its advertised addresses)")
	f.StringVar(&cfg.TLS.KeyFile, "tls-key", "", "TLS: this node's private key (PEM)")
	f.BoolVar(&cfg.HTTPTLS, "http-tls", false, "TLS: serve the HTTP endpoints (/metrics, /readyz, /debug/pprof) over TLS as well, with --tls-client-auth applying to them too")
	f.BoolVar(&cfg.TLS.ClientAuth, "tls-client-auth", false, "TLS: require clients of the gRPC port to present a certificate signed by --tls-ca")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.DurationVar(&cfg.Raft.HeartbeatTimeout, "heartbeat-timeout", cfg.Raft.HeartbeatTimeout, "raft heartbeat timeout")
	f.DurationVar(&cfg.Raft.ElectionTimeout, "election-timeout", cfg.Raft.ElectionTimeout, "raft election timeout")
	f.DurationVar(&cfg.Raft.LeaderLeaseTimeout, "leader-lease-timeout", cfg.Raft.LeaderLeaseTimeout, "raft leader lease timeout")
	f.Uint64Var(&cfg.Raft.SnapshotThreshold, "snapshot-threshold", cfg.Raft.SnapshotThreshold, "log entries since the last checkpoint that trigger a new one")
	f.DurationVar(&cfg.Raft.SnapshotInterval, "snapshot-interval", cfg.Raft.SnapshotInterval, "how often to check whether a checkpoint is due")
	f.Uint64Var(&cfg.Raft.SnapshotBytes, "snapshot-bytes", cfg.Raft.SnapshotBytes, "bytes of log entries since the last checkpoint that trigger a new one (bounds the log a restart reads; 0: off)")
	f.Uint64Var(&cfg.Raft.TrailingLogs, "trailing-logs", cfg.Raft.TrailingLogs, "log entries kept after a checkpoint for slow followers")
	f.DurationVar(&cfg.RecoveryTarget, "recovery-target", 0, "take a checkpoint before the estimated log replay of a restart would exceed this (e.g. 10s; 0: only --snapshot-threshold and --snapshot-bytes, checked every --snapshot-interval)")
	f.IntVar(&cfg.RetainCheckpoints, "retain-checkpoints", 2, "how many of the newest checkpoints to keep (pinned ones are kept as well)")
	f.IntVar(&cfg.Raft.MaxAppendEntries, "max-append-entries", cfg.Raft.MaxAppendEntries, "max entries per AppendEntries and per state-machine batch (1..1024)")
	f.Int64Var(&cfg.Raft.LogCacheBytes, "log-cache-bytes", cfg.Raft.LogCacheBytes, "memory for recent raft log entries kept for replication (at most 2×max-append-entries of them; at least 1 MiB)")
	f.BoolVar(&cfg.Raft.LogNoSync, "unsafe-no-fsync", false, "do not fsync the raft log (benchmarks only: acknowledged writes are NOT durable)")
	f.StringVar(&cfg.Raft.LogStore, "log-store", cfg.Raft.LogStore, "raft log store: bolt (raft-boltdb) or wal (raft-wal: faster, but see raftnode.LogStoreWAL for a known restart defect); fixed when a node is created")
	f.BoolVar(&cfg.Raft.CompactLogAtOpen, "compact-log-at-open", cfg.Raft.CompactLogAtOpen, "at start, rewrite the bolt raft log without its free pages when that frees at least 64 MiB and copies at most 64 MiB (bbolt never shrinks its file; after a bulk load it keeps the load's size)")
	f.IntVar(&cfg.BlockProfileRate, "block-profile-rate", 0, "sample goroutine blocking events (runtime.SetBlockProfileRate, nanoseconds; 0 off) for /debug/pprof/block")
	f.IntVar(&cfg.MutexProfileFraction, "mutex-profile-fraction", 0, "sample 1/N mutex contention events for /debug/pprof/mutex (0 off)")
	f.BoolVar(&cfg.CoalesceWrites, "coalesce-writes", cfg.CoalesceWrites, "let concurrent plain puts and deletes share one raft log entry")
	f.IntVar(&cfg.Limits.MaxKeyBytes, "max-key-bytes", cfg.Limits.MaxKeyBytes, "largest key accepted")
	f.IntVar(&cfg.Limits.MaxValueBytes, "max-value-bytes", cfg.Limits.MaxValueBytes, "largest value accepted")
	f.IntVar(&cfg.Limits.MaxBatchOps, "max-batch-ops", cfg.Limits.MaxBatchOps, "most operations in one batch or commit")
	f.IntVar(&cfg.Limits.MaxRequestBytes, "max-request-bytes", cfg.Limits.MaxRequestBytes, "largest request accepted")
	return cmd
}

// parsePeers parses n1=host:port,n2=host:port.
func parsePeers(s string) ([]raftnode.Peer, error) {
	if s == "" {
		return nil, nil
	}
	var out []raftnode.Peer
	for _, part := range strings.Split(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("--bootstrap: %q is not ID=HOST:PORT", part)
		}
		out = append(out, raftnode.Peer{ID: id, Addr: addr})
	}
	return out, nil
}
