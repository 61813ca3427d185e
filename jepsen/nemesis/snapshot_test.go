package nemesis

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cairn-db/cairn/jepsen/cluster"
)

func TestSnapshotRoles(t *testing.T) {
	for _, tc := range []struct {
		ids                    []string
		leader                 string
		archive                string
		transfer               bool
		victims, leadersIfMove []string
		err                    bool
	}{
		{ids: []string{"n1", "n2", "n3"}, leader: "n1", archive: "n3", victims: []string{"n2"}},
		{ids: []string{"n1", "n2", "n3"}, leader: "n2", archive: "n3", victims: []string{"n1"}},
		// The archive leads: leadership moves to n1 or n2, the other is the victim.
		{ids: []string{"n1", "n2", "n3"}, leader: "n3", archive: "n3", transfer: true, victims: []string{"n1", "n2"}, leadersIfMove: []string{"n1", "n2"}},
		{ids: []string{"n1", "n2", "n3", "n4", "n5"}, leader: "n2", archive: "n5", victims: []string{"n1", "n3", "n4"}},
		// Two nodes: no archive.
		{ids: []string{"n1", "n2"}, leader: "n2", victims: []string{"n1"}},
		{ids: []string{"n1"}, leader: "n1", err: true},
	} {
		for seed := uint64(0); seed < 20; seed++ {
			l, v, a, tr, err := snapshotRoles(tc.ids, tc.leader, rand.New(rand.NewPCG(seed, 1)))
			if tc.err {
				if err == nil {
					t.Fatalf("%v: no error", tc.ids)
				}
				continue
			}
			if err != nil || a != tc.archive || tr != tc.transfer || !contains(tc.victims, v) || v == l || v == a || l == a {
				t.Fatalf("%v leader %s: got leader %s victim %s archive %s transfer %v err %v", tc.ids, tc.leader, l, v, a, tr, err)
			}
			if tc.transfer && !contains(tc.leadersIfMove, l) || !tc.transfer && l != tc.leader {
				t.Fatalf("%v leader %s: new leader %s", tc.ids, tc.leader, l)
			}
		}
	}
}

func contains(s []string, x string) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

func TestCompactedPast(t *testing.T) {
	for _, tc := range []struct {
		snap, last, trailing uint64
		want                 bool
	}{
		{0, 0, 64, false},
		{101, 20, 64, true},
		{100, 20, 64, false},
		{100, 20, 64 + snapshotMargin, false}, // exactly at the bound: the entry may still be kept
		{1000, 999, 0, false},
		{1000, 999 - snapshotMargin, 0, true},
	} {
		if got := compactedPast(tc.snap, tc.last, tc.trailing); got != tc.want {
			t.Errorf("compactedPast(%d, %d, %d) = %v", tc.snap, tc.last, tc.trailing, got)
		}
	}
}

func TestJudgeMidInstall(t *testing.T) {
	for _, tc := range []struct {
		name             string
		pending, arrived []string
		log              cluster.InstallLog
		fetching         bool
		mid              bool
		why              string
	}{
		{"fetching", []string{"2-90-a"}, []string{"2-90-a"}, cluster.InstallLog{}, true, true, "1 file(s) being fetched"},
		{"before fetch", []string{"2-90-a"}, []string{"2-90-a"}, cluster.InstallLog{}, false, true, "before any file"},
		{"completed", nil, []string{"2-90-a"}, cluster.InstallLog{Installs: 1}, true, false, "completed before the kill"},
		// The marker gone without a log line (say the line was lost): not claimed.
		{"no longer pending", nil, []string{"2-90-a"}, cluster.InstallLog{}, false, false, "no longer pending"},
		{"nothing arrived", nil, nil, cluster.InstallLog{}, false, false, "no checkpoint"},
		// A failed install (the fetch gave up) is still an install in progress.
		{"failed attempt", []string{"2-90-a"}, []string{"2-90-a"}, cluster.InstallLog{Failed: 1}, true, true, "still pending"},
	} {
		_, mid, why := judgeMidInstall(tc.pending, tc.arrived, tc.log, tc.fetching, 1)
		if mid != tc.mid || !strings.Contains(why, tc.why) {
			t.Errorf("%s: mid %v (%s), want %v (%s)", tc.name, mid, why, tc.mid, tc.why)
		}
	}
}

func TestSnapshotFaultSummary(t *testing.T) {
	f := &SnapshotFault{Victim: "n2", Compacted: true, InstallStarted: true, KilledMidInstall: true, Verification: "v", Reinstalled: true, CaughtUp: true}
	if s := f.Summary(); !strings.Contains(s, "mid-install (verified: v)") || !strings.Contains(s, "installed a checkpoint") {
		t.Fatal(s)
	}
	f.KilledMidInstall = false
	if s := f.Summary(); !strings.Contains(s, "NOT mid-install") {
		t.Fatal(s)
	}
}
