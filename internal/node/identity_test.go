package node

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairn-db/cairn/raftnode"
)

func TestDataDirBelongsToOneNode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := claimDataDir(dir, "n2"); err != nil {
		t.Fatal(err)
	}
	if err := claimDataDir(dir, "n2"); err != nil {
		t.Fatalf("the same id again: %v", err)
	}
	err := claimDataDir(dir, "n7")
	if !errors.Is(err, ErrWrongNode) {
		t.Fatalf("another id: %v, want ErrWrongNode", err)
	}
	t.Log(err)
	if b, _ := os.ReadFile(filepath.Join(dir, identityFile)); string(b) != "n2\n" {
		t.Fatalf("identity file holds %q", b)
	}
}

func TestStartRefusesAnotherNodesDataDir(t *testing.T) {
	dir := t.TempDir()
	if err := claimDataDir(dir, "n2"); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.NodeID, cfg.DataDir, cfg.GRPCAddr, cfg.RaftAddr = "n7", dir, "127.0.0.1:0", "127.0.0.1:0"
	n, err := Start(cfg)
	if err == nil {
		n.Stop()
		t.Fatal("n7 started on n2's data directory")
	}
	if !errors.Is(err, ErrWrongNode) {
		t.Fatalf("start: %v, want ErrWrongNode", err)
	}
}

// A restore that fails leaves no data directory behind when it made it.
func TestFailedRestoreLeavesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new")
	_, err := Restore(context.Background(), RestoreConfig{BucketURL: "file://" + t.TempDir(), DataDir: dir, NodeID: "n1",
		Peers: []raftnode.Peer{{ID: "n1", Addr: "127.0.0.1:7201"}}}) // an empty bucket: nothing to restore
	if err == nil {
		t.Fatal("restore from an empty bucket succeeded")
	}
	if _, serr := os.Stat(dir); !errors.Is(serr, fs.ErrNotExist) {
		t.Fatalf("failed restore left %s (%v)", dir, serr)
	}
}
