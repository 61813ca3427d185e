package nemesis

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/jepsen/cluster"
)

// SnapshotFault is what one injection of the snapshot nemesis did, as
// observed (never assumed). It is on the injection's Event.
type SnapshotFault struct {
	Leader string `json:"leader"`
	Victim string `json:"victim"`
	// Archive is the node kept out of the fault (never checkpointed, never
	// made to install) so that some node still holds the whole raft log
	// for resolving unknown outcomes; empty with fewer than 3 nodes.
	Archive string `json:"archive,omitempty"`
	// Cut is how the victim was cut off: "partition" (packets dropped) or
	// "kill" (kill -9; no root for packet filtering).
	Cut string `json:"cut"`
	// Stall is how its checkpoint fetch was held while it was killed:
	// "port-drop" (packets to the source's gRPC port dropped) or
	// "sigstop-source" (the source SIGSTOPped once the install began).
	Stall string `json:"stall,omitempty"`
	// VictimLast is the victim's last log index when cut off.
	VictimLast uint64 `json:"victim_last_index"`
	// Checkpoints forced on the leader; SnapshotIndex the last one's index.
	Checkpoints   int    `json:"checkpoints_forced"`
	SnapshotIndex uint64 `json:"snapshot_index"`
	TrailingLogs  uint64 `json:"trailing_logs"`
	// Compacted: SnapshotIndex > VictimLast + TrailingLogs (+ a margin),
	// so the leader no longer holds the entries the victim needs.
	Compacted bool `json:"compacted"`
	// InstallStarted: the victim received the checkpoint (a new pending
	// snapshot in its store); Fetching: a file was being fetched
	// (files/*.partial) when it was killed.
	InstallStarted bool   `json:"install_started"`
	Checkpoint     string `json:"checkpoint,omitempty"` // the pending snapshot's id on the victim
	Fetching       bool   `json:"fetching_at_kill"`
	// KilledMidInstall: verified after the kill: the checkpoint is still
	// pending in the victim's store and its log shows no completed install.
	KilledMidInstall bool   `json:"killed_mid_install"`
	Verification     string `json:"verification"`
	// Reinstalled: after the restart the victim completed an install
	// (a "snapshot: installed" line of the new process).
	Reinstalled bool `json:"reinstalled"`
	// CaughtUp: the victim applied up to the leader's commit index at heal.
	CaughtUp bool   `json:"caught_up"`
	Error    string `json:"error,omitempty"`
}

// Summary is the one-line outcome for the timeline.
func (f *SnapshotFault) Summary() string {
	var b strings.Builder
	switch {
	case !f.Compacted:
		b.WriteString("log not compacted past the victim: no install forced")
	case !f.InstallStarted:
		b.WriteString("no install seen")
	case f.KilledMidInstall:
		fmt.Fprintf(&b, "kill -9 %s mid-install (verified: %s)", f.Victim, f.Verification)
	default:
		fmt.Fprintf(&b, "kill -9 %s NOT mid-install (%s)", f.Victim, f.Verification)
	}
	if f.Reinstalled {
		b.WriteString("; after restart it installed a checkpoint")
	}
	if f.CaughtUp {
		b.WriteString("; caught up")
	}
	return b.String()
}

// snapshotMargin is added to the trailing logs: entries in flight when
// the victim was cut off may still reach it.
const snapshotMargin = 16

// snapshotNemesis forces a follower to install a checkpoint and kills it
// during the install. Inject cuts a follower off (partition, or kill
// without root) and forces checkpoints on the leader while the workload
// writes, until the leader's log is compacted past the follower. Heal
// reconnects it with its checkpoint fetch held (the source's gRPC port
// dropped, or the source SIGSTOPped as soon as the install begins), kills
// it -9 mid-install, verifies that the install had not completed, lets
// the fetch flow again, restarts it and waits until it has caught up.
type snapshotNemesis struct {
	archive string
	leader  *cluster.Node
	victim  *cluster.Node
	cur     *SnapshotFault
	last    *SnapshotFault
}

func (*snapshotNemesis) Name() string { return "snapshot" }

func (*snapshotNemesis) Available(env *Env) (bool, string) {
	if len(env.Cluster.Nodes()) < 2 {
		return false, "needs at least 2 nodes (a leader and a follower)"
	}
	if env.TrailingLogs == 0 {
		return false, "the nodes' --trailing-logs is unknown"
	}
	return true, ""
}

// outcome returns and clears the last finished fault.
func (s *snapshotNemesis) outcome() *SnapshotFault {
	f := s.last
	s.last = nil
	return f
}

