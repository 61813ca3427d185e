// Package raftnode wraps hashicorp/raft for cairn: raft-boltdb as log and
// stable store, a pluggable stream layer, leader checks, command
// submission with error translation, membership changes, and reads at
// three consistency levels (linearizable read-index, leader lease, stale).
// It never imports api/.
package raftnode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/cairn-db/cairn/fsm/command"
)

// StateMachine is what raftnode needs of the FSM: raft's batching FSM plus
// the index of the last entry whose effects are readable.
type StateMachine interface {
	raft.BatchingFSM
	AppliedIndex() uint64
	// Notify returns a channel closed when AppliedIndex next moves.
	Notify() <-chan struct{}
}

// Node is one cairn raft member.
type Node struct {
	cfg   Config
	log   *slog.Logger
	raft  *raft.Raft
	fsm   StateMachine
	store logStore
	trans *raft.NetworkTransport
	snaps raft.SnapshotStore

	// readyTerm is the term in which this node, as leader, has applied an
	// entry of its own: from then on CommitIndex is current and every
	// earlier entry is in the FSM. Zero when not ready.
	readyTerm atomic.Uint64

	// read-index batching: concurrent linearizable reads share one
	// VerifyLeader round.
	readMu   sync.Mutex
	readWait []chan readIndexResult
	reading  bool
	// lease: until when a leader-lease read needs no round (lease.go).
	lease *lease
	gate  *heartbeatGate // heartbeat fast path and AppendEntries acks (transport.go)
	// soloShortened: soloElection shortened raft's timeouts (solo.go).
	soloShortened atomic.Bool

	shutdownOnce sync.Once
	shutdownErr  error

	startedCh chan struct{} // closed when raft.NewRaft returned
	startErr  error

	obsCh    chan raft.Observation
	observer *raft.Observer
	closed   chan struct{}
	wg       sync.WaitGroup

	// removal (removed.go)
	suspectSince time.Time // checkRemoved only (watchLeadership's goroutine)
	removedCh    chan struct{}
	removedOnce  sync.Once
}

type readIndexResult struct {
	index uint64
	err   error
}

// New opens the raft log in cfg.Dir, starts raft, and bootstraps a new
// cluster when cfg.Bootstrap is set and there is no existing state.
func New(cfg Config, sm StateMachine) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger, fsm: sm, closed: make(chan struct{}), lease: newLease(), removedCh: make(chan struct{})}
	if n.log == nil {
		n.log = slog.Default().With("node", cfg.NodeID)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	hl := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: os.Stderr})
	store, err := openLogStore(cfg, hl, n.log)
	if err != nil {
		return nil, fmt.Errorf("raftnode: open log store: %w", err)
	}
	n.store = store
	n.snaps = cfg.SnapshotStore
	if n.snaps == nil {
		if n.snaps, err = raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, hl); err != nil {
			_ = store.Close()
			return nil, err
		}
	}
	stream := cfg.StreamLayer
	if stream == nil {
		if stream, err = NewTCPStreamLayer(cfg.RaftAddr, cfg.AdvertiseAddr); err != nil {
			_ = store.Close()
			return nil, fmt.Errorf("raftnode: listen %s: %w", cfg.RaftAddr, err)
		}
	}
	if cfg.StreamTLS != nil {
		stream = NewTLSStreamLayer(stream, cfg.StreamTLS.Server, cfg.StreamTLS.Client)
	}
	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: stream, MaxPool: 8, Timeout: 10 * time.Second, Logger: hl,
	})
	rc := cfg.raftConfig()
	rc.Logger = hl
	if len(cfg.Bootstrap) > 0 {
		has, err := raft.HasExistingState(store, store, n.snaps)
		if err != nil {
			n.closeStores()
			return nil, err
		}
		if !has {
			var conf raft.Configuration
			for _, p := range cfg.Bootstrap {
				conf.Servers = append(conf.Servers, raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr), Suffrage: raft.Voter})
			}
			if err := raft.BootstrapCluster(rc, store, store, n.snaps, n.trans, conf); err != nil {
				n.closeStores()
				return nil, fmt.Errorf("raftnode: bootstrap: %w", err)
			}
		}
	}
	// Replication and followers' applies read back entries that were just
	// written: serve them from memory instead of a bbolt read and msgpack
	// decode each. Twice MaxAppendEntries covers a batch in flight and the
	// next one, within LogCacheBytes (logcache.go: a bulk load's entries
	// are megabytes each).
	logs, err := newLogCache(store, 2*cfg.MaxAppendEntries, cfg.LogCacheBytes)
	if err != nil {
		n.closeStores()
		return nil, err
	}
	trans, gate := raftTransport(n.trans, cfg.Pipeline)
	n.gate = gate
	// raft.NewRaft reads every log entry after the last snapshot (looking
	// for configuration changes) before it returns: seconds for a large
	// log. Start it in the background so that the node serves stale reads
	// from its state machine at once; until raft is up, the node reports
	// itself as starting and refuses what needs raft with ErrNoLeader.
	n.startedCh = make(chan struct{})
	go n.start(rc, sm, logs, trans, gate)
	return n, nil
}

