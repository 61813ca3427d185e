package jepsen

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*Config){
		"nodes":    func(c *Config) { c.Nodes = 0 },
		"workload": func(c *Config) { c.Workload = "queue" },
		"nemesis":  func(c *Config) { c.Nemesis = "kill,meteor" },
		"faults":   func(c *Config) { c.Faults = "lose-everything" },
		"duration": func(c *Config) { c.Duration = 0 },
	} {
		c := DefaultConfig()
		mut(&c)
		if c.Validate() == nil {
			t.Errorf("%s: bad config accepted", name)
		}
	}
}

func TestCommandReproducesTheRun(t *testing.T) {
	c := DefaultConfig()
	c.Seed, c.Workload, c.Nemesis, c.Faults, c.Hold = 42, "counter", "kill,transfer", "skip-dedup", 1500*time.Millisecond
	c.ServeArgs = []string{"--log-level=debug"}
	cmd := c.Command("out dir")
	for _, want := range []string{"--seed 42", "--workload counter", "--nemesis kill,transfer", "--faults skip-dedup",
		"--fault-duration 1.5s", "--out 'out dir'", "--serve-arg --log-level=debug"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("command %q lacks %q", cmd, want)
		}
	}
	if strings.Contains(cmd, "--fault-interval") {
		t.Errorf("default flags repeated: %s", cmd)
	}
}

func TestServeArgsKeepTheLog(t *testing.T) {
	args := strings.Join(DefaultConfig().serveArgs(), " ")
	if !strings.Contains(args, "--snapshot-threshold 1000000000000") {
		t.Fatalf("jepsen nodes must not compact their log: %s", args)
	}
}

func TestTrailingLogsFollowTheSnapshotNemesis(t *testing.T) {
	for _, tc := range []struct {
		nemesis string
		extra   []string
		want    uint64
	}{
		{"kill,pause", nil, 10240},
		{"kill,snapshot", nil, SnapshotTrailingLogs},
		{"all", nil, SnapshotTrailingLogs},
		{"snapshot", []string{"--trailing-logs", "500"}, 500},
		{"snapshot", []string{"--trailing-logs=7"}, 7},
		{"snapshot", []string{"--trailing-logs", "x"}, 0},
	} {
		c := DefaultConfig()
		c.Nemesis, c.ServeArgs = tc.nemesis, tc.extra
		if got := c.trailingLogs(); got != tc.want {
			t.Errorf("%s %v: trailing logs %d, want %d (args %v)", tc.nemesis, tc.extra, got, tc.want, c.serveArgs())
		}
	}
}
