package node_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/api/cairnpb"
	"github.com/cairn-db/cairn/internal/node"
	"github.com/cairn-db/cairn/internal/testcluster"
)

// A follower that misses enough log to need a snapshot catches up through
// a manifest: it fetches only the files it lacks and ends with the
// leader's data.
func TestFollowerCatchesUpThroughManifest(t *testing.T) {
	c := testcluster.Start(t, 3, func(cfg *node.Config) {
		cfg.Raft.SnapshotThreshold, cfg.Raft.TrailingLogs, cfg.Raft.SnapshotInterval = 1<<40, 16, time.Hour
		cfg.Raft.HeartbeatTimeout, cfg.Raft.ElectionTimeout = time.Second, time.Second
	})
	cl := c.Client()
	ctx := context.Background()
	val := make([]byte, 2048)
	rand.New(rand.NewSource(1)).Read(val) // incompressible: real SST sizes
	write := func(from, to, per int) {
		for i := from; i < to; i += per {
			ops := make([]*cairnpb.Op, 0, per)
			for j := i; j < min(i+per, to); j++ {
				v := append([]byte(fmt.Sprintf("%06d", j)), val...) // distinct per key
				ops = append(ops, api.PutOp([]byte(fmt.Sprintf("k%06d", j)), v))
			}
			// Puts of fixed values are idempotent: an unknown outcome
			// (leadership lost on a loaded machine) is retried.
			for {
				_, err := cl.Batch(ctx, ops...)
				if err == nil {
					break
				}
				if !errors.Is(err, api.ErrUnknownOutcome) {
					t.Fatal(err)
				}
			}
		}
	}
	write(0, 3000, 50)
	c.WaitConverged()
	l := c.Leader()
	f := c.Followers(l)[0]
	// settleLeader flushes and fully compacts the leader's LSM so that the
	// next checkpoint's SSTs stay put (a tiny test DB otherwise compacts
	// everything together on the next flush, which real 1 GiB DBs don't).
	settleLeader := func() {
		err := l.Node.FSM.DB(func(db *pebble.DB) error {
			if err := db.Flush(); err != nil {
				return err
			}
			return db.Compact(context.Background(), []byte{0}, []byte{0xff, 0xff}, false)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	counters := func() (fetched, reused float64) {
		mf, _ := f.Node.Registry().Gather()
		for _, m := range mf {
			switch m.GetName() {
			case "cairn_checkpoint_install_bytes_fetched_total":
				fetched = m.GetMetric()[0].GetCounter().GetValue()
			case "cairn_checkpoint_install_bytes_reused_total":
				reused = m.GetMetric()[0].GetCounter().GetValue()
			}
		}
		return
	}
	// missWhileDown stops the follower, writes more entries than
	// TrailingLogs keeps, checkpoints the leader, and restarts the follower:
	// it can only catch up by installing the checkpoint.
	next := 3000
	missWhileDown := func(n int, settle bool) {
		c.StopMember(f)
		write(next, next+n, 4)
		next += n
		if settle {
			settleLeader()
		}
		if _, err := l.Node.Raft.Snapshot(); err != nil {
			t.Fatal(err)
		}
		write(next, next+1, 1)
		next++
		c.StartMember(f)
		c.WaitConverged()
	}
	missWhileDown(200, true) // first install: the follower holds none of the leader's files
	f1, r1 := counters()
	if f1 == 0 {
		t.Fatalf("first catch-up did not install a checkpoint (fetched %.0f)", f1)
	}
	missWhileDown(100, false) // second install: the new writes are in the WAL; every SST is one it holds
	f2, r2 := counters()      // counters restart with the process: these are the second install's
	t.Logf("first install fetched %.0f bytes (reused %.0f); second fetched %.0f, reused %.0f", f1, r1, f2, r2)
	if f2 == 0 || r2 == 0 || f2 > 0.2*(f2+r2) {
		t.Fatalf("second install fetched %.0f of %.0f bytes: not incremental", f2, f2+r2)
	}
	for _, k := range []string{"k000000", "k002999", "k003199", "k003201"} {
		if _, _, err := f.Node.FSM.Get([]byte(k)); err != nil {
			t.Fatalf("%s on the caught-up follower: %v", k, err)
		}
	}
	infos, err := f.Node.Snapshots.Checkpoints()
	if err != nil || len(infos) == 0 {
		t.Fatalf("follower catalog: %v %v", infos, err)
	}
}
