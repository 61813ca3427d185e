package cluster

import "testing"

func TestChanges(t *testing.T) {
	s := []LeaderSample{{Leader: "n1", Term: 2}, {}, {Leader: "n1", Term: 3}, {Leader: "n2", Term: 4}, {}, {Leader: "n3", Term: 6}}
	if got := Changes(s); got != 2 {
		t.Fatalf("Changes = %d, want 2", got)
	}
	if Changes(nil) != 0 {
		t.Fatal("no samples, changes")
	}
}

func TestNodeIP(t *testing.T) {
	if got := NodeIP(10, 3); got != "127.0.0.13" {
		t.Fatal(got)
	}
}
