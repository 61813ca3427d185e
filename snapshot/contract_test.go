package snapshot

import (
	"bytes"
	"io"
	"math/rand"
	"reflect"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// snapshotStoreImpl is one raft.SnapshotStore under the contract test.
type snapshotStoreImpl struct {
	name   string
	retain int
	// strict: a sink is invisible until Close, Cancel leaves nothing, and
	// the store survives a reopen (raft's in-memory store does none).
	strict bool
	open   func(t *testing.T, dir string) raft.SnapshotStore
}

func snapshotStoreImpls() []snapshotStoreImpl {
	return []snapshotStoreImpl{
		{name: "cairn", retain: 2, strict: true, open: func(t *testing.T, dir string) raft.SnapshotStore {
			return newStore(t, dir, "n1", "127.0.0.1:1", nil)
		}},
		{name: "raft-file", retain: 2, strict: true, open: func(t *testing.T, dir string) raft.SnapshotStore {
			s, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hclog.NewNullLogger())
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
		{name: "raft-inmem", retain: 1, open: func(*testing.T, string) raft.SnapshotStore {
			return raft.NewInmemSnapshotStore()
		}},
	}
}

func write(t *testing.T, s raft.SnapshotStore, index, term uint64, payload []byte) string {
	t.Helper()
	sink, err := s.Create(raft.SnapshotVersionMax, index, term, testConf, index-1, testTrans)
	if err != nil {
		t.Fatal(err)
	}
	for p := payload; len(p) > 0; {
		n := min(len(p), 7919)
		if _, err := sink.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	// raft closes the sink again after FSMSnapshot.Persist closed it.
	if err := sink.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	return sink.ID()
}

func read(t *testing.T, s raft.SnapshotStore, id string) (*raft.SnapshotMeta, []byte) {
	t.Helper()
	meta, rc, err := s.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return meta, b
}

func TestSnapshotStoreContract(t *testing.T) {
	for _, impl := range snapshotStoreImpls() {
		t.Run(impl.name, func(t *testing.T) {
			t.Run("EmptyList", func(t *testing.T) {
				l, err := impl.open(t, t.TempDir()).List()
				if err != nil || len(l) != 0 {
					t.Fatalf("new store lists %v, %v", l, err)
				}
			})
			t.Run("RoundTrip", func(t *testing.T) {
				s := impl.open(t, t.TempDir())
				payload := make([]byte, 3<<20+17) // several writes, odd size
				rand.New(rand.NewSource(1)).Read(payload)
				id := write(t, s, 42, 3, payload)
				l, err := s.List()
				if err != nil || len(l) != 1 {
					t.Fatalf("list: %v, %v", l, err)
				}
				m := l[0]
				if m.ID != id || m.Index != 42 || m.Term != 3 || m.Size != int64(len(payload)) ||
					m.ConfigurationIndex != 41 || !reflect.DeepEqual(m.Configuration, testConf) {
					t.Fatalf("listed meta %+v", m)
				}
				meta, got := read(t, s, id)
				if meta.ID != id || meta.Size != int64(len(payload)) || meta.Index != 42 {
					t.Fatalf("opened meta %+v", meta)
				}
				if !bytes.Equal(got, payload) {
					t.Fatal("payload differs")
				}
				// A second Open reads it again.
				if _, again := read(t, s, id); !bytes.Equal(again, payload) {
					t.Fatal("second open differs")
				}
			})
			t.Run("NewestFirstAndRetention", func(t *testing.T) {
				s := impl.open(t, t.TempDir())
				type snap struct{ index, term uint64 }
				order := []snap{{10, 1}, {20, 1}, {15, 2}, {30, 2}, {31, 3}}
				for _, sn := range order {
					write(t, s, sn.index, sn.term, []byte{byte(sn.index)})
				}
				l, err := s.List()
				if err != nil {
					t.Fatal(err)
				}
				if len(l) != impl.retain {
					t.Fatalf("retained %d snapshots, want %d", len(l), impl.retain)
				}
				want := []snap{{31, 3}, {30, 2}}
				for i, m := range l {
					if m.Index != want[i].index || m.Term != want[i].term {
						t.Fatalf("list[%d] = %d/%d, want %d/%d", i, m.Index, m.Term, want[i].index, want[i].term)
					}
					if _, b := read(t, s, m.ID); !bytes.Equal(b, []byte{byte(m.Index)}) {
						t.Fatalf("snapshot %s holds %v", m.ID, b)
					}
				}
			})
			t.Run("OpenUnknown", func(t *testing.T) {
				s := impl.open(t, t.TempDir())
				write(t, s, 5, 1, []byte("x"))
				if _, _, err := s.Open("1-999-123"); err == nil {
					t.Fatal("opened a snapshot that does not exist")
				}
			})
			if !impl.strict {
				return
			}
			t.Run("CancelLeavesNothing", func(t *testing.T) {
				s := impl.open(t, t.TempDir())
				keep := write(t, s, 5, 1, []byte("keep"))
				sink, err := s.Create(raft.SnapshotVersionMax, 9, 1, testConf, 1, testTrans)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := sink.Write([]byte("half")); err != nil {
					t.Fatal(err)
				}
				l, _ := s.List()
				if len(l) != 1 || l[0].ID != keep {
					t.Fatalf("unclosed sink visible: %v", l)
				}
				if err := sink.Cancel(); err != nil {
					t.Fatal(err)
				}
				l, _ = s.List()
				if len(l) != 1 || l[0].ID != keep {
					t.Fatalf("cancelled sink visible: %v", l)
				}
			})
			t.Run("SurvivesReopen", func(t *testing.T) {
				dir := t.TempDir()
				s := impl.open(t, dir)
				id := write(t, s, 7, 2, []byte("durable"))
				// An unfinished sink at "crash" time must not appear either.
				sink, err := s.Create(raft.SnapshotVersionMax, 8, 2, testConf, 1, testTrans)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = sink.Write([]byte("torn"))
				s2 := impl.open(t, dir)
				l, err := s2.List()
				if err != nil || len(l) != 1 || l[0].ID != id {
					t.Fatalf("after reopen: %v, %v", l, err)
				}
				if _, b := read(t, s2, id); string(b) != "durable" {
					t.Fatalf("after reopen: %q", b)
				}
				_ = sink.Cancel()
			})
		})
	}
}
