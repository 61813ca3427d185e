package api_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/internal/testcluster"
)

// Concurrent plain writes may share log entries: every acknowledged one must
// be readable, with its own value, on every node, and a mix with writes that
// cannot be merged (counters) must keep every result.
func TestConcurrentWritesAreAllApplied(t *testing.T) {
	c := testcluster.Start(t, 3, nil)
	cl := c.Client()
	ctx := context.Background()
	const writers, each = 32, 20
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				k := []byte(fmt.Sprintf("w%02d/%02d", w, i))
				if _, err := cl.Put(ctx, k, k); err != nil {
					errs <- err
					return
				}
				if i%5 == 0 {
					if _, err := cl.Batch(ctx, api.AddOp([]byte("counter"), 1)); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	kvs, next, err := cl.Scan(ctx, api.ScanOptions{Prefix: []byte("w")})
	if err != nil || next != nil {
		t.Fatalf("scan: %v (next %q)", err, next)
	}
	if len(kvs) != writers*each {
		t.Fatalf("%d keys, want %d", len(kvs), writers*each)
	}
	for _, kv := range kvs {
		if string(kv.Value.Bytes) != string(kv.Key) {
			t.Fatalf("%s = %q", kv.Key, kv.Value.Bytes)
		}
	}
	v, _, err := cl.Get(ctx, []byte("counter"))
	if err != nil || v.Int != writers*each/5 {
		t.Fatalf("counter = %d (%v), want %d", v.Int, err, writers*each/5)
	}
	c.WaitConverged()
}