func (n *Node) start(rc *raft.Config, sm StateMachine, logs raft.LogStore, trans raft.Transport, gate *heartbeatGate) {
	defer close(n.startedCh)
	r, err := raft.NewRaft(rc, sm, logs, n.store, n.snaps, trans)
	if err != nil {
		n.startErr = fmt.Errorf("raftnode: start raft: %w", err)
		n.log.Error("raft did not start", "err", err)
		return
	}
	n.raft = r
	gate.setRaft(r)
	n.soloElection(r)
	n.obsCh = make(chan raft.Observation, 16)
	n.observer = raft.NewObserver(n.obsCh, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.RaftState, raft.LeaderObservation:
			return true
		}
		return false
	})
	r.RegisterObserver(n.observer)
	n.wg.Add(1)
	go n.watchLeadership()
}

// Started is closed once raft has started (or failed to: see StartErr).
func (n *Node) Started() <-chan struct{} { return n.startedCh }

// StartErr is why raft did not start, if it did not.
func (n *Node) StartErr() error {
	select {
	case <-n.startedCh:
		return n.startErr
	default:
		return nil
	}
}

// up reports whether raft is running.
func (n *Node) up() bool {
	select {
	case <-n.startedCh:
		return n.raft != nil
	default:
		return false
	}
}

func (n *Node) closeStores() {
	_ = n.trans.Close()
	_ = n.store.Close()
}

// watchLeadership makes a new leader ready: it commits an entry of its own
// term (its node metadata, a real FSM command) and waits for it to be
// applied. Only then does CommitIndex reflect every committed entry and
// the FSM hold all of them, which the read paths rely on.
func (n *Node) watchLeadership() {
	defer n.wg.Done()
	check := time.NewTicker(250 * time.Millisecond)
	defer check.Stop()
	for {
		select {
		case <-n.closed:
			return
		case <-n.obsCh:
		case <-check.C:
		}
		n.checkRemoved()
		if n.raft.State() != raft.Leader {
			n.readyTerm.Store(0)
			n.lease.revoke()
			continue
		}
		n.restoreTimeouts()
		term := n.raft.CurrentTerm()
		if n.readyTerm.Load() == term {
			continue
		}
		data := command.MustEncode(&command.Command{Type: command.TypeSetNodeMeta,
			SetNodeMeta: &command.SetNodeMeta{NodeID: n.cfg.NodeID, GRPCAddr: n.cfg.GRPCAddr}})
		f := n.raft.Apply(data, n.cfg.ApplyTimeout)
		if err := f.Error(); err != nil {
			n.log.Warn("leader could not commit its first entry", "term", term, "err", err)
			continue
		}
		if n.raft.CurrentTerm() == term && n.raft.State() == raft.Leader {
			n.readyTerm.Store(term)
			n.log.Info("leader ready", "term", term, "index", f.Index())
		}
	}
}

// IsLeader reports whether this node is the leader.
func (n *Node) IsLeader() bool { return n.up() && n.raft.State() == raft.Leader }

// Ready reports whether this node is a leader that may serve linearizable reads.
func (n *Node) Ready() bool {
	if !n.up() {
		return false
	}
	t := n.readyTerm.Load()
	return t != 0 && t == n.raft.CurrentTerm() && n.raft.State() == raft.Leader
}

// Leader returns the current leader's id and raft address ("" if unknown).
func (n *Node) Leader() (id, addr string) {
	if !n.up() {
		return "", ""
	}
	a, i := n.raft.LeaderWithID()
	return string(i), string(a)
}

