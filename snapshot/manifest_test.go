package snapshot

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
)

// Manifests are persisted in raft snapshots: every format ever written
// stays readable. testdata/ holds one fixture per format.
func TestManifestFixturesDecode(t *testing.T) {
	b, err := os.ReadFile("testdata/manifest-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := DecodeManifest(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if m.Index != 354 || m.Term != 2 || len(m.Files) != 5 || m.Source.Addr != "10.0.0.1:7001" ||
		m.StateBytes != 1037341 || m.SharedBytes != 1036951 || string(m.Extra["offsets"]) != `{"in":42}` { // extra values read compact
		t.Fatalf("decoded %+v", m)
	}
	// Re-encoding decodes to the same manifest.
	enc, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	again, err := DecodeManifest(bytes.NewReader(enc))
	if err != nil || again.ID != m.ID || len(again.Files) != len(m.Files) || !again.Created.Equal(m.Created) {
		t.Fatalf("round trip: %+v, %v", again, err)
	}
}

func TestManifestRejectsUnsafeInput(t *testing.T) {
	good, _ := os.ReadFile("testdata/manifest-v1.json")
	cases := map[string]struct {
		old, new string
		want     error
	}{
		"path in name":   {`"000006.sst"`, `"../../etc/passwd"`, ErrCorrupt},
		"hidden name":    {`"000006.sst"`, `".x"`, ErrCorrupt},
		"malformed sum":  {`baf5dca06302cea4b5e5eb67d1c70a15`, `../baf5dca06302cea4b5e5eb67d1c7`, ErrCorrupt},
		"sizes disagree": {`"state_bytes": 1037341`, `"state_bytes": 1`, ErrCorrupt},
		"unknown format": {`cairn-checkpoint/1`, `cairn-checkpoint/99`, ErrNotManifest},
		"truncated":      {`"files"`, `"files`, ErrCorrupt},
		"duplicate name": {`"000011.log"`, `"000006.sst"`, ErrCorrupt},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			in := strings.Replace(string(good), c.old, c.new, 1)
			if in == string(good) {
				t.Fatal("fixture edit did not apply")
			}
			if _, err := DecodeManifest(strings.NewReader(in)); !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
	if _, err := DecodeManifest(strings.NewReader("not json at all")); !errors.Is(err, ErrNotManifest) {
		t.Fatalf("foreign payload: %v", err)
	}
}
