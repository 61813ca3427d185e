package fsm

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2"
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

// A disk that fails a read the state machine needs (an increment reads the
// key's data block from its SST). The state machine stops, and the entries
// it could not apply are reported as committed with an unknown result here
// (CodeStopped), not as failed: raft committed them and the other replicas
// apply them. Later entries get the same answer. A restart on a healthy
// disk applies them.
func TestReadFailureStopsWithCommittedEntriesNotReportedFailed(t *testing.T) {
	var failing atomic.Bool
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && op.Kind.ReadOrWrite() == errorfs.OpIsRead && strings.HasSuffix(op.Path, ".sst") {
			return errorfs.ErrInjected
		}
		return nil
	}))
	cfg := DefaultConfig("state")
	cfg.FS = fs
	f, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lg := newLogger()
	apply := func(f *FSM, l *raft.Log) *command.Result {
		t.Helper()
		return f.ApplyBatch([]*raft.Log{l})[0].(*command.Result)
	}
	// Many keys between the applied index (read at open) and n, so that
	// n's data block is one the reopened DB has not read.
	var fill []command.Op
	for i := 0; i < 2000; i++ {
		fill = append(fill, command.Op{Kind: command.OpPut, Key: []byte(fmt.Sprintf("a%05d", i)), Value: make([]byte, 100)})
	}
	logs := []*raft.Log{lg.next(ops(nil, nil, fill...)), lg.next(ops(nil, nil, add("n", 1))), // applied, flushed
		lg.next(ops(nil, nil, add("n", 1))), lg.next(put("later", "y"))} // to apply on a failing disk
	for _, l := range logs[:2] {
		if r := apply(f, l); !r.OK() {
			t.Fatal(r)
		}
	}
	if err := f.DB(func(db *pebble.DB) error { return db.Flush() }); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if f, err = Open(cfg); err != nil { // fresh caches
		t.Fatal(err)
	}
	failing.Store(true)
	for _, l := range logs[2:] { // the entry that reads n, then one after
		res := apply(f, l)
		if res.Code != command.CodeStopped || !strings.Contains(res.Message, "committed") {
			t.Fatalf("entry %d: %s %q, want %s saying it is committed", res.Index, res.Code, res.Message, command.CodeStopped)
		}
	}
	if f.Err() == nil || f.AppliedIndex() != 2 {
		t.Fatalf("err %v, applied %d: want a stopped state machine at 2", f.Err(), f.AppliedIndex())
	}
	_ = f.Close()
	failing.Store(false)
	if f, err = Open(cfg); err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.ApplyBatch(logs) // raft re-delivers from its log
	if v, _, err := f.Get([]byte("n")); err != nil || v.Int != 2 {
		t.Fatalf("after restart n=%d (%v), want 2", v.Int, err)
	}
	if v, _, err := f.Get([]byte("later")); err != nil || string(v.Bytes) != "y" {
		t.Fatalf("after restart later=%q (%v), want y", v.Bytes, err)
	}
}
