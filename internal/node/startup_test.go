package node_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/cairn-db/cairn/internal/node"
	"github.com/cairn-db/cairn/internal/testcluster"
)

// A node whose state machine is behind its newest complete snapshot (the
// crash window between a snapshot becoming visible and the state
// machine's swap, or a lost unsynced tail below a snapshot) must not
// start raft as is: with NoSnapshotRestoreOnStart raft re-applies only
// entries after the snapshot, and the state machine would silently miss
// the ones in between. Start restores the snapshot first.
func TestStartRestoresSnapshotAheadOfStateMachine(t *testing.T) {
	c := testcluster.Start(t, 1, func(cfg *node.Config) {
		steadyRaft(cfg)
		cfg.Raft.SnapshotThreshold = 1 << 40
	})
	m := c.Leader()
	cl := c.Client()
	writeKeys(t, cl, "early", 0, 200, 100, 1)
	// The state machine as it was at this point, in a Pebble checkpoint.
	old := filepath.Join(t.TempDir(), "old-db")
	if err := m.Node.FSM.DB(func(db *pebble.DB) error { return db.Checkpoint(old, pebble.WithFlushedWAL()) }); err != nil {
		t.Fatal(err)
	}
	oldIndex := m.Node.FSM.AppliedIndex()
	writeKeys(t, cl, "late", 0, 200, 100, 2)
	if _, err := m.Node.Raft.Snapshot(); err != nil {
		t.Fatal(err)
	}
	metas, err := m.Node.Snapshots.List()
	if err != nil || len(metas) == 0 {
		t.Fatalf("snapshots: %v %v", metas, err)
	}
	snapIndex := metas[0].Index
	if snapIndex <= oldIndex {
		t.Fatalf("snapshot at %d is not ahead of the old state at %d", snapIndex, oldIndex)
	}
	c.StopMember(m)

	// Construct the crash: the live DB goes back to the older state.
	db := filepath.Join(m.Dir, "state", "db")
	if err := os.RemoveAll(db); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(old, db); err != nil {
		t.Fatal(err)
	}

	c.StartMember(m)
	if got := m.Node.FSM.AppliedIndex(); got < snapIndex {
		t.Fatalf("state machine started at %d, below the snapshot at %d", got, snapIndex)
	}
	c.Leader()
	for i := 0; i < 200; i += 37 {
		for _, p := range []string{"early", "late"} {
			k := fmt.Sprintf("%s/%06d", p, i)
			if _, _, err := m.Node.FSM.Get([]byte(k)); err != nil {
				t.Fatalf("%s after restart: %v", k, err)
			}
		}
	}
	if _, err := c.Client().Put(context.Background(), []byte("after"), []byte("ok")); err != nil {
		t.Fatal(err)
	}
}
