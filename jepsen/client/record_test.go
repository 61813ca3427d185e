package client

import (
	"bytes"
	"testing"

	"github.com/cairn-db/cairn/linearizability"
)

func TestRequestIDs(t *testing.T) {
	for _, c := range []struct {
		client int
		n      uint32
		id     string
	}{{0, 1, "c0-1"}, {7, 4294967295, "c7-4294967295"}, {1000, 3, "c1000-3"}} {
		got, ok := OpID(RequestID(c.client, c.n))
		if !ok || got != c.id {
			t.Errorf("OpID(RequestID(%d,%d)) = %q, %v; want %q", c.client, c.n, got, ok, c.id)
		}
	}
	if _, ok := OpID(42); ok {
		t.Error("an id without a client part was accepted")
	}
}

func TestRecorderWritesReadableHistory(t *testing.T) {
	var buf bytes.Buffer
	r := NewRecorder(&buf)
	r.Add(Record{Op: linearizability.Op{ID: "c0-1", Type: linearizability.OpGet, Key: "k", Outcome: linearizability.OutcomeOK, Call: 1, Return: 2}, Node: "n2"})
	h, err := linearizability.ReadJSONL(&buf)
	if err != nil || len(h) != 1 || h[0].ID != "c0-1" || h[0].Key != "k" {
		t.Fatalf("read back %+v, %v", h, err)
	}
	if got := History(r.Records()); len(got) != 1 || got[0].ID != "c0-1" {
		t.Fatalf("History: %+v", got)
	}
}