// snapshotRoles picks the leader to checkpoint, the follower to make
// install, and the archive node left alone (with 3 or more nodes: the
// highest-numbered one, always the same so that its log stays whole).
// transfer is true when the leader is the archive and leadership must
// move first (to the returned leader).
func snapshotRoles(ids []string, leader string, rng *rand.Rand) (newLeader, victim, archive string, transfer bool, err error) {
	if len(ids) < 2 {
		return "", "", "", false, errors.New("needs at least 2 nodes")
	}
	rest := ids
	if len(ids) >= 3 {
		archive = ids[len(ids)-1]
		rest = ids[:len(ids)-1]
	}
	newLeader = leader
	if leader == archive {
		newLeader, transfer = rest[rng.IntN(len(rest))], true
	}
	var followers []string
	for _, id := range rest {
		if id != newLeader {
			followers = append(followers, id)
		}
	}
	if len(followers) == 0 {
		return "", "", "", false, fmt.Errorf("no follower besides leader %s and archive %s", newLeader, archive)
	}
	return newLeader, followers[rng.IntN(len(followers))], archive, transfer, nil
}

// compactedPast reports whether a leader snapshot at snap has taken the
// entry after victimLast out of its log (raft keeps trailing entries
// behind a snapshot).
func compactedPast(snap, victimLast, trailing uint64) bool {
	return snap > victimLast+trailing+snapshotMargin
}

func (s *snapshotNemesis) Inject(ctx context.Context, env *Env, rng *rand.Rand) (string, error) {
	all := env.Cluster.Nodes()
	if len(running(env)) < len(all) {
		return "", errors.New("not every node is running")
	}
	l, _, err := env.Cluster.Leader(ctx)
	if err != nil {
		return "", err
	}
	lid, vid, archive, transfer, err := snapshotRoles(ids(all), l.ID, rng)
	if err != nil {
		return "", err
	}
	if transfer {
		if l, err = transferTo(ctx, env, lid); err != nil {
			return "", fmt.Errorf("moving leadership off archive %s: %w", archive, err)
		}
	}
	s.archive = archive
	v := env.Cluster.Node(vid)
	f := &SnapshotFault{Leader: l.ID, Victim: v.ID, Archive: archive, TrailingLogs: env.TrailingLogs}
	s.cur, s.leader, s.victim = f, l, v

	st, err := env.Cluster.LocalStatus(ctx, v, 2*time.Second)
	if err != nil {
		return "", fmt.Errorf("%s status: %w", v.ID, err)
	}
	f.VictimLast = max(st.GetLastIndex(), st.GetAppliedIndex())
	if env.Net != nil {
		f.Cut = "partition"
		if err := env.Net.Partition(isolate(env, v.ID)); err != nil {
			return "", err
		}
		// Entries sent before the rules took effect may still land.
		if st, err := env.Cluster.LocalStatus(ctx, v, 2*time.Second); err == nil {
			f.VictimLast = max(f.VictimLast, st.GetLastIndex(), st.GetAppliedIndex())
		}
	} else {
		f.Cut = "kill"
		if err := env.Cluster.Kill(v); err != nil {
			return "", err
		}
	}

	// Checkpoint the leader while the workload writes until its log no
	// longer holds what the victim needs. The calls go to the leader
	// itself: through the cut-off victim they would hang.
	lc, err := api.NewClient(leaderOnly(l.GRPCAddr, env.Cluster.ClientTLS()))
	if err != nil {
		return s.describe(), err
	}
	defer lc.Close()
	deadline := time.Now().Add(60 * time.Second)
	var lastErr error
	for !compactedPast(f.SnapshotIndex, f.VictimLast, f.TrailingLogs) {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		ck, err := lc.CreateCheckpoint(cctx, l.ID)
		cancel()
		if err != nil {
			lastErr = err
		} else {
			if ck.Created {
				f.Checkpoints++
			}
			f.SnapshotIndex = max(f.SnapshotIndex, ck.Checkpoint.Index)
		}
		if compactedPast(f.SnapshotIndex, f.VictimLast, f.TrailingLogs) {
			break
		}
		if time.Now().After(deadline) {
			return s.describe(), fmt.Errorf("leader %s checkpointed up to index %d, needs more than %d (last error: %v)",
				l.ID, f.SnapshotIndex, f.VictimLast+f.TrailingLogs+snapshotMargin, lastErr)
		}
		if !sleepCtx(ctx, 250*time.Millisecond) { // the workload writes meanwhile
			return s.describe(), ctx.Err()
		}
	}
	f.Compacted = true
	return s.describe(), nil
}

