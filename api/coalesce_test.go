package api

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cairn-db/cairn/fsm/command"
	"github.com/cairn-db/cairn/raftnode"
)

// fakeRaft records the entries the coalescer proposes. Apply blocks until
// release is closed (or returns err when set).
type fakeRaft struct {
	Raft
	mu      sync.Mutex
	entries [][]command.Op
	started chan struct{} // receives once per Apply call
	release chan struct{}
	err     error
}

func newFakeRaft() *fakeRaft {
	return &fakeRaft{started: make(chan struct{}, 100), release: make(chan struct{})}
}

func (f *fakeRaft) IsLeader() bool { return true }

func (f *fakeRaft) Apply(ctx context.Context, data []byte) (*command.Result, error) {
	c, err := command.Decode(data)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.entries = append(f.entries, c.Batch.Ops)
	idx := uint64(len(f.entries))
	f.mu.Unlock()
	f.started <- struct{}{}
	<-f.release
	if f.err != nil {
		return nil, f.err
	}
	return &command.Result{Index: idx, Nums: make([]int64, len(c.Batch.Ops))}, nil
}

func putBatch(key string) *command.Batch {
	return &command.Batch{Ops: []command.Op{{Kind: command.OpPut, Key: []byte(key), Value: []byte("v")}}}
}

func waitQueued(t *testing.T, c *coalescer, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		q := len(c.queue)
		c.mu.Unlock()
		if q == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued, want %d", q, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCoalescerMergesWritesQueuedBehindAnEntryInFlight(t *testing.T) {
	f := newFakeRaft()
	c := newCoalescer(f, coalesceMaxOps, coalesceMaxBytes)
	ctx := context.Background()
	type out struct {
		key string
		res *command.Result
		err error
	}
	results := make(chan out, 21)
	go func() { r, err := c.write(ctx, putBatch("first")); results <- out{"first", r, err} }()
	<-f.started // the lone write is proposed at once
	for i := 0; i < 20; i++ {
		k := fmt.Sprintf("k%02d", i)
		go func() { r, err := c.write(ctx, putBatch(k)); results <- out{k, r, err} }()
	}
	waitQueued(t, c, 20)
	close(f.release)
	for i := 0; i < 21; i++ {
		o := <-results
		if o.err != nil {
			t.Fatalf("%s: %v", o.key, o.err)
		}
		want := uint64(2)
		if o.key == "first" {
			want = 1
		}
		if o.res.Index != want || len(o.res.Nums) != 1 {
			t.Fatalf("%s: index %d nums %d, want index %d and one num", o.key, o.res.Index, len(o.res.Nums), want)
		}
	}
	if len(f.entries) != 2 || len(f.entries[1]) != 20 {
		t.Fatalf("entries: %d, second with %d ops; want 2 entries, 20 ops merged", len(f.entries), len(f.entries[1]))
	}
}

func TestCoalescerBoundsMergedEntries(t *testing.T) {
	f := newFakeRaft()
	c := newCoalescer(f, 5, coalesceMaxBytes)
	ctx := context.Background()
	var wg sync.WaitGroup
	write := func(k string) {
		defer wg.Done()
		if _, err := c.write(ctx, putBatch(k)); err != nil {
			t.Error(err)
		}
	}
	wg.Add(1)
	go write("first")
	<-f.started
	for i := 0; i < 12; i++ {
		wg.Add(1)
		go write(fmt.Sprint(i))
	}
	waitQueued(t, c, 12)
	close(f.release)
	wg.Wait()
	var sizes []int
	for _, e := range f.entries {
		sizes = append(sizes, len(e))
	}
	if fmt.Sprint(sizes) != "[1 5 5 2]" {
		t.Fatalf("entry sizes %v, want [1 5 5 2]", sizes)
	}
}

func TestCoalescerErrorReachesEveryWriter(t *testing.T) {
	f := newFakeRaft()
	f.err = &raftnode.NotLeaderError{LeaderID: "n2"}
	close(f.release)
	c := newCoalescer(f, coalesceMaxOps, coalesceMaxBytes)
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.write(context.Background(), putBatch(fmt.Sprint(i))); !errors.Is(err, raftnode.ErrNotLeader) {
				t.Errorf("write %d: %v, want not leader", i, err)
			}
		}()
	}
	wg.Wait()
}

func TestCoalescerWriterGivingUpWhileQueuedIsNotProposed(t *testing.T) {
	f := newFakeRaft()
	c := newCoalescer(f, coalesceMaxOps, coalesceMaxBytes)
	done := make(chan error, 2)
	go func() { _, err := c.write(context.Background(), putBatch("first")); done <- err }()
	<-f.started
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _, err := c.write(ctx, putBatch("gone")); done <- err }()
	waitQueued(t, c, 1)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) || errors.Is(err, raftnode.ErrUnknownOutcome) {
		t.Fatalf("queued writer: %v, want canceled (never submitted)", err)
	}
	waitQueued(t, c, 0)
	close(f.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(f.entries) != 1 {
		t.Fatalf("%d entries proposed, want only the first", len(f.entries))
	}
}

func TestCoalescerWriterGivingUpInFlightHasUnknownOutcome(t *testing.T) {
	f := newFakeRaft()
	c := newCoalescer(f, coalesceMaxOps, coalesceMaxBytes)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := c.write(ctx, putBatch("k")); done <- err }()
	<-f.started
	cancel()
	if err := <-done; !errors.Is(err, raftnode.ErrUnknownOutcome) {
		t.Fatalf("in-flight writer: %v, want unknown outcome", err)
	}
	close(f.release)
}

func TestMergeable(t *testing.T) {
	put := command.Op{Kind: command.OpPut, Key: []byte("k")}
	del := command.Op{Kind: command.OpDelete, Key: []byte("k")}
	for _, tc := range []struct {
		name string
		b    command.Batch
		want bool
	}{
		{"puts and deletes", command.Batch{Ops: []command.Op{put, del}}, true},
		{"request id", command.Batch{RequestID: 7, Ops: []command.Op{put}}, false},
		{"producer", command.Batch{Producer: &command.Producer{ID: 1, Epoch: 1, Seq: 1}, Ops: []command.Op{put}}, false},
		{"offsets", command.Batch{Ops: []command.Op{put}, Offsets: []command.Offset{{Source: "s", Offset: 1}}}, false},
		{"add", command.Batch{Ops: []command.Op{put, {Kind: command.OpAdd, Key: []byte("n"), Num: 1}}}, false},
		{"cas", command.Batch{Ops: []command.Op{{Kind: command.OpCAS, Key: []byte("k"), ExpectAbsent: true}}}, false},
	} {
		if got := mergeable(&tc.b); got != tc.want {
			t.Errorf("%s: mergeable %v, want %v", tc.name, got, tc.want)
		}
	}
}
