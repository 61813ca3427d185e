package fsm

import (
	"io"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// baseCheckpointer records how the FSM restores through it: with a copy of
// the live state offered (RestoreWithBase, used as is) or without (Restore,
// an empty DB).
type baseCheckpointer struct {
	captureCheckpointer
	fs              vfs.FS
	plain, withBase int
}

func (c *baseCheckpointer) Restore(_ io.Reader, dir string) error {
	c.plain++
	db, err := pebble.Open(dir, PebbleOptions(c.fs))
	if err != nil {
		return err
	}
	return db.Close()
}

func (c *baseCheckpointer) RestoreWithBase(_ io.Reader, dir string, base func(string) error) error {
	c.withBase++
	return base(dir)
}

// Restore offers a Checkpointer that can use it a copy of the live state
// (a delta install builds on it) — unless the state machine never applied
// anything, when there is nothing worth copying.
func TestRestoreOffersLiveStateOnceApplied(t *testing.T) {
	fs := vfs.NewMem()
	cp := &baseCheckpointer{fs: fs}
	f := openWith(t, fs, "/live", cp)
	defer f.Close()
	if err := f.Restore(io.NopCloser(strings.NewReader(""))); err != nil {
		t.Fatal(err)
	}
	if cp.plain != 1 || cp.withBase != 0 {
		t.Fatalf("fresh state machine: %d plain restores, %d with a base; want 1, 0", cp.plain, cp.withBase)
	}
	lg := newLogger()
	for i := 0; i < 10; i++ {
		applyOne(t, f, lg.next(put("k"+strings.Repeat("x", i), "v")))
	}
	applied := f.AppliedIndex()
	if err := f.Restore(io.NopCloser(strings.NewReader(""))); err != nil {
		t.Fatal(err)
	}
	if cp.plain != 1 || cp.withBase != 1 {
		t.Fatalf("after applies: %d plain restores, %d with a base; want 1, 1", cp.plain, cp.withBase)
	}
	// The copy offered was the live state: restoring it as is changes nothing.
	if f.AppliedIndex() != applied || string(mustGet(t, f, "kxxx").Bytes) != "v" {
		t.Fatalf("after restoring the live copy: applied %d (want %d), kxxx %q", f.AppliedIndex(), applied, mustGet(t, f, "kxxx").Bytes)
	}
}
