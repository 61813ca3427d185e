// Optional cairn-only rows, from cairn bench checkpoint and cairn bench restart.

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
)

// checkpointResult is the part of `cairn bench checkpoint -o json` used here.
type checkpointResult struct {
	Sizes []struct {
		TargetBytes  int64   `json:"target_bytes"`
		StateBytes   int64   `json:"state_bytes"`
		ColdCreateS  float64 `json:"cold_create_s"`
		WarmCreateS  float64 `json:"warm_create_s"`
		WarmNewBytes int64   `json:"warm_new_bytes"`
	} `json:"sizes"`
	CatchUp *struct {
		FirstRaw         map[string]float64 `json:"first"`
		SecondRaw        map[string]float64 `json:"second"`
		FullCatchUpS     float64            `json:"full_catch_up_s"`
		FullBytesFetched int64              `json:"full_bytes_fetched"`
	} `json:"catch_up"`
}

// restartResult is the part of `cairn bench restart -o json` used here.
type restartResult struct {
	SizeBytes  int64     `json:"size_bytes"`
	StaleReadS []float64 `json:"stale_read_s"`
	ReadyzS    []float64 `json:"readyz_s"`
}

func runJSON(ctx context.Context, bin string, out any, args ...string) error {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%w: %s", err, lastLines(stderr.String(), 5))
	}
	return json.Unmarshal(stdout.Bytes(), out)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func mib(b int64) string {
	if b >= 1<<30 {
		return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30))
	}
	return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
}

// extraRows renders the optional rows: a value in seconds in the cairn
// column, or a note that they were not measured.
func extraRows(c config, systems []*system) []string {
	row := func(title, value string) string {
		var b strings.Builder
		fmt.Fprintf(&b, "| %s | s |", title)
		for _, s := range systems {
			if s.name == "cairn" {
				fmt.Fprintf(&b, " %s | | | |", value)
			} else {
				b.WriteString(" – | | | |")
			}
		}
		// None of the other systems' ratio and met? columns, nor the target.
		b.WriteString(strings.Repeat(" – |", 2*len(systems)-1))
		return b.String()
	}
	var rows []string
	if r := c.extras.ckpt; r != nil {
		for _, sz := range r.Sizes {
			rows = append(rows, row(fmt.Sprintf("checkpoint create at %s (first after the load / steady state)", mib(sz.StateBytes)),
				fmt.Sprintf("%.3f / %.3f", sz.ColdCreateS, sz.WarmCreateS)))
		}
		if cu := r.CatchUp; cu != nil {
			rows = append(rows, row(fmt.Sprintf("follower catch-up after its log was truncated: first / second time (shipped %.0f%% / %.0f%% of the state)",
				cu.FirstRaw["shipped_pct_of_state"], cu.SecondRaw["shipped_pct_of_state"]),
				fmt.Sprintf("%.1f / %.1f", cu.FirstRaw["catch_up_s"], cu.SecondRaw["catch_up_s"])))
			rows = append(rows, row(fmt.Sprintf("fresh node catch-up (full transfer of %s)", mib(cu.FullBytesFetched)), fmt.Sprintf("%.1f", cu.FullCatchUpS)))
		}
	} else {
		rows = append(rows, row("checkpoint creation at 100 MiB / 1 GiB, follower catch-up", "not measured here (`--checkpoint`; see Checkpoints below)"))
	}
	if r := c.extras.rst; r != nil {
		rows = append(rows, row(fmt.Sprintf("restart to a stale read / to ready at %s (median of %d)", mib(r.SizeBytes), len(r.ReadyzS)),
			fmt.Sprintf("%.2f / %.2f", median(r.StaleReadS), median(r.ReadyzS))))
	} else {
		rows = append(rows, row("restart to ready", "not measured here (`--restart`; see Restart to ready below)"))
	}
	return rows
}
