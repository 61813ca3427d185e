package snapshot

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// trimWAL reads a WAL once: with nothing to cut it returns the checksum
// hashFile computes; with a stale tail it cuts it and returns no sum (the
// caller hashes the trimmed file).
func TestTrimWALReturnsTheChecksumOfAnUntrimmedFile(t *testing.T) {
	dir := t.TempDir()
	db, err := pebble.Open(filepath.Join(dir, "db"), &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2000; i++ {
		if err := db.Set([]byte(fmt.Sprintf("k%05d", i)), bytes.Repeat([]byte{byte(i)}, 200), pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.LogData(nil, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	var wal string
	ents, _ := os.ReadDir(filepath.Join(dir, "db"))
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".log") {
			wal = e.Name()
		}
	}
	if wal == "" {
		t.Fatal("no WAL")
	}
	orig, err := os.ReadFile(filepath.Join(dir, "db", wal))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	clean := filepath.Join(dir, "clean", wal)
	if err := os.MkdirAll(filepath.Dir(clean), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(clean, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	trimmed, sum, size, err := trimWAL(clean)
	want, wantSize, herr := hashFile(clean)
	if err != nil || herr != nil || trimmed != 0 || sum != want || size != wantSize {
		t.Fatalf("trimWAL = %d, %q, %d, %v; want 0, %q, %d (hashFile err %v)", trimmed, sum, size, err, want, wantSize, herr)
	}

	// A stale tail, as a recycled WAL file carries: cut, and no sum.
	stale := filepath.Join(dir, "stale", wal)
	if err := os.MkdirAll(filepath.Dir(stale), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stale, append(append([]byte{}, orig...), bytes.Repeat([]byte{0xa5}, 40<<10)...), 0o644); err != nil {
		t.Fatal(err)
	}
	trimmed, sum, _, err = trimWAL(stale)
	if err != nil || trimmed == 0 || sum != "" {
		t.Fatalf("trimWAL of a file with a stale tail = %d, %q, %v; want a cut and no sum", trimmed, sum, err)
	}
	got, err := os.ReadFile(stale)
	if err != nil {
		t.Fatal(err)
	}
	// The records survive; what was cut is the tail.
	if int64(len(got)) > int64(len(orig)) || !bytes.Equal(got, orig[:len(got)]) {
		t.Fatalf("trimmed file (%d bytes) is not a prefix of the WAL (%d bytes)", len(got), len(orig))
	}
}
