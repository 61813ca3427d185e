package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/snapshot"
)

// benchSameState waits until the voters applied the same index, stops
// them (followers first, so that the leader alone cannot commit anything
// more), and compares a digest of every key and value of their state
// machines, read offline. The cluster is down afterwards.
func benchSameState(ctx context.Context, c *api.Client, voters []*benchProc, log io.Writer) (bool, error) {
	leader, err := benchLeader(ctx, c, voters)
	if err != nil {
		return false, err
	}
	var applied uint64
	if err := waitUntil(ctx, "the voters to apply the same index", 2*time.Minute, func() (bool, error) {
		var first uint64
		for i, p := range voters {
			s, err := p.localStatus(ctx)
			if err != nil {
				return false, err
			}
			if i == 0 {
				first = s.GetAppliedIndex()
			} else if s.GetAppliedIndex() != first {
				return false, nil
			}
		}
		applied = first
		return true, nil
	}); err != nil {
		return false, err
	}
	for _, p := range append(others(voters, leader), leader) {
		if err := p.stop(syscall.SIGTERM); err != nil {
			return false, err
		}
	}
	var want []byte
	same := true
	for _, p := range voters {
		keys, sum, err := stateDigest(filepath.Join(p.dir, "state", "db"))
		if err != nil {
			return false, fmt.Errorf("bench: digest of %s's state: %w", p.id, err)
		}
		fmt.Fprintf(log, "  %s at applied index %d: %d keys, state digest %x\n", p.id, applied, keys, sum)
		if want == nil {
			want = sum
		} else if string(sum) != string(want) {
			same = false
		}
	}
	return same, nil
}

func others(procs []*benchProc, not *benchProc) []*benchProc {
	var out []*benchProc
	for _, p := range procs {
		if p != not {
			out = append(out, p)
		}
	}
	return out
}

func stateDigest(dir string) (int64, []byte, error) {
	opts := fsm.PebbleOptions(vfs.Default)
	opts.ReadOnly = true
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return 0, nil, err
	}
	defer db.Close()
	return snapshot.StateDigest(db)
}