func (s *snapshotNemesis) describe() string {
	f := s.cur
	how := "partition: packets dropped"
	if f.Cut == "kill" {
		how = "kill -9: no packet filtering here"
	}
	d := fmt.Sprintf("cut %s off (%s) at index %d; %d checkpoints on leader %s up to index %d (--trailing-logs %d)",
		f.Victim, how, f.VictimLast, f.Checkpoints, f.Leader, f.SnapshotIndex, f.TrailingLogs)
	if f.Archive != "" {
		d += "; " + f.Archive + " keeps its whole log"
	}
	return d
}

func (s *snapshotNemesis) Heal(ctx context.Context, env *Env) error {
	f, l, v := s.cur, s.leader, s.victim
	if f == nil {
		return nil
	}
	s.cur, s.leader, s.victim = nil, nil, nil
	defer func() { s.last = f }()
	err := s.heal(ctx, env, f, l, v)
	if err != nil {
		f.Error = err.Error()
	}
	return err
}

func (s *snapshotNemesis) heal(ctx context.Context, env *Env, f *SnapshotFault, l, v *cluster.Node) error {
	if !f.Compacted {
		f.Verification = "not attempted"
		return errors.Join(healCut(env, f, v), env.Cluster.WaitReady(ctx, v))
	}
	before, err := v.Store()
	if err != nil {
		return errors.Join(err, healCut(env, f, v))
	}
	off := v.LogSize()

	// Reconnect the victim with its fetch from the leader held.
	var started bool
	if f.Cut == "partition" {
		f.Stall = "port-drop"
		_, p, _ := net.SplitHostPort(l.GRPCAddr)
		port, _ := strconv.Atoi(p)
		if err := env.Net.BlockPort(v.ID, l.ID, port); err != nil {
			return errors.Join(err, healCut(env, f, v))
		}
		if err := env.Net.Unpartition(); err != nil {
			return errors.Join(err, healNet(env))
		}
		started = waitInstall(ctx, v, before, 20*time.Millisecond, 30*time.Second, nil)
	} else {
		f.Stall = "sigstop-source"
		if err := env.Cluster.Restart(v); err != nil {
			return err
		}
		// The install may take milliseconds: stop the source the moment
		// the victim holds the checkpoint's manifest.
		started = waitInstall(ctx, v, before, time.Millisecond, 30*time.Second, func() {
			if err := env.Cluster.Pause(l); err != nil {
				env.logf("nemesis snapshot: SIGSTOP %s: %v", l.ID, err)
			}
		})
	}
	if started {
		f.InstallStarted = true
		at, _ := v.Store()
		f.Fetching = len(at.Partial) > 0
		if err := env.Cluster.Kill(v); err != nil {
			return errors.Join(err, unstall(env, f, l))
		}
		f.Checkpoint, f.KilledMidInstall, f.Verification = verifyMidInstall(v, before, off, f.Fetching)
	} else {
		f.Verification = "the victim received no checkpoint within 30 s"
	}
	if err := unstall(env, f, l); err != nil {
		return err
	}

	// Let it finish: restart and wait until it has caught up.
	roff := v.LogSize()
	if !v.Live() {
		if err := env.Cluster.Restart(v); err != nil {
			return err
		}
	}
	if err := env.Cluster.WaitReady(ctx, v); err != nil {
		return err
	}
	err = waitCaughtUp(ctx, env, l, v)
	f.CaughtUp = err == nil
	if il, lerr := v.InstallLog(roff); lerr == nil {
		f.Reinstalled = il.Installs > 0
	}
	return err
}

// healCut undoes the cut alone (no install was forced).
func healCut(env *Env, f *SnapshotFault, v *cluster.Node) error {
	if f.Cut == "partition" {
		return healNet(env)
	}
	if !v.Live() && f.Cut == "kill" {
		return env.Cluster.Restart(v)
	}
	return nil
}

// unstall lets the victim's fetches reach the source again.
func unstall(env *Env, f *SnapshotFault, l *cluster.Node) error {
	if f.Stall == "port-drop" {
		return healNet(env)
	}
	return env.Cluster.Resume(l)
}

