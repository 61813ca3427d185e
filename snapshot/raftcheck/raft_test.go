package raftcheck

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/fsm/command"
	"github.com/cairn-db/cairn/raftnode"
	"github.com/cairn-db/cairn/snapshot"
)

// member is one node wired the way a cairn server should be: the store is
// raft's SnapshotStore and the FSM's Checkpointer, and the node's gRPC
// server carries the FileService.
type member struct {
	id, dir  string
	grpcAddr string
	raftAddr string
	metrics  *snapshot.Counters
	store    *snapshot.Store
	fsm      *fsm.FSM
	node     *raftnode.Node
	grpc     *grpc.Server
	fetcher  *snapshot.GRPCFetcher
	served   chan struct{}
}

var quiet = slog.New(slog.DiscardHandler)

func start(t *testing.T, m *member, bootstrap bool) {
	t.Helper()
	lis, err := net.Listen("tcp", m.grpcAddrOr("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	m.grpcAddr = lis.Addr().String()
	if m.metrics == nil {
		m.metrics = &snapshot.Counters{}
	}
	m.fetcher = snapshot.NewGRPCFetcher(grpc.WithTransportCredentials(insecure.NewCredentials()))
	scfg := snapshot.DefaultConfig(filepath.Join(m.dir, "snapshots"), m.id, m.grpcAddr)
	scfg.Fetcher, scfg.Metrics, scfg.Logger = m.fetcher, m.metrics, quiet
	scfg.PebbleOptions = func() *pebble.Options { return fsm.PebbleOptions(vfs.Default) }
	if m.store, err = snapshot.Open(scfg); err != nil {
		t.Fatal(err)
	}
	fcfg := fsm.DefaultConfig(filepath.Join(m.dir, "state"))
	fcfg.Checkpointer, fcfg.Logger = m.store.Checkpointer(), quiet
	// Which files change between checkpoints must depend only on what the
	// test writes, not on when background compactions run.
	fcfg.PebbleOptions = func(o *pebble.Options) { o.DisableAutomaticCompactions = true }
	if m.fsm, err = fsm.Open(fcfg); err != nil {
		t.Fatal(err)
	}
	sl, err := raftnode.NewTCPStreamLayer(m.raftAddrOr("127.0.0.1:0"), "")
	if err != nil {
		t.Fatal(err)
	}
	m.raftAddr = sl.Addr().String()
	rc := raftnode.DefaultConfig()
	rc.NodeID, rc.Dir, rc.GRPCAddr, rc.Logger = m.id, filepath.Join(m.dir, "raft"), m.grpcAddr, quiet
	rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = 300*time.Millisecond, 300*time.Millisecond, 150*time.Millisecond
	rc.SnapshotThreshold, rc.SnapshotInterval, rc.TrailingLogs = 1<<30, time.Hour, 4
	rc.StreamLayer, rc.SnapshotStore = sl, m.store
	if bootstrap {
		rc.Bootstrap = []raftnode.Peer{{ID: m.id, Addr: m.raftAddr}}
	}
	if m.node, err = raftnode.New(rc, m.fsm); err != nil {
		t.Fatal(err)
	}
	m.grpc = grpc.NewServer()
	snapshot.NewServer(m.store).Register(m.grpc)
	m.served = make(chan struct{})
	go func(g *grpc.Server, done chan struct{}) { defer close(done); _ = g.Serve(lis) }(m.grpc, m.served)
}

func (m *member) grpcAddrOr(d string) string {
	if m.grpcAddr != "" {
		return m.grpcAddr
	}
	return d
}

func (m *member) raftAddrOr(d string) string {
	if m.raftAddr != "" {
		return m.raftAddr
	}
	return d
}

func (m *member) stop() {
	if m.node == nil {
		return
	}
	_ = m.node.Shutdown()
	m.grpc.Stop()
	<-m.served
	_ = m.fsm.Close()
	_ = m.fetcher.Close()
	m.node = nil
}

// waitApplied waits on the FSM's notifications until it applied index.
func waitApplied(t *testing.T, m *member, index uint64) {
	t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for {
		ch := m.fsm.Notify()
		if m.fsm.AppliedIndex() >= index {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("%s applied %d, waiting for %d", m.id, m.fsm.AppliedIndex(), index)
		}
	}
}

func waitReady(t *testing.T, m *member) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for !m.node.Ready() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("%s never became a ready leader", m.id)
		}
	}
}

