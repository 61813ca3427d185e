package node_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sort"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/api/cairnpb"
	"github.com/cairn-db/cairn/internal/node"
	"github.com/cairn-db/cairn/internal/testcluster"
	"github.com/cairn-db/cairn/snapshot"
)

func steadyRaft(cfg *node.Config) {
	cfg.Raft.HeartbeatTimeout, cfg.Raft.ElectionTimeout, cfg.Raft.LeaderLeaseTimeout = time.Second, time.Second, 500*time.Millisecond
}

// writeKeys puts keys prefix/from..to with distinct incompressible values,
// per keys to a batch, retrying unknown outcomes (puts are idempotent).
func writeKeys(t *testing.T, cl *api.Client, prefix string, from, to, per int, seed int64) {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	for i := from; i < to; i += per {
		ops := make([]*cairnpb.Op, 0, per)
		for j := i; j < min(i+per, to); j++ {
			v := make([]byte, 1024)
			rng.Read(v)
			ops = append(ops, api.PutOp([]byte(fmt.Sprintf("%s/%06d", prefix, j)), v))
		}
		for {
			_, err := cl.Batch(context.Background(), ops...)
			if err == nil {
				break
			}
			if !errors.Is(err, api.ErrUnknownOutcome) {
				t.Fatal(err)
			}
		}
	}
}