// waitInstall polls v's snapshot store until a checkpoint it did not hold
// before arrives (a new manifest directory) and, when one is pending, a
// file of it is being fetched or the install is over. onArrive runs once,
// the moment the manifest is seen. It reports whether one arrived.
func waitInstall(ctx context.Context, v *cluster.Node, before cluster.StoreState, every, timeout time.Duration, onArrive func()) bool {
	mdir := v.ManifestsDir()
	deadline := time.Now().Add(timeout)
	arrived := false
	var arrivedAt time.Time
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if !arrived {
			if es, err := os.ReadDir(mdir); err == nil {
				for _, e := range es {
					if e.IsDir() && cluster.Received(e.Name()) && !before.All[e.Name()] {
						arrived = true
						break
					}
				}
			}
			if arrived && onArrive != nil {
				onArrive()
			}
		}
		if arrived {
			if arrivedAt.IsZero() {
				arrivedAt = time.Now()
			}
			// Pending and a file being fetched, or no longer pending (done
			// or nothing to fetch), or held pending for a while (a fetch
			// resuming a partial file left by an earlier kill stalls
			// without changing it).
			st, err := v.Store()
			if err == nil && (len(st.NewPending(before)) == 0 || changedPartial(st, before) || time.Since(arrivedAt) > 2*time.Second) {
				return true
			}
		}
		if time.Now().After(deadline) {
			return arrived
		}
		select {
		case <-ctx.Done():
			return arrived
		case <-t.C:
		}
	}
}

// changedPartial reports a partial file that is new or has grown.
func changedPartial(st, before cluster.StoreState) bool {
	for name, size := range st.Partial {
		if b, ok := before.Partial[name]; !ok || b != size {
			return true
		}
	}
	return false
}

// verifyMidInstall decides, after the kill, whether the install was still
// in progress: the received checkpoint is still marked pending in the
// store (the install clears the marker once the new state is in place),
// and no install completed in the killed process's log since off.
func verifyMidInstall(v *cluster.Node, before cluster.StoreState, off int64, fetching bool) (id string, mid bool, why string) {
	after, err := v.Store()
	if err != nil {
		return "", false, "cannot read the store: " + err.Error()
	}
	il, err := v.InstallLog(off)
	if err != nil {
		return "", false, "cannot read node.log: " + err.Error()
	}
	return judgeMidInstall(after.NewPending(before), newIDs(after, before), il, fetching, len(after.Partial))
}

func newIDs(after, before cluster.StoreState) []string {
	var out []string
	for id := range after.All {
		if !before.All[id] {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// judgeMidInstall is verifyMidInstall's decision.
func judgeMidInstall(pending, arrived []string, il cluster.InstallLog, fetching bool, partial int) (id string, mid bool, why string) {
	sort.Strings(pending)
	switch {
	case len(arrived) == 0:
		return "", false, "no checkpoint had arrived"
	case il.Installs > 0:
		return arrived[0], false, fmt.Sprintf("%d install(s) completed before the kill", il.Installs)
	case len(pending) == 0:
		return arrived[0], false, "the checkpoint was no longer pending"
	}
	why = fmt.Sprintf("checkpoint %s still pending after kill -9, no install completed", pending[0])
	if fetching {
		why += fmt.Sprintf(", %d file(s) being fetched", partial)
	} else {
		why += ", before any file was being fetched"
	}
	return pending[0], true, why
}

// waitCaughtUp waits until v has applied the leader's commit index as it
// was when called (the leader's own status; if it is gone, any leader's).
func waitCaughtUp(ctx context.Context, env *Env, l, v *cluster.Node) error {
	var target uint64
	if st, err := env.Cluster.LocalStatus(ctx, l, 2*time.Second); err == nil && st.GetRole() == "leader" {
		target = st.GetCommitIndex()
	} else if nl, _, err := env.Cluster.Leader(ctx); err == nil {
		if st, err := env.Cluster.LocalStatus(ctx, nl, 2*time.Second); err == nil {
			target = st.GetCommitIndex()
		}
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	var applied uint64
	for {
		if st, err := env.Cluster.LocalStatus(ctx, v, time.Second); err == nil {
			applied = st.GetAppliedIndex()
			if applied >= target {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s applied %d, leader commit was %d: %w", v.ID, applied, target, ctx.Err())
		case <-t.C:
		}
	}
}

// transferTo moves leadership to id and waits until it leads.
func transferTo(ctx context.Context, env *Env, id string) (*cluster.Node, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var lastErr error
	for {
		if _, err := env.Admin.TransferLeader(cctx, id); err != nil {
			lastErr = err
		}
		if l, _, err := env.Cluster.Leader(cctx); err == nil && l.ID == id {
			return l, nil
		}
		if !sleepCtx(cctx, 200*time.Millisecond) {
			return nil, fmt.Errorf("%s did not become leader: %v", id, errors.Join(cctx.Err(), lastErr))
		}
	}
}

// leaderOnly is a client configuration that talks to one node only.
func leaderOnly(addr string, tlsCfg *tls.Config) api.ClientConfig {
	c := api.DefaultClientConfig(addr)
	c.TLS = tlsCfg
	c.AttemptTimeout, c.RetryBudget = 10*time.Second, 15*time.Second
	c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	return c
}

// sleepCtx waits d (a polling interval) unless ctx ends first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
