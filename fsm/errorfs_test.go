package fsm

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/hashicorp/raft"

	"github.com/cairn-db/cairn/fsm/command"
)

func tenAdds() []*raft.Log {
	lg := newLogger()
	var logs []*raft.Log
	for i := 0; i < 10; i++ {
		logs = append(logs, lg.next(ops(nil, nil, add("n", 1))))
	}
	return logs
}

// A disk that starts failing under the WAL. Pebble treats a failed WAL
// write as fatal and the process exits (as etcd does on a WAL error): it
// must do so before acknowledging anything it could not persist, and a
// restart on a healthy disk re-applies the raft log from the persisted
// index to the same state. The failing part runs in a child process.
func TestDiskFailureExitsBeforeAckAndRestartRecovers(t *testing.T) {
	if dir := os.Getenv("CAIRN_ERRORFS_CHILD"); dir != "" {
		diskFailureChild(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDiskFailureExitsBeforeAckAndRestartRecovers$", "-test.count=1")
	cmd.Env = append(os.Environ(), "CAIRN_ERRORFS_CHILD="+dir)
	out, err := cmd.CombinedOutput()
	if err == nil || strings.Contains(string(out), "ACKED") || !strings.Contains(string(out), "PERSISTED 5") {
		t.Fatalf("child did not stop before acknowledging (err=%v):\n%s", err, out)
	}
	cfg := DefaultConfig(filepath.Join(dir, "state"))
	f, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.AppliedIndex() < 5 {
		t.Fatalf("applied %d after restart, want >= 5 (synced)", f.AppliedIndex())
	}
	f.ApplyBatch(tenAdds()) // raft re-delivers; persisted entries are skipped
	v, _, err := f.Get([]byte("n"))
	if err != nil || v.Int != 10 {
		t.Fatalf("after restart n=%d (%v), want 10", v.Int, err)
	}
}

func diskFailureChild(dir string) {
	var failing atomic.Bool
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && (op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileWrite) && strings.HasSuffix(op.Path, ".log") {
			return errorfs.ErrInjected
		}
		return nil
	}))
	cfg := DefaultConfig(filepath.Join(dir, "state"))
	cfg.FS, cfg.SyncApply = fs, true // each batch synced: the failure hits this commit
	f, err := Open(cfg)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(3)
	}
	logs := tenAdds()
	f.ApplyBatch(logs[:5])
	fmt.Println("PERSISTED", f.AppliedIndex())
	failing.Store(true)
	for _, r := range f.ApplyBatch(logs[5:7]) {
		if r.(*command.Result).OK() {
			fmt.Println("ACKED", r.(*command.Result).Index)
		}
	}
	if f.Err() != nil {
		os.Exit(4) // stopped without acknowledging: also acceptable
	}
	os.Exit(0)
}