func (n *Node) notLeader() error {
	id, addr := n.Leader()
	if id == "" {
		return ErrNoLeader
	}
	return &NotLeaderError{LeaderID: id, LeaderAddr: addr}
}

// Apply submits an encoded command and waits until it is committed and
// applied here. The result is the FSM's *command.Result.
func (n *Node) Apply(ctx context.Context, data []byte) (*command.Result, error) {
	select {
	case <-n.closed:
		return nil, ErrClosed
	default:
	}
	if !n.IsLeader() {
		return nil, n.notLeader()
	}
	timeout := n.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	f := n.raft.Apply(data, timeout)
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if err != nil {
			return nil, n.translate(err)
		}
	case <-ctx.Done():
		// Submitted, fate unknown: the client must not treat it as failed.
		return nil, fmt.Errorf("%w: %v", ErrUnknownOutcome, ctx.Err())
	}
	res, ok := f.Response().(*command.Result)
	if !ok {
		return nil, fmt.Errorf("raftnode: unexpected FSM response %T", f.Response())
	}
	return res, nil
}

func (n *Node) translate(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		return n.notLeader()
	case errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrEnqueueTimeout):
		// Rejected before it entered the log: safe to retry.
		return fmt.Errorf("%w: %v", ErrNotSubmitted, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrClosed
	}
	// ErrLeadershipLost, ErrAbortedByRestore and anything else: the entry
	// may or may not be committed.
	return fmt.Errorf("%w: %v", ErrUnknownOutcome, err)
}

// WaitApplied blocks until the FSM has applied index.
func (n *Node) WaitApplied(ctx context.Context, index uint64) error {
	for {
		ch := n.fsm.Notify()
		if n.fsm.AppliedIndex() >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-n.closed:
			return ErrClosed
		}
	}
}

// ReadIndex returns an index such that, once the FSM has applied it, a
// read sees every write acknowledged before ReadIndex was called. It
// writes nothing to the log: it notes the commit index and confirms
// leadership with a heartbeat round shared by all concurrent callers.
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	if !n.Ready() {
		if n.IsLeader() {
			return 0, ErrNotReady
		}
		return 0, n.notLeader()
	}
	ch := make(chan readIndexResult, 1)
	n.readMu.Lock()
	n.readWait = append(n.readWait, ch)
	if !n.reading {
		n.reading = true
		go n.readIndexLoop()
	}
	n.readMu.Unlock()
	select {
	case r := <-ch:
		return r.index, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (n *Node) readIndexLoop() {
	for {
		n.readMu.Lock()
		batch := n.readWait
		n.readWait = nil
		if len(batch) == 0 {
			n.reading = false
			n.readMu.Unlock()
			return
		}
		n.readMu.Unlock()
		// Every read in batch arrived before this point, so the commit
		// index noted now covers every write acknowledged before them.
		term := n.readyTerm.Load()
		start := time.Now()
		leaseGen, leaseStart := n.lease.begin()
		ci := n.raft.CommitIndex()
		err := n.verifyFresh(start)
		if err == nil && (term == 0 || n.raft.CurrentTerm() != term) {
			err = ErrNotReady
		}
		if err != nil {
			if !errors.Is(err, ErrNotReady) {
				err = n.translate(err)
			}
		} else {
			n.lease.extend(leaseGen, leaseStart, n.leaseDuration())
		}
		for _, ch := range batch {
			ch <- readIndexResult{index: ci, err: err}
		}
	}
}

// verifyFresh confirms leadership as of start. raft's VerifyLeader counts
// the responses of heartbeats and replication RPCs that were already in
// flight when it began: after a process pause (SIGSTOP, a long GC or VM
// stall) those responses can be seconds old, from followers that have
// since elected another leader, and a deposed leader then "verified" its
// leadership and served a stale linearizable read (jepsen bank, seed 11: a
// read sent to the paused old leader was answered when it resumed, missing
// writes the new leader had acknowledged meanwhile). So leadership counts
// as confirmed only once a quorum has accepted an AppendEntries *sent* at
// or after start (heartbeatGate.ackedSince): a follower that accepted it
// then recognised this node's term, so no newer leader had a quorum at
// start. VerifyLeader is still called first: it sends heartbeats to every
// follower at once and fails fast on a deposed leader; its fresh acks
// usually arrive with it or just after (waited for up to a heartbeat
// timeout, then another round).
func (n *Node) verifyFresh(start time.Time) error {
	for round := 0; round < 3; round++ {
		if err := n.raft.VerifyLeader().Error(); err != nil {
			return err
		}
		voters, self := n.votersExceptSelf()
		quorum := (len(voters)+self)/2 + 1
		deadline := time.NewTimer(n.cfg.HeartbeatTimeout)
	wait:
		for {
			ch := n.gate.ackNotify()
			if n.gate.ackedSince(start, voters)+self >= quorum {
				deadline.Stop()
				return nil
			}
			select {
			case <-ch:
			case <-deadline.C:
				break wait
			case <-n.closed:
				deadline.Stop()
				return ErrClosed
			}
		}
	}
	return ErrNotReady
}

// votersExceptSelf returns the other voters of the latest configuration and
// 1 if this node is a voter itself.
func (n *Node) votersExceptSelf() ([]raft.ServerID, int) {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return nil, 0
	}
	var out []raft.ServerID
	self := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		if s.ID == raft.ServerID(n.cfg.NodeID) {
			self = 1
			continue
		}
		out = append(out, s.ID)
	}
	return out, self
}

