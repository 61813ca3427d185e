package linearizability

import (
	"bytes"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

func TestJSONLRoundTrip(t *testing.T) {
	h := History{
		put("1", 0, "k", "a", 0, 10),
		getMissing("2", 1, "k", 1, 2),
		cas("3", 2, "k", "a", "b", false, 3, 4),
		unknown(withTotal(add("4", 3, "c", "p", 9, 8, 5, 6), 8)),
		resolvedOp(read("5", 4, "c", 0, 7, 8)),
		rejected(transfer("6", 5, "a", "b", 3, 9, 10)),
		final(readAll("7", 6, map[string]int64{"a": 1, "b": -2}, 11, 12)),
	}
	path := filepath.Join(t.TempDir(), "history.jsonl")
	if err := WriteFile(path, h); err != nil {
		t.Fatal(err)
	}
	back, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(h, back) {
		t.Fatalf("round trip changed the history:\n%+v\n%+v", h, back)
	}
}

func resolvedOp(op Op) Op {
	op.Outcome, op.Return, op.Resolved = OutcomeOK, InfiniteReturn, ResolvedCommitted
	return op
}

func TestJSONLFieldNames(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSONL(&b, History{add("r1", 2, "k", "p", 3, 4, 5, 6)}); err != nil {
		t.Fatal(err)
	}
	want := `{"id":"r1","client":2,"type":"add","key":"k","producer":"p","epoch":1,"seq":3,"delta":4,"call":5,"return":6,"outcome":"ok"}` + "\n"
	if b.String() != want {
		t.Fatalf("got  %s\nwant %s", b.String(), want)
	}
}

func TestReadJSONLErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"{\"id\":\"a\"}\n\n{not json}\n", "line 3"},
		{"{\"id\":\"a\",\"call\":\"soon\"}", "line 1"},
	} {
		if _, err := ReadJSONL(strings.NewReader(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ReadJSONL(%q) error %v, want %q", tc.in, err, tc.want)
		}
	}
	h, err := ReadJSONL(strings.NewReader("{\"id\":\"a\"}\n\n{\"id\":\"b\"}"))
	if err != nil || len(h) != 2 || h[1].ID != "b" {
		t.Fatalf("got %v, %v", h, err)
	}
}

func TestRecorderConcurrentAppend(t *testing.T) {
	var b bytes.Buffer
	r := NewRecorder(&b)
	var wg sync.WaitGroup
	for c := 0; c < 8; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				call := r.Now()
				ret := r.Now()
				if err := r.Append(put(fmt.Sprintf("%d-%d", c, i), c, "k", "v", call, ret)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	h, err := ReadJSONL(&b)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 400 {
		t.Fatalf("read %d records, want 400", len(h))
	}
	if err := Validate(h, KindRegister, BankOptions{}); err != nil {
		t.Fatal(err)
	}
}
