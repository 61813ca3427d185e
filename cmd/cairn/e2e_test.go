package main

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	pb "github.com/cairn-db/cairn/api/cairnpb"
	"github.com/cairn-db/cairn/internal/testcluster"
)

// maxFailover is how long the cluster may take, from SIGKILL of the
// leader's process, to acknowledge a new linearizable write.
const maxFailover = 5 * time.Second

// TestKillLeaderProcess runs three `cairn serve` processes with their
// default raft timeouts, SIGKILLs the leader's process while writers are
// running, and checks that a new leader serves writes within maxFailover,
// that no acknowledged write is lost, and that the killed node, restarted
// on its data, catches up.
func TestKillLeaderProcess(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Second)
	defer cancel()
	c := startProcCluster(t, 3)
	cl := c.client()
	leader := c.waitLeader(ctx, cl)
	t.Logf("leader %s (pid %d)", leader.id, leader.cmd.Process.Pid)

	// Writers: every key is written once; only acknowledged writes count.
	type write struct{ key, val string }
	var (
		mu    sync.Mutex
		acked []write
	)
	ackCount := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	wctx, stopWriters := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; wctx.Err() == nil; seq++ {
				w := write{fmt.Sprintf("w/%d/%06d", g, seq), fmt.Sprintf("v-%d-%d", g, seq)}
				if _, err := cl.Put(wctx, []byte(w.key), []byte(w.val)); err == nil {
					mu.Lock()
					acked = append(acked, w)
					mu.Unlock()
				}
			}
		}()
	}
	defer func() { stopWriters(); wg.Wait() }()
	waitFor(ctx, t, "200 acknowledged writes", func() (bool, string) {
		n := ackCount()
		return n >= 200, fmt.Sprintf("%d acknowledged", n)
	})

	// Kill the leader's process, found by the pid it reports.
	killedAt := time.Now()
	c.kill(leader)
	ackedAtKill := ackCount()

	// Failover: the first write issued after the kill that is acknowledged.
	probe := c.client()
	var failover time.Duration
	for attempt := 0; ; attempt++ {
		actx, acancel := context.WithTimeout(ctx, time.Second)
		_, err := probe.Put(actx, []byte("probe"), fmt.Appendf(nil, "%d", attempt))
		acancel()
		if err == nil {
			failover = time.Since(killedAt)
			break
		}
		if time.Since(killedAt) > 3*maxFailover {
			t.Fatalf("no write acknowledged %s after killing the leader: %v", time.Since(killedAt).Round(time.Millisecond), err)
		}
	}
	t.Logf("failover: %s from SIGKILL of %s to the first acknowledged write", failover.Round(time.Millisecond), leader.id)
	if failover > maxFailover {
		t.Errorf("failover took %s, want <= %s", failover.Round(time.Millisecond), maxFailover)
	}
	newLeader := c.waitLeader(ctx, cl)
	if newLeader == leader {
		t.Fatalf("the killed node %s is still reported as leader", leader.id)
	}

	// Keep writing through the new leader for a while, then stop.
	waitFor(ctx, t, "100 more acknowledged writes after failover", func() (bool, string) {
		n := ackCount()
		return n >= ackedAtKill+100, fmt.Sprintf("%d acknowledged, %d at the kill", n, ackedAtKill)
	})
	stopWriters()
	wg.Wait()

	// Every acknowledged write is visible to a linearizable read.
	got := map[string]string{}
	so := api.ScanOptions{Prefix: []byte("w/"), Limit: 1000}
	for {
		kvs, next, err := cl.Scan(ctx, so)
		if err != nil {
			t.Fatalf("linearizable scan: %v", err)
		}
		for _, kv := range kvs {
			got[string(kv.Key)] = kv.Value.String()
		}
		if len(next) == 0 {
			break
		}
		so.Start = next
	}
	lost := 0
	for _, w := range acked {
		if got[w.key] != w.val {
			if lost++; lost <= 5 {
				t.Errorf("acknowledged write %s=%s reads as %q", w.key, w.val, got[w.key])
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged writes lost", lost, len(acked))
	}
	// Spot-check with single-key linearizable Gets too.
	for _, w := range []write{acked[0], acked[ackedAtKill-1], acked[len(acked)-1]} {
		v, _, err := cl.Get(ctx, []byte(w.key))
		if err != nil || v.String() != w.val {
			t.Errorf("Get(%s) = %q, %v; want %q", w.key, v.String(), err, w.val)
		}
	}
	t.Logf("%d acknowledged writes (%d before the kill) all readable", len(acked), ackedAtKill)

	// Restart the killed node on its data; it must catch up.
	latest := fmt.Sprintf("latest-%d", time.Now().UnixNano())
	testcluster.Idempotent(t, "put latest", func() error {
		_, err := cl.Put(ctx, []byte("latest"), []byte(latest))
		return err
	})
	c.start(leader, "--bootstrap", c.bootstrap)
	lcc, rcc := nodeConn(t, newLeader), nodeConn(t, leader)
	ls, err := localStatus(ctx, lcc)
	if err != nil {
		t.Fatalf("leader status: %v", err)
	}
	waitFor(ctx, t, leader.id+" catching up to the leader's commit index", func() (bool, string) {
		rs, err := localStatus(ctx, rcc)
		if err != nil {
			return false, err.Error()
		}
		return rs.GetAppliedIndex() >= ls.GetCommitIndex(), fmt.Sprintf("applied %d, leader commit %d, role %s", rs.GetAppliedIndex(), ls.GetCommitIndex(), rs.GetRole())
	})
	resp, err := pb.NewKVClient(rcc).Get(ctx, &pb.GetRequest{Key: []byte("latest"), Consistency: pb.Consistency_STALE})
	if err != nil {
		t.Fatalf("stale read on the restarted node: %v", err)
	}
	if got := string(resp.GetValue().GetBytes()); got != latest {
		t.Fatalf("stale read on the restarted node = %q, want %q", got, latest)
	}
}

// waitFor polls cond until it holds, failing the test at ctx's deadline
// with cond's last description.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	for {
		ok, desc := cond()
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s: %s", what, desc)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
