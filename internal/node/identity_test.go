package node

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
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
