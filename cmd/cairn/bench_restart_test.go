package main

import (
	"context"
	"io"
	"testing"
	"time"
)

// bench restart end to end on a small state, with churn: every step must
// succeed (the load, the churn's Puts and checkpoints, the restart reading
// back the latest value) and the result must say what was run.
func TestBenchRestartWithChurn(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := restartConfig{Size: 2 << 20, ValueSize: 1024, BatchBytes: 256 << 10, Loaders: 2,
		Restarts: 2, Nodes: 1, Churn: 300, Bin: cairnBin, Dir: t.TempDir()}
	res, err := runRestartBench(ctx, cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res.ChurnPuts != 300 || res.Keys != 2048 {
		t.Fatalf("churn %d puts, %d keys; want 300 and 2048", res.ChurnPuts, res.Keys)
	}
	if len(res.ReadyzSec) != 2 || len(res.StaleReadSec) != 2 || len(res.LinearReadSec) != 2 {
		t.Fatalf("timings for %d/%d/%d restarts, want 2", len(res.ReadyzSec), len(res.StaleReadSec), len(res.LinearReadSec))
	}
	if res.DataDirBytes < 2<<20 || res.DataDirAfter < 2<<20 {
		t.Fatalf("data dir %d bytes before, %d after: smaller than the state loaded", res.DataDirBytes, res.DataDirAfter)
	}
}
