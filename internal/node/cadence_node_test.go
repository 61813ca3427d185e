package node_test

import (
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
	gauges := func() map[string]float64 {
		mf, err := m.Node.Registry().Gather()
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
