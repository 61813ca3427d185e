package raftnode

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// gatedStore is an in-memory logStore whose DeleteRange waits for gate
// (nil: does not wait) and records the ranges it deleted.
type gatedStore struct {
	*raft.InmemStore
	gate    chan struct{}
	mu      sync.Mutex
	deletes [][2]uint64
}

func (g *gatedStore) DeleteRange(min, max uint64) error {
	if g.gate != nil {
		<-g.gate
	}
	g.mu.Lock()
	g.deletes = append(g.deletes, [2]uint64{min, max})
	g.mu.Unlock()
	return g.InmemStore.DeleteRange(min, max)
}

func (g *gatedStore) Close() error { return nil }

func (g *gatedStore) ranges() [][2]uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([][2]uint64(nil), g.deletes...)
}

func newGatedStore(t *testing.T, n uint64) *gatedStore {
	t.Helper()
	g := &gatedStore{InmemStore: raft.NewInmemStore()}
	var logs []*raft.Log
	for i := uint64(1); i <= n; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte{byte(i)}})
	}
	if err := g.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	return g
}

func firstLast(t *testing.T, s raft.LogStore) (uint64, uint64) {
	t.Helper()
	first, err := s.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	last, err := s.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	return first, last
}

// stopWorker leaves a lazyHead's deletions to flush (StoreLogs, a tail
// DeleteRange, Close).
func stopWorker(l *lazyHead) {
	l.stopOnce.Do(func() { close(l.stop) })
	<-l.done
}

func TestLazyHeadHidesAtOnceAndDeletesInChunksLater(t *testing.T) {
	g := newGatedStore(t, 3000)
	g.gate = make(chan struct{})
	l := newLazyHead(g)
	defer l.Close()

	returned := make(chan error, 1)
	go func() { returned <- l.DeleteRange(1, 2500) }()
	select {
	case err := <-returned:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		close(g.gate)
		t.Fatal("a head truncation waited for the store's deletion")
	}
	// Gone for raft at once, still in the store.
	if first, last := firstLast(t, l); first != 2501 || last != 3000 {
		t.Fatalf("first %d last %d, want 2501 3000", first, last)
	}
	var e raft.Log
	if err := l.GetLog(100, &e); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("hidden entry: %v, want not found", err)
	}
	if err := l.GetLog(2501, &e); err != nil || e.Index != 2501 {
		t.Fatalf("entry 2501: %v %v", err, e.Data)
	}
	if first, _ := firstLast(t, g); first != 1 {
		t.Fatalf("store's first %d before the worker ran, want 1", first)
	}

	close(g.gate)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if first, _ := firstLast(t, g); first == 2501 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the background deletion did not finish")
		}
		time.Sleep(time.Millisecond) // polling a condition, not synchronising on time
	}
	want := [][2]uint64{{1, 1024}, {1025, 2048}, {2049, 2500}}
	got := g.ranges()
	if len(got) != len(want) {
		t.Fatalf("deletions %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("deletions %v, want %v", got, want)
		}
	}
}

func TestLazyHeadFlushesBeforeWhatCouldCollide(t *testing.T) {
	for _, tc := range []struct {
		name      string
		op        func(*lazyHead) error
		wantFirst uint64 // raft.InmemStore's first index does not move down on a write
		wantLast  uint64
		survives  uint64 // an entry written by op that must still be there
	}{
		{"append after the hidden range leaves it pending", func(l *lazyHead) error {
			return l.StoreLogs([]*raft.Log{{Index: 3001, Term: 1}})
		}, 1, 3001, 3001},
		{"append into the hidden range deletes it first", func(l *lazyHead) error {
			return l.StoreLogs([]*raft.Log{{Index: 2400, Term: 2, Data: []byte("new")}})
		}, 2501, 3000, 2400},
		{"tail truncation deletes it first", func(l *lazyHead) error {
			return l.DeleteRange(2900, 3000)
		}, 2501, 2899, 0},
		{"deleting everything is not deferred", func(l *lazyHead) error {
			return l.DeleteRange(2501, 3000)
		}, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGatedStore(t, 3000)
			l := newLazyHead(g)
			stopWorker(l)
			if err := l.DeleteRange(1, 2500); err != nil {
				t.Fatal(err)
			}
			if err := tc.op(l); err != nil {
				t.Fatal(err)
			}
			if first, last := firstLast(t, g); first != tc.wantFirst || last != tc.wantLast {
				t.Fatalf("store holds %d..%d, want %d..%d", first, last, tc.wantFirst, tc.wantLast)
			}
			if tc.survives != 0 {
				var e raft.Log
				if err := l.GetLog(tc.survives, &e); err != nil || e.Index != tc.survives {
					t.Fatalf("entry %d written by the operation: %v", tc.survives, err)
				}
			}
		})
	}
}

func TestLazyHeadCloseFinishesTheDeletion(t *testing.T) {
	g := newGatedStore(t, 3000)
	l := newLazyHead(g)
	stopWorker(l)
	if err := l.DeleteRange(1, 2500); err != nil {
		t.Fatal(err)
	}
	if first, _ := firstLast(t, g); first != 1 {
		t.Fatalf("store's first %d, want 1 (nothing deleted yet)", first)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if first, last := firstLast(t, g); first != 2501 || last != 3000 {
		t.Fatalf("after Close the store holds %d..%d, want 2501..3000", first, last)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