func apply(t *testing.T, m *member, from, to int) uint64 {
	t.Helper()
	var last uint64
	for i := from; i < to; i++ {
		v := make([]byte, 2000) // incompressible: the state has a size
		rand.New(rand.NewSource(int64(i))).Read(v)
		res, err := m.node.Apply(context.Background(), command.MustEncode(&command.Command{Type: command.TypeBatch,
			Batch: &command.Batch{Ops: []command.Op{{Kind: command.OpPut, Key: fmt.Appendf(nil, "k%06d", i), Value: v}}}}))
		if err != nil || !res.OK() {
			t.Fatalf("apply %d: %+v, %v", i, res, err)
		}
		last = res.Index
	}
	return last
}

// snapshotFlushed flushes the memtable (so that state is in SSTs that
// later checkpoints share) and takes a raft snapshot, which compacts the
// log behind it: a lagging follower then needs InstallSnapshot.
func snapshotFlushed(t *testing.T, m *member) {
	t.Helper()
	if err := m.fsm.DB(func(db *pebble.DB) error { return db.Flush() }); err != nil {
		t.Fatal(err)
	}
	if _, err := m.node.Snapshot(); err != nil {
		t.Fatal(err)
	}
}

func dump(t *testing.T, m *member) [][2][]byte {
	t.Helper()
	var out [][2][]byte
	err := m.fsm.DB(func(db *pebble.DB) error {
		it, err := db.NewIter(nil)
		if err != nil {
			return err
		}
		for it.First(); it.Valid(); it.Next() {
			out = append(out, [2][]byte{append([]byte{}, it.Key()...), append([]byte{}, it.Value()...)})
		}
		if err := it.Error(); err != nil {
			_ = it.Close()
			return err
		}
		return it.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sameState waits until b applied everything a has, then compares every
// key and value of the two state machines.
func sameState(t *testing.T, a, b *member) {
	t.Helper()
	for {
		idx := a.fsm.AppliedIndex()
		waitApplied(t, b, idx)
		if a.fsm.AppliedIndex() == idx && b.fsm.AppliedIndex() == idx {
			break
		}
	}
	x, y := dump(t, a), dump(t, b)
	if len(x) != len(y) {
		t.Fatalf("%s has %d keys, %s has %d", a.id, len(x), b.id, len(y))
	}
	for i := range x {
		if !bytes.Equal(x[i][0], y[i][0]) || !bytes.Equal(x[i][1], y[i][1]) {
			t.Fatalf("%s and %s differ at %q / %q", a.id, b.id, x[i][0], y[i][0])
		}
	}
}

// A follower joining late, and again after falling behind, is brought up
// to date by InstallSnapshot carrying a manifest; the second time it
// fetches only the files it lacks.
func TestInstallSnapshotThroughRaft(t *testing.T) {
	n1 := &member{id: "n1", dir: t.TempDir()}
	n2 := &member{id: "n2", dir: t.TempDir()}
	t.Cleanup(func() { n2.stop(); n1.stop() })
	start(t, n1, true)
	waitReady(t, n1)
	apply(t, n1, 0, 300)
	snapshotFlushed(t, n1)
	last := apply(t, n1, 300, 320)
	snapshotFlushed(t, n1)

	start(t, n2, false)
	// A non-voter: stopping it later leaves n1 its quorum.
	if err := n1.node.AddMember("n2", n2.raftAddr, false); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, n2, last)
	sameState(t, n1, n2)
	first := n2.metrics.Totals()
	if first.Installs != 1 || first.FilesFetched == 0 || first.FilesReused != 0 {
		t.Fatalf("first install: %+v", first)
	}
	if l, err := n2.store.List(); err != nil || len(l) != 1 {
		t.Fatalf("follower lists %v, %v", l, err)
	}

	// n2 falls behind the leader's log.
	n2.stop()
	apply(t, n1, 320, 340)
	snapshotFlushed(t, n1)
	last = apply(t, n1, 340, 350)
	snapshotFlushed(t, n1)
	start(t, n2, false)
	waitApplied(t, n2, last)
	sameState(t, n1, n2)
	second := n2.metrics.Totals().LastInstall
	if second.Err != nil || second.FilesReused == 0 || second.BytesFetched == 0 || second.BytesFetched*2 > second.Bytes {
		t.Fatalf("second install not incremental: %+v", second)
	}
	t.Logf("second install: fetched %d files / %d bytes, reused %d files / %d bytes of %d",
		second.FilesFetched, second.BytesFetched, second.FilesReused, second.BytesReused, second.Bytes)
}

// overwrite puts new values (seeded by salt) at the keys of apply's i.
func overwrite(t *testing.T, m *member, keys []int, salt int64) uint64 {
	t.Helper()
	var last uint64
	for _, i := range keys {
		v := make([]byte, 2000)
		rand.New(rand.NewSource(salt*1_000_003 + int64(i))).Read(v)
		res, err := m.node.Apply(context.Background(), command.MustEncode(&command.Command{Type: command.TypeBatch,
			Batch: &command.Batch{Ops: []command.Op{{Kind: command.OpPut, Key: fmt.Appendf(nil, "k%06d", i), Value: v}}}}))
		if err != nil || !res.OK() {
			t.Fatalf("overwrite %d: %+v, %v", i, res, err)
		}
		last = res.Index
	}
	return last
}

// A follower that built its state from the log holds none of the leader's
// files. When it falls behind the leader's log, the install rebuilds the
// checkpoint's state from its own state plus the keys that differ (a
// delta install), ships a fraction of the state, and leaves a snapshot of
// the follower's own files that it can serve and verify.
func TestDeltaInstallThroughRaft(t *testing.T) {
	n1 := &member{id: "n1", dir: t.TempDir()}
	n2 := &member{id: "n2", dir: t.TempDir()}
	t.Cleanup(func() { n2.stop(); n1.stop() })
	start(t, n1, true)
	waitReady(t, n1)
	start(t, n2, false)
	if err := n1.node.AddMember("n2", n2.raftAddr, false); err != nil {
		t.Fatal(err)
	}
	last := apply(t, n1, 0, 400)
	waitApplied(t, n2, last)
	if err := n2.fsm.DB(func(db *pebble.DB) error { return db.Flush() }); err != nil {
		t.Fatal(err)
	}
	if got := n2.metrics.Totals().Installs; got != 0 {
		t.Fatalf("n2 installed %d snapshots; it should have replicated the log", got)
	}

	n2.stop()
	// 5% of the keys change; the log is compacted past n2.
	var keys []int
	for i := 0; i < 400; i += 20 {
		keys = append(keys, i)
	}
	overwrite(t, n1, keys, 1)
	snapshotFlushed(t, n1)
	last = apply(t, n1, 400, 405)
	snapshotFlushed(t, n1)

	start(t, n2, false)
	waitApplied(t, n2, last)
	sameState(t, n1, n2)
	tot := n2.metrics.Totals()
	st := tot.LastInstall
	if tot.Installs != 1 || st.Err != nil || !st.Delta {
		t.Fatalf("want one delta install, got %d installs, last %+v", tot.Installs, st)
	}
	// The changed and new keys, plus the FSM's own bookkeeping keys.
	if st.KeysFetched < int64(len(keys)) || st.KeysFetched > int64(len(keys))+10 || st.KeysDeleted != 0 {
		t.Fatalf("delta fetched %d keys and deleted %d; %d keys changed", st.KeysFetched, st.KeysDeleted, len(keys))
	}
	if shipped := st.BytesFetched + st.BytesSent; shipped*5 > st.Bytes {
		t.Fatalf("delta shipped %d (+%d sent) bytes of a %d-byte state", st.BytesFetched, st.BytesSent, st.Bytes)
	}
	t.Logf("delta install: %d keys fetched, %d reused; %d bytes received, %d sent, of %d", st.KeysFetched, st.KeysReused,
		st.BytesFetched, st.BytesSent, st.Bytes)

	// n2 keeps a snapshot of its own files for that index, and it verifies.
	l, err := n2.store.List()
	if err != nil || len(l) != 1 {
		t.Fatalf("n2 lists %v, %v", l, err)
	}
	d, err := n2.store.Show(l[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if d.Manifest.RebuiltFrom == nil || d.Manifest.RebuiltFrom.NodeID != "n1" || d.Manifest.Source.NodeID != "n2" || d.Manifest.ID != st.CheckpointID {
		t.Fatalf("n2's snapshot manifest: source %+v rebuilt from %+v id %s (installed %s)", d.Manifest.Source, d.Manifest.RebuiltFrom, d.Manifest.ID, st.CheckpointID)
	}
	r, err := n2.store.Verify(context.Background(), l[0].ID)
	if err != nil || r.Status != snapshot.VerifyOK {
		t.Fatalf("verify n2's rebuilt snapshot: %+v, %v", r, err)
	}
}
