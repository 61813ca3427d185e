package snapshot

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

var testConf = raft.Configuration{Servers: []raft.Server{
	{ID: "n1", Address: "127.0.0.1:1", Suffrage: raft.Voter},
	{ID: "n2", Address: "127.0.0.1:2", Suffrage: raft.Voter},
}}

// testTrans encodes peers for raft's file store (it records them for
// protocol version 0).
var _, testTrans = raft.NewInmemTransport("")

func openDB(t testing.TB, dir string) *pebble.DB {
	t.Helper()
	// No background compactions: which files change between checkpoints
	// must depend only on what the test writes.
	db, err := pebble.Open(dir, &pebble.Options{FormatMajorVersion: pebble.FormatNewest, Logger: quietLogger{},
		DisableAutomaticCompactions: true})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// fill writes keys [from,to) with values of valSize random bytes and
// flushes, so that they land in SSTs.
func fill(t testing.TB, db *pebble.DB, prefix string, from, to, valSize int, seed int64) {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	b := db.NewBatch()
	for i := from; i < to; i++ {
		v := make([]byte, valSize)
		rng.Read(v)
		if err := b.Set(fmt.Appendf(nil, "%s%08d", prefix, i), v, nil); err != nil {
			t.Fatal(err)
		}
		if b.Len() > 4<<20 {
			if err := b.Commit(pebble.NoSync); err != nil {
				t.Fatal(err)
			}
			b = db.NewBatch()
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
}

func put(t testing.TB, db *pebble.DB, k, v string) {
	t.Helper()
	if err := db.Set([]byte(k), []byte(v), pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

// dump returns every key/value of db in order.
func dump(t testing.TB, db *pebble.DB) [][2][]byte {
	t.Helper()
	it, err := db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var out [][2][]byte
	for it.First(); it.Valid(); it.Next() {
		out = append(out, [2][]byte{append([]byte{}, it.Key()...), append([]byte{}, it.Value()...)})
	}
	if err := it.Error(); err != nil {
		t.Fatal(err)
	}
	return out
}

func dumpDir(t testing.TB, dir string) [][2][]byte {
	t.Helper()
	db := openDB(t, dir)
	defer db.Close()
	return dump(t, db)
}

func sameState(t testing.TB, want, got [][2][]byte) {
	t.Helper()
	if len(want) != len(got) {
		t.Fatalf("state differs: %d keys, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(want[i][0], got[i][0]) || !bytes.Equal(want[i][1], got[i][1]) {
			t.Fatalf("state differs at key %d: %q", i, want[i][0])
		}
	}
}

func newStore(t testing.TB, dir, node, addr string, mutate func(*Config)) *Store {
	t.Helper()
	cfg := DefaultConfig(dir, node, addr)
	cfg.Logger = slog.New(slog.DiscardHandler)
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkpoint does what raft does when it takes a snapshot: FSM Snapshot,
// store Create, Persist into the sink, Release.
// pebbleCheckpoint is what fsm's TakeCheckpoint does, for a plain DB:
// Pebble's checkpoint of db in dir, without the tables reuse takes (fsm
// skips their links; here they are linked, offered to reuse through the
// link, which is the same inode as the live table, and removed again).
func pebbleCheckpoint(db *pebble.DB, dir string, reuse func(string) string) error {
	if err := db.Checkpoint(dir, pebble.WithFlushedWAL()); err != nil {
		return err
	}
	if reuse == nil {
		return nil
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if p := filepath.Join(dir, e.Name()); strings.HasSuffix(e.Name(), ".sst") && reuse(p) != "" {
			if err := os.Remove(p); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkpoint(t testing.TB, s *Store, db *pebble.DB, index, term uint64) (string, *Manifest) {
	t.Helper()
	snap, err := s.Checkpointer().Snapshot(db, index, term, func(dir string, reuse func(string) string) (uint64, uint64, map[string]int64, error) {
		return index, term, nil, pebbleCheckpoint(db, dir, reuse)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	sink, err := s.Create(raft.SnapshotVersionMax, index, term, testConf, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	d, err := s.Show(sink.ID())
	if err != nil {
		t.Fatal(err)
	}
	return sink.ID(), d.Manifest
}

// ship does what raft's InstallSnapshot does: the leader's stored payload
// is copied into a sink of the follower's store.
func ship(t testing.TB, from *Store, id string, to raft.SnapshotStore) string {
	t.Helper()
	meta, rc, err := from.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	sink, err := to.Create(meta.Version, meta.Index, meta.Term, meta.Configuration, meta.ConfigurationIndex, testTrans)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(sink, rc); err != nil {
		_ = sink.Cancel()
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	return sink.ID()
}

// restore does what raft does after a snapshot was received: Open it and
// hand it to the FSM's Restore.
func restore(t testing.TB, s *Store, id, dir string) (InstallStats, error) {
	t.Helper()
	_, rc, err := s.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	return s.Install(context.Background(), rc, dir)
}

// listen reserves 127.0.0.1:0 for a node's FileService.
func listen(t testing.TB) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return lis
}

// serve runs s's FileService on lis until the test ends.
func serve(t testing.TB, lis net.Listener, s *Store) {
	t.Helper()
	g := grpc.NewServer()
	NewServer(s).Register(g)
	done := make(chan struct{})
	go func() { defer close(done); _ = g.Serve(lis) }()
	t.Cleanup(func() { g.Stop(); <-done })
}

// node is a store with a running FileService, as on a cairn node.
type node struct {
	*Store
	addr string
	m    *Counters
}

func newNode(t testing.TB, id string, mutate func(*Config)) *node {
	t.Helper()
	lis := listen(t)
	n := &node{addr: lis.Addr().String(), m: &Counters{}}
	n.Store = newStore(t, filepath.Join(t.TempDir(), id), id, n.addr, func(c *Config) {
		c.Metrics = n.m
		c.Fetcher = newFetcher(t)
		if mutate != nil {
			mutate(c)
		}
	})
	serve(t, lis, n.Store)
	return n
}

func newFetcher(t testing.TB) *GRPCFetcher {
	f := NewGRPCFetcher(grpc.WithTransportCredentials(insecure.NewCredentials()))
	t.Cleanup(func() { _ = f.Close() })
	return f
}

// listDir returns the paths in dir.
func listDir(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, filepath.Join(dir, e.Name()))
	}
	return out
}
