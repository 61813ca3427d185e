// Package scenarios names reproducible runs: the regression scenarios that
// prove the checkers catch each planted bug (internal/faulty), a healthy
// baseline, and the longer runs CI makes. Each is a jepsen.Config recipe
// plus the exit status it must produce.
package scenarios

import (
	"time"

	"github.com/cairn-db/cairn/jepsen"
)

// Scenario is a named run.
type Scenario struct {
	Name string
	// Doc says what the scenario shows and why it is shaped this way.
	Doc      string
	Workload string
	Nemesis  string
	Faults   string // planted bugs; needs a faultybuild binary
	Duration time.Duration
	// Root: needs root and iptables (packet-dropping partitions).
	Root bool
	// Long: only run when JEPSEN_LONG is set (CI).
	Long bool
	// Expect is the exit status the run must have.
	Expect int
	// Tune adjusts the configuration further.
	Tune func(*jepsen.Config)
}

// Config returns the run configuration for seed, writing into out and
// testing bin.
func (s Scenario) Config(seed uint64, out, bin string) jepsen.Config {
	c := jepsen.DefaultConfig()
	c.Workload, c.Nemesis, c.NemesisExplicit, c.Faults = s.Workload, s.Nemesis, true, s.Faults
	c.Duration, c.Seed, c.Out, c.Bin = s.Duration, seed, out, bin
	if s.Duration < 30*time.Second {
		// Short runs: faults come faster so that each run sees several.
		c.Quiet, c.Hold = time.Second, 1500*time.Millisecond
		c.RecoveryTimeout = 30 * time.Second
	}
	if s.Tune != nil {
		s.Tune(&c)
	}
	return c
}

// All lists every scenario.
var All = []Scenario{
	{
		Name: "healthy", Workload: "register", Nemesis: "kill,pause,transfer,membership", Duration: 8 * time.Second,
		Doc: "A correct build under every fault that needs no root must pass: the checkers do not cry wolf.",
	},
	{
		Name: "skip-dedup", Workload: "counter", Nemesis: "kill,transfer", Faults: "skip-dedup", Duration: 8 * time.Second, Expect: jepsen.ExitAnomaly,
		Doc: "The FSM applies a retried producer commit again. Kills and leadership transfers make commits' outcomes " +
			"unknown, so clients retry them with the same seq; clients also re-send about one acknowledged commit in ten " +
			"(a reply lost on the way back), which makes the duplicate certain. Identifiable deltas (powers of 4) let " +
			"the exactly-once checker name the increment applied twice, and the retry's different result is a " +
			"conflicting-results anomaly.",
	},
	{
		Name: "skip-dedup-window", Workload: "window", Nemesis: "kill,transfer", Faults: "skip-dedup", Duration: 8 * time.Second, Expect: jepsen.ExitAnomaly,
		Doc: "The same planted bug under the window workload: a redelivered or retried producer commit of window " +
			"events is applied again. Its events are counted twice in their windows (values are powers of 4 per " +
			"window, so the checker names each duplicated event), the redelivery is answered as a fresh " +
			"application at a new index instead of as a duplicate, and the watch delivers the doubled values.",
	},
	{
		Name: "stale-read", Workload: "register", Nemesis: "pause-node", Faults: "stale-read", Duration: 8 * time.Second, Expect: jepsen.ExitAnomaly,
		Doc: "Linearizable reads are served from local state without a read index. Reads go to a random node, so two " +
			"in three land on followers, which learn a commit only with the next append (a few ms later) and lag " +
			"seconds behind while paused (SIGSTOP, no root needed). Reads sent to a paused follower wait in its " +
			"socket and are answered from its old state the moment it is continued, before it catches up: any " +
			"of them issued after a write to its key was acknowledged during the pause is stale. Each client that " +
			"reads from the paused node is stuck there until it resumes, so the scenario uses 12 clients (writes " +
			"go on while some are stuck) and 2 keys (a stuck read almost surely follows a write to its key).",
		Tune: func(c *jepsen.Config) { c.Clients, c.Rate, c.Keys = 12, 100, 2 },
	},
	{
		Name: "ack-before-commit", Workload: "register", Nemesis: "kill-leader", Faults: "ack-before-commit", Duration: 8 * time.Second, Expect: jepsen.ExitAnomaly,
		Doc: "The leader acknowledges a write as soon as it is handed to raft. A compare-and-set is then acknowledged " +
			"as applied even when its precondition fails at apply time, and killing the leader loses acknowledged " +
			"writes that never reached a majority: later reads do not see them. Two keys and 10 clients make " +
			"compare-and-set contention, and so false acknowledgements, frequent, and 300 operations a second put " +
			"many reads in the milliseconds between a false acknowledgement and the commit. (At 50 a second, runs " +
			"of 8 and 12 s each judged a history valid once in a .ci/run; at 300, five seeds caught the bug on both " +
			"keys.)",
		Tune: func(c *jepsen.Config) { c.Clients, c.Keys, c.Rate = 10, 2, 300 },
	},
	{
		Name: "stale-read-partition", Workload: "register", Nemesis: "partition-leader", Faults: "stale-read", Duration: 15 * time.Second,
		Root: true, Long: true, Expect: jepsen.ExitAnomaly,
		Doc: "The classic stale read: the isolated old leader keeps answering reads from its own state while the " +
			"majority elects a new leader and accepts writes.",
	},
	{
		Name: "kill-60s", Workload: "counter", Nemesis: "kill", Duration: 60 * time.Second, Long: true,
		Doc: "Exactly-once increments while random nodes, the leader or a majority are killed and restarted.",
	},
	{
		Name: "partition-60s", Workload: "register", Nemesis: "partition,netem", Duration: 60 * time.Second, Root: true, Long: true,
		Doc: "Linearizable registers under packet-dropping partitions (leader isolated, follower isolated, " +
			"minority/majority) and lossy links.",
	},
	{
		Name: "pause-transfer-60s", Workload: "bank", Nemesis: "pause,transfer,membership", Duration: 60 * time.Second, Long: true,
		Doc: "Atomic transfers while nodes are paused, leadership moves and a member is removed, wiped and re-added.",
	},
	{
		Name: "pause-snapshot-60s", Workload: "bank", Nemesis: "pause,snapshot", Duration: 60 * time.Second, Long: true,
		Doc: "Atomic transfers while nodes are paused and followers are made to install checkpoints and killed " +
			"mid-install (partitioned with root, killed without).",
	},
}

// ByName returns the scenario called name.
func ByName(name string) (Scenario, bool) {
	for _, s := range All {
		if s.Name == name {
			return s, true
		}
	}
	return Scenario{}, false
}