// dumpKV reads every user key with a linearizable scan.
func dumpKV(t *testing.T, cl *api.Client) map[string]string {
	t.Helper()
	out := map[string]string{}
	var next []byte
	for {
		kvs, n, err := cl.Scan(context.Background(), api.ScanOptions{Start: next, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range kvs {
			out[string(kv.Key)] = kv.Value.String()
		}
		if n == nil {
			return out
		}
		next = n
	}
}

// Export a checkpoint of one cluster, restore it into three data dirs, and
// start a new cluster on them: same keys and values, same producer
// sessions and offsets, and the new cluster's log continues above the
// restored state. A later export ships only the new files.
func TestExportRestoreNewCluster(t *testing.T) {
	ctx := context.Background()
	a := testcluster.Start(t, 3, steadyRaft)
	cl := a.Client()
	writeKeys(t, cl, "k", 0, 2000, 100, 1)
	p, err := cl.RegisterProducer(ctx, "ingest", api.DefaultProducerOptions())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Commit(ctx, []*cairnpb.Op{api.AddOp([]byte("counter"), 5)}, map[string]int64{"orders-0": 1200, "orders-1": 77}); err != nil {
		t.Fatal(err)
	}
	l := a.Leader()
	settle(t, l)
	id, err := l.Node.Raft.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	want := dumpKV(t, cl)
	wantOffsets, err := cl.GetOffsets(ctx, "ingest")
	if err != nil {
		t.Fatal(err)
	}
	bucket := "file://" + t.TempDir()
	st1, err := l.Node.Snapshots.Export(ctx, id, bucket, nil)
	if err != nil {
		t.Fatal(err)
	}
	exported, err := l.Node.Snapshots.Show(id)
	if err != nil {
		t.Fatal(err)
	}

	// Writes after the checkpoint are not in the savepoint.
	testcluster.Idempotent(t, "put after the checkpoint", func() error {
		_, err := cl.Put(ctx, []byte("after"), []byte("x"))
		return err
	})

	b := testcluster.Prepare(t, 3, steadyRaft)
	for _, m := range b.Members {
		res, err := node.Restore(ctx, node.RestoreConfig{BucketURL: bucket, Checkpoint: exported.CheckpointID,
			DataDir: m.Dir, NodeID: m.ID, Peers: b.Peers()})
		if err != nil {
			t.Fatal(err)
		}
		if res.Manifest.Index != exported.Index {
			t.Fatalf("%s restored index %d, exported %d", m.ID, res.Manifest.Index, exported.Index)
		}
	}
	// A second restore into a prepared dir is refused.
	if _, err := node.Restore(ctx, node.RestoreConfig{BucketURL: bucket, DataDir: b.Members[0].Dir, NodeID: "n1", Peers: b.Peers()}); !errors.Is(err, node.ErrHasState) {
		t.Fatalf("restore over a prepared dir: %v", err)
	}
	b.StartAll()
	bcl := b.Client()
	// The new cluster writes above the restored index, and keeps terms
	// at or above the checkpoint's.
	var idx uint64
	testcluster.Idempotent(t, "put on the new cluster", func() (err error) {
		idx, err = bcl.Put(ctx, []byte("new-cluster"), []byte("y"))
		return err
	})
	if idx <= exported.Index {
		t.Fatalf("first write of the new cluster at index %d, restored state is at %d", idx, exported.Index)
	}
	if term := b.Leader().Node.Raft.Status().Term; term <= exported.Term {
		t.Fatalf("new cluster's term %d is not above the checkpoint's %d", term, exported.Term)
	}
	b.WaitConverged()
	got := dumpKV(t, bcl)
	delete(got, "new-cluster")
	if len(got) != len(want) {
		var extra []string
		for k := range got {
			if _, ok := want[k]; !ok {
				extra = append(extra, k)
			}
		}
		t.Fatalf("restored cluster holds %d keys, exported %d; extra: %q", len(got), len(want), extra)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("key %q differs after restore", k)
		}
	}
	gotOffsets, err := bcl.GetOffsets(ctx, "ingest")
	if err != nil {
		t.Fatal(err)
	}
	if offsetMap(gotOffsets) != offsetMap(wantOffsets) || len(gotOffsets.GetOffsets()) != 2 || gotOffsets.GetEpoch() != wantOffsets.GetEpoch() ||
		gotOffsets.GetLastSeq() != wantOffsets.GetLastSeq() {
		t.Fatalf("producer offsets: restored %v, exported %v", gotOffsets, wantOffsets)
	}
	// Every new member's store holds the exported checkpoint, same files
	// by checksum, and its state machine is at or above it.
	for _, m := range b.Members {
		infos, err := m.Node.Snapshots.Checkpoints()
		if err != nil {
			t.Fatal(err)
		}
		var adopted *snapshot.Detail
		for _, in := range infos {
			if in.CheckpointID == exported.CheckpointID {
				if adopted, err = m.Node.Snapshots.Show(in.ID); err != nil {
					t.Fatal(err)
				}
			}
		}
		if adopted == nil {
			t.Fatalf("%s: adopted checkpoint not in the catalog: %+v", m.ID, infos)
		}
		if sums(adopted.Manifest) != sums(exported.Manifest) {
			t.Fatalf("%s: adopted checkpoint's files differ from the export's", m.ID)
		}
		// Same producer offsets recorded in the manifests.
		if !bytes.Equal(adopted.Manifest.Extra[api.ProducersExtra], exported.Manifest.Extra[api.ProducersExtra]) {
			t.Fatalf("%s: producer offsets in the adopted manifest differ", m.ID)
		}
	}
	// The new cluster checkpoints and catches up a member by itself.
	nl := b.Leader()
	if _, err := nl.Node.Raft.Snapshot(); err != nil {
		t.Fatal(err)
	}

	// A later checkpoint of the old cluster uploads only new files.
	writeKeys(t, cl, "later", 0, 100, 50, 2)
	id2, err := l.Node.Raft.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	st2, err := l.Node.Snapshots.Export(ctx, id2, bucket, nil)
	if err != nil {
		t.Fatal(err)
	}
	d2, _ := l.Node.Snapshots.Show(id2)
	t.Logf("first export: %d files / %d bytes; second: %d uploaded (%d bytes), %d skipped (%d bytes) of %d",
		st1.FilesUploaded, st1.BytesUploaded, st2.FilesUploaded, st2.BytesUploaded, st2.FilesSkipped, st2.BytesSkipped, d2.StateBytes)
	if st2.FilesSkipped == 0 || st2.BytesUploaded*4 > d2.StateBytes || st2.BytesUploaded+st2.BytesSkipped != distinctBytes(d2.Manifest) {
		t.Fatalf("second export %+v of a %d-byte checkpoint: not incremental", st2, d2.StateBytes)
	}
}

func offsetMap(r *cairnpb.GetOffsetsResponse) string {
	var s []string
	for _, o := range r.GetOffsets() {
		s = append(s, fmt.Sprintf("%s=%d", o.GetSource(), o.GetOffset()))
	}
	sort.Strings(s)
	return fmt.Sprint(s)
}

func sums(m *snapshot.Manifest) string {
	var s []string
	for _, f := range m.Files {
		s = append(s, f.Checksum)
	}
	sort.Strings(s)
	return fmt.Sprint(s)
}

func distinctBytes(m *snapshot.Manifest) int64 {
	seen := map[string]bool{}
	var n int64
	for _, f := range m.Files {
		if !seen[f.Checksum] {
			seen[f.Checksum] = true
			n += f.Size
		}
	}
	return n
}

// settle flushes and compacts a member's state: the next checkpoint then
// shares its SSTs with later ones (a tiny test DB otherwise compacts
// everything together on the next flush, which large DBs don't).
func settle(t *testing.T, m *testcluster.Member) {
	t.Helper()
	err := m.Node.FSM.DB(func(db *pebble.DB) error {
		if err := db.Flush(); err != nil {
			return err
		}
		return db.Compact(context.Background(), []byte{0}, []byte{0xff, 0xff}, false)
	})
	if err != nil {
		t.Fatal(err)
	}
}
