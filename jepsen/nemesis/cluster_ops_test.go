package nemesis

import (
	"testing"
	"time"
)

// A removal with an unknown outcome is decided only by a ready leader's
// configuration: gone from it means removed (it commits once a quorum of
// the new configuration is up); still in it means not removed, but only
// once the request can no longer be appended (seed 1795388799: a removal
// that timed out committed later and left n2 outside the cluster).
func TestRemovalSettled(t *testing.T) {
	t0 := time.Unix(1000, 0)
	deadline := t0.Add(removeWindow)
	both := map[string]bool{"n1": true, "n2": true, "n3": true}
	without := map[string]bool{"n1": true, "n3": true}
	nonVoter := map[string]bool{"n1": true, "n2": false, "n3": true}
	for _, tc := range []struct {
		name             string
		ready            bool
		members          map[string]bool
		now              time.Time
		settled, removed bool
	}{
		{"no ready leader", false, without, deadline.Add(time.Hour), false, false},
		{"configuration unreadable", true, nil, deadline.Add(time.Hour), false, false},
		{"removed", true, without, t0, true, true},
		{"demoted to non-voter counts as removed", true, nonVoter, t0, true, true},
		{"still a member while a request may still be appended", true, both, deadline.Add(-time.Millisecond), false, false},
		{"still a member after the window", true, both, deadline, true, false},
	} {
		settled, removed := removalSettled(tc.ready, tc.members, "n2", tc.now, deadline)
		if settled != tc.settled || removed != tc.removed {
			t.Errorf("%s: settled %v removed %v, want %v %v", tc.name, settled, removed, tc.settled, tc.removed)
		}
	}
}
