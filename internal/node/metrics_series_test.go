package node_test

import (
	"testing"

	"github.com/cairn-db/cairn/internal/testcluster"
)

// The documented checkpoint counters exist from the start (at 0), so that
// alerts on them see a series before the first event.
func TestCheckpointCountersExistFromTheStart(t *testing.T) {
	c := testcluster.Start(t, 1, nil)
	mf, err := c.Members[0].Node.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := map[string]int{}
	for _, m := range mf {
		series[m.GetName()] = len(m.GetMetric())
	}
	for name, want := range map[string]int{
		"cairn_checkpoint_installs_total":     2, // result ok, error
		"cairn_checkpoints_total":             2,
		"cairn_checkpoint_serve_errors_total": 1,
	} {
		if series[name] < want {
			t.Errorf("%s: %d series at start, want %d", name, series[name], want)
		}
	}
}