// leaseDuration is how long after the start of a successful leadership
// check this node may assume no other leader exists: followers do not
// start an election before HeartbeatTimeout has passed without hearing
// from the leader. Half of it leaves a margin for clock drift and scheduling.
func (n *Node) leaseDuration() time.Duration { return n.cfg.HeartbeatTimeout / 2 }

// LeaseIndex is ReadIndex without a heartbeat round while the leader's
// lease holds. It trusts bounded clock drift, like etcd's lease reads.
func (n *Node) LeaseIndex(ctx context.Context) (uint64, error) {
	if n.Ready() && n.lease.valid() {
		return n.raft.CommitIndex(), nil
	}
	return n.ReadIndex(ctx)
}

// AppliedIndex is the FSM's applied index on this node.
func (n *Node) AppliedIndex() uint64 { return n.fsm.AppliedIndex() }

// Snapshot takes a raft snapshot now and returns its id.
func (n *Node) Snapshot() (string, error) {
	if !n.up() {
		return "", ErrNoLeader
	}
	f := n.raft.Snapshot()
	if err := f.Error(); err != nil {
		return "", err
	}
	// The id is the store's newest: f.Open would name it too, but opens
	// the snapshot to do so (cairn's store decodes and re-encodes the
	// manifest for a follower: about a millisecond of CPU at 1 GiB). A
	// newer one can only be a snapshot taken or installed since, which
	// holds all this one does.
	metas, err := n.snaps.List()
	if err != nil {
		return "", err
	}
	if len(metas) == 0 {
		return "", errors.New("raftnode: snapshot taken but not listed by the store")
	}
	return metas[0].ID, nil
}

// Raft exposes the underlying raft for tooling (metrics, tests). It waits
// until raft has started; nil if it failed to.
func (n *Node) Raft() *raft.Raft {
	<-n.startedCh
	return n.raft
}

// Shutdown stops raft and closes the log store. It is safe to call twice,
// also concurrently: a second call waits for the first and returns nil.
func (n *Node) Shutdown() error {
	first := false
	n.shutdownOnce.Do(func() { first = true; n.shutdownErr = n.shutdown() })
	if !first {
		return nil
	}
	return n.shutdownErr
}

func (n *Node) shutdown() error {
	close(n.closed)
	<-n.startedCh
	var err error
	if n.raft != nil {
		n.raft.DeregisterObserver(n.observer)
		f := n.raft.Shutdown()
		// Close the transport as soon as raft is told to stop, not after
		// it stopped. Requests from peers (votes, pre-votes, and every
		// heartbeat but a follower's same-term ones go through raft's main
		// loop, see gatedHeartbeats) otherwise wait in the transport for a
		// main loop that has exited, while raft's Shutdown waits for its
		// own outgoing RPCs — to peers that may be shutting down the same
		// way. Two nodes stopping together then each waited for the other
		// until the RPC timeout (10 s; seen at the end of jepsen runs). A
		// closed transport answers those requests with an error at once.
		err = n.trans.Close()
		if serr := f.Error(); serr != nil {
			err = serr
		}
	} else {
		err = n.trans.Close()
	}
	n.wg.Wait()
	if cerr := n.store.Close(); err == nil {
		err = cerr
	}
	return err
}
