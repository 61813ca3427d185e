package node_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/cairn-db/cairn/internal/node"
	"github.com/cairn-db/cairn/internal/testcluster"
)

// With a recovery target, a node under writes takes checkpoints by
// itself (raft's own triggers are off here) and exports the estimate.
func TestRecoveryTargetTriggersCheckpoints(t *testing.T) {
	c := testcluster.Start(t, 1, func(cfg *node.Config) {
		steadyRaft(cfg)
		cfg.Raft.SnapshotThreshold, cfg.Raft.SnapshotInterval = 1<<40, time.Hour
		cfg.RecoveryTarget = time.Millisecond // any replay at all is too much
	})
	m := c.Leader()
	cl := c.Client()
	gauges := func() map[string]float64 { return gatherMetrics(t, m.Node) }
	for _, name := range []string{"cairn_checkpoint_estimated_replay_seconds", "cairn_checkpoint_entries_since_last",
		"cairn_checkpoint_seconds_since_last", "cairn_checkpoint_recovery_target_seconds"} {
		if _, ok := gauges()[name]; !ok {
			t.Fatalf("gauge %s not exported", name)
		}
	}
	if g := gauges()["cairn_checkpoint_recovery_target_seconds"]; g != 0.001 {
		t.Fatalf("target gauge %v", g)
	}
	writeKeys(t, cl, "k", 0, 300, 50, 1)
	testcluster.WaitFor(t, "a checkpoint triggered by the recovery target", 20*time.Second, func() bool {
		g := gauges()
		return g["cairn_checkpoint_recovery_triggered_total"] > 0 && g["cairn_checkpoints_total"] > 0
	})
	infos, err := m.Node.Snapshots.Checkpoints()
	if err != nil || len(infos) == 0 {
		t.Fatalf("catalog after the triggered checkpoint: %v %v", infos, err)
	}
}

// gatherMetrics returns a node's gauges and counters by name.
func gatherMetrics(t *testing.T, n *node.Node) map[string]float64 {
	t.Helper()
	mf, err := n.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range mf {
		for _, x := range f.GetMetric() {
			if g := x.GetGauge(); g != nil {
				out[f.GetName()] = g.GetValue()
			}
			if cn := x.GetCounter(); cn != nil {
				out[f.GetName()] = cn.GetValue()
			}
		}
	}
	return out
}

// With a limit on log bytes since the newest checkpoint, a node takes
// checkpoints by itself after that many bytes, however few entries they
// are (raft's own triggers are off here), and exports the count.
func TestSnapshotBytesTriggersCheckpoints(t *testing.T) {
	const limit = 100 << 10
	c := testcluster.Start(t, 1, func(cfg *node.Config) {
		steadyRaft(cfg)
		cfg.Raft.SnapshotThreshold, cfg.Raft.SnapshotInterval = 1<<40, time.Hour
		cfg.Raft.SnapshotBytes = limit
	})
	m := c.Leader()
	g := gatherMetrics(t, m.Node)
	if g["cairn_checkpoint_log_bytes_limit"] != limit {
		t.Fatalf("limit gauge %v", g["cairn_checkpoint_log_bytes_limit"])
	}
	if _, ok := g["cairn_checkpoint_log_bytes_since_last"]; !ok {
		t.Fatal("cairn_checkpoint_log_bytes_since_last not exported")
	}
	// 300 values of 1 KiB in 6 entries, twice: past the limit each time,
	// counted afresh after each checkpoint.
	for round := 1; round <= 2; round++ {
		writeKeys(t, c.Client(), "k", (round-1)*300, round*300, 50, int64(round))
		testcluster.WaitFor(t, fmt.Sprintf("checkpoint %d triggered by log bytes", round), 20*time.Second, func() bool {
			g := gatherMetrics(t, m.Node)
			return g["cairn_checkpoint_log_bytes_triggered_total"] >= float64(round) && g["cairn_checkpoints_total"] >= float64(round) &&
				g["cairn_checkpoint_log_bytes_since_last"] < limit
		})
	}
	infos, err := m.Node.Snapshots.Checkpoints()
	if err != nil || len(infos) == 0 {
		t.Fatalf("catalog after the triggered checkpoints: %v %v", infos, err)
	}
}
