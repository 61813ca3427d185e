package raftnode

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// gatedStore is an in-memory logStore whose DeleteRange waits for gate
// (nil: does not wait) and records the ranges it deleted.
type gatedStore struct {
	*raft.InmemStore
	gate     chan struct{}
	onDelete func(min, max uint64) // called before each deletion
	mu       sync.Mutex
	deletes  [][2]uint64
}

func (g *gatedStore) DeleteRange(min, max uint64) error {
	if g.gate != nil {
		<-g.gate
	}
	if g.onDelete != nil {
		g.onDelete(min, max)
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
	fixed := time.Unix(1_700_000_000, 0)
	l.now = func() time.Time { return fixed } // deletions take no time: chunks double

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
	want := [][2]uint64{{1, 32}, {33, 96}, {97, 224}, {225, 480}, {481, 992}, {993, 2016}, {2017, 2500}}
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

func TestNextTruncChunk(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		chunk int
		took  time.Duration
		want  int
	}{
		{32, 0, 64},          // fast: double
		{512, 2 * ms, 1024},  // under a quarter of the target: double
		{1024, 1 * ms, 1024}, // at most maxTruncChunk
		{256, 5 * ms, 256},   // near the target: keep
		{1024, 180 * ms, 56}, // 1,024 entries of 2 MiB: in proportion
		{64, 8 * ms, 64},     // 64 of 2 MiB: keep
		{64, 40 * ms, 32},    // at least minTruncChunk
		{100, 20 * ms, 50},   // twice the target: half
	} {
		if got := nextTruncChunk(tc.chunk, tc.took); got != tc.want {
			t.Errorf("nextTruncChunk(%d, %v) = %d, want %d", tc.chunk, tc.took, got, tc.want)
		}
	}
}

// TestLazyHeadShrinksSlowDeletions: when deleting costs time in proportion
// to the entries (large entries), the transactions shrink to about
// truncTarget; when it costs little again, they grow back.
func TestLazyHeadShrinksSlowDeletions(t *testing.T) {
	g := newGatedStore(t, 5000)
	var mu sync.Mutex
	clock := time.Unix(1_700_000_000, 0)
	perEntry := time.Millisecond // like entries of ~512 KiB
	l := newLazyHead(g)
	l.now = func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return clock
	}
	g.onDelete = func(min, max uint64) {
		mu.Lock()
		clock = clock.Add(time.Duration(max-min+1) * perEntry)
		mu.Unlock()
	}
	defer l.Close()
	if err := l.DeleteRange(1, 1000); err != nil {
		t.Fatal(err)
	}
	if err := l.flush(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	perEntry = time.Microsecond
	mu.Unlock()
	if err := l.DeleteRange(1001, 4000); err != nil {
		t.Fatal(err)
	}
	if err := l.flush(); err != nil {
		t.Fatal(err)
	}
	var sizes []uint64
	for _, r := range g.ranges() {
		sizes = append(sizes, r[1]-r[0]+1)
	}
	// 32 entries took 32 ms: shrink to the floor and stay there while
	// deletions stay slow (31 of 32 and the last 8 of the 1,000); then
	// double up to the ceiling.
	want := "[32 32 32 32 32 32 32 32 32 32 32 32 32 32 32 32 32 32 32 32 32 32 32 32 32 32 32 32 32 32 32 8 32 64 128 256 512 1024 984]"
	if got := fmt.Sprint(sizes); got != want {
		t.Fatalf("deletion sizes %s, want %s", got, want)
	}
}
