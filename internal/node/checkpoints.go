package node

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/api/cairnpb"
	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/raftnode"
	"github.com/cairn-db/cairn/snapshot"
)

// snapshotSources lists the nodes an install may fetch a checkpoint's
// files from, after the manifest's creator: every member this node knows
// the client address of, then every member the checkpoint itself recorded
// (membersExtra). The second list is what a node with an empty state has:
// one wiped and re-added under the same id, installing a checkpoint it
// created in its previous life, knows no address at all, and the creator —
// itself — is skipped (jepsen window, membership+snapshot: the leader sent
// that checkpoint again and again and the node never caught up).
func (n *Node) snapshotSources(m *snapshot.Manifest) []snapshot.Source {
	var out []snapshot.Source
	seen := map[string]bool{}
	add := func(id, addr string) {
		if id == n.cfg.NodeID || addr == "" || seen[addr] {
			return
		}
		seen[addr] = true
		out = append(out, snapshot.Source{NodeID: id, Addr: addr})
	}
	if n.FSM != nil {
		if addrs, err := n.FSM.NodeAddrs(); err == nil {
			for _, id := range slices.Sorted(maps.Keys(addrs)) {
				add(id, addrs[id])
			}
		}
	}
	var recorded []checkpointMember
	if m != nil {
		if raw, ok := m.Extra[membersExtra]; ok {
			_ = json.Unmarshal(raw, &recorded)
		}
	}
	if len(out) == 0 {
		// An empty state: ask the recorded members for the current
		// addresses first (they may have moved since the checkpoint).
		for _, mb := range n.discoverMembers(recorded) {
			add(mb.ID, mb.Addr)
		}
	}
	for _, mb := range recorded {
		add(mb.ID, mb.Addr)
	}
	return out
}

// discoverMembers asks the first of members that answers for every
// member's current client address (cluster status, through that node).
func (n *Node) discoverMembers(members []checkpointMember) []checkpointMember {
	if n.fetcher == nil {
		return nil
	}
	for _, mb := range members {
		if mb.ID == n.cfg.NodeID || mb.Addr == "" {
			continue
		}
		conn, err := n.fetcher.Conn(mb.Addr)
		if err != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := cairnpb.NewClusterClient(conn).Status(ctx, &cairnpb.StatusRequest{})
		cancel()
		if err != nil {
			n.log.Debug("snapshot sources: no member list from a recorded member", "node", mb.ID, "addr", mb.Addr, "err", err)
			continue
		}
		var out []checkpointMember
		for _, ns := range st.GetNodes() {
			out = append(out, checkpointMember{ID: ns.GetId(), Addr: ns.GetGrpcAddress()})
		}
		return out
	}
	return nil
}

// membersExtra is the manifest's Extra key of the members' client
// addresses at the checkpoint's index, as the state recorded them.
const membersExtra = "members"

type checkpointMember struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
}

// checkpointExtra records in a checkpoint's manifest the committed producer
// offsets and sequence numbers at its index (the catalog shows them) and the
// members' client addresses (snapshotSources).
func checkpointExtra(db *pebble.DB, _, _ uint64) (map[string]json.RawMessage, error) {
	ps, err := fsm.ProducersIn(db)
	if err != nil {
		return nil, err
	}
	out := make([]api.CheckpointProducer, 0, len(ps))
	for _, p := range ps {
		q := api.CheckpointProducer{Name: p.Name, Epoch: p.Epoch, LastSeq: p.LastSeq, Offsets: []api.SourceOffset{}}
		for _, o := range p.Offsets {
			q.Offsets = append(q.Offsets, api.SourceOffset{Source: o.Source, Offset: o.Offset})
		}
		out = append(out, q)
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	addrs, err := fsm.NodeAddrsIn(db)
	if err != nil {
		return nil, err
	}
	members := make([]checkpointMember, 0, len(addrs))
	for _, id := range slices.Sorted(maps.Keys(addrs)) {
		members = append(members, checkpointMember{ID: id, Addr: addrs[id]})
	}
	mb, err := json.Marshal(members)
	if err != nil {
		return nil, err
	}
	return map[string]json.RawMessage{api.ProducersExtra: b, membersExtra: mb}, nil
}

// checkpointCatalog is what the API's Checkpoint service uses: the store's
// catalog, raft's on-demand snapshot and the cadence's recovery estimate.
type checkpointCatalog struct {
	*snapshot.Store
	raft    *raftnode.Node
	cadence *cadence
}

var _ api.Checkpoints = checkpointCatalog{}

// Snapshot takes a raft snapshot, unless nothing was applied since the
// newest one (raft would take another at the same index).
func (c checkpointCatalog) Snapshot() (string, error) {
	if metas, err := c.Store.List(); err == nil && len(metas) > 0 && metas[0].Index >= c.raft.AppliedIndex() {
		return "", raft.ErrNothingNewToSnapshot
	}
	return c.raft.Snapshot()
}
func (c checkpointCatalog) Recovery() api.Recovery { return c.cadence.Recovery() }

// snapMetrics bridges snapshot events to Prometheus.
type snapMetrics struct {
	ckptSeconds, installSeconds           prometheus.Histogram
	pauseSeconds                          prometheus.Histogram
	ckptBytes, ckptNewBytes               prometheus.Gauge
	ckptShared                            prometheus.Gauge
	lastCkpt                              prometheus.Gauge
	lastCkptIndex                         prometheus.Gauge
	filesFetched, filesReused             prometheus.Counter
	bytesFetched, bytesReused, shipped    prometheus.Counter
	deltaInstalls, bytesSent, keysFetched prometheus.Counter
	installs, checkpoints, failures       *prometheus.CounterVec
	cadence                               *cadence // told of every checkpoint taken or installed
}

func newSnapMetrics(r prometheus.Registerer, cad *cadence) *snapMetrics {
	h := func(name, help string) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: prometheus.ExponentialBuckets(0.001, 2, 18)})
	}
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	}
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	m := &snapMetrics{cadence: cad,
		ckptSeconds:    h("cairn_checkpoint_duration_seconds", "Time to create a checkpoint (Snapshot to manifest written)."),
		installSeconds: h("cairn_checkpoint_install_duration_seconds", "Time to install a checkpoint received from a peer."),
		pauseSeconds:   h("cairn_checkpoint_pause_seconds", "Part of a checkpoint's creation during which the state machine applies nothing (the Pebble checkpoint)."),
		ckptBytes:      g("cairn_checkpoint_bytes", "State bytes of the last checkpoint."),
		ckptNewBytes:   g("cairn_checkpoint_new_bytes", "Bytes of the last checkpoint not in the previous one."),
		ckptShared:     g("cairn_checkpoint_shared_bytes", "Bytes of the last checkpoint shared with the previous one."),
		lastCkpt:       g("cairn_checkpoint_last_timestamp_seconds", "Unix time of the last checkpoint (time since = now - this)."),
		lastCkptIndex:  g("cairn_checkpoint_last_index", "Raft index of the last checkpoint (entries since = applied - this)."),
		filesFetched:   c("cairn_checkpoint_install_files_fetched_total", "Files fetched from peers during installs."),
		filesReused:    c("cairn_checkpoint_install_files_reused_total", "Files already held locally during installs."),
		bytesFetched:   c("cairn_checkpoint_install_bytes_fetched_total", "Bytes fetched from peers during installs."),
		bytesReused:    c("cairn_checkpoint_install_bytes_reused_total", "Bytes already held locally during installs."),
		shipped:        c("cairn_checkpoint_bytes_shipped_total", "Bytes served to peers fetching checkpoint files or differences."),
		deltaInstalls:  c("cairn_checkpoint_delta_installs_total", "Installs that rebuilt the state from the local state plus the keys that differ."),
		bytesSent:      c("cairn_checkpoint_install_bytes_sent_total", "Bytes of local-state digest sent to peers during delta installs."),
		keysFetched:    c("cairn_checkpoint_install_keys_fetched_total", "Keys fetched (new or changed) during delta installs."),
		installs:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cairn_checkpoint_installs_total", Help: "Checkpoint installs by result."}, []string{"result"}),
		checkpoints:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cairn_checkpoints_total", Help: "Checkpoints created by result."}, []string{"result"}),
		failures:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cairn_checkpoint_serve_errors_total", Help: "File fetches served with an error."}, []string{"op"}),
	}
	r.MustRegister(m.ckptSeconds, m.installSeconds, m.pauseSeconds, m.ckptBytes, m.ckptNewBytes, m.ckptShared, m.lastCkpt, m.lastCkptIndex,
		m.filesFetched, m.filesReused, m.bytesFetched, m.bytesReused, m.shipped, m.installs, m.checkpoints, m.failures,
		m.deltaInstalls, m.bytesSent, m.keysFetched)
	// Every series exists from the start at 0, so that an alert on a rate
	// or an increase sees it before the first event.
	for _, r := range []string{"ok", "error"} {
		m.installs.WithLabelValues(r)
		m.checkpoints.WithLabelValues(r)
	}
	m.failures.WithLabelValues("fetch")
	return m
}

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

func (m *snapMetrics) CheckpointCreated(s snapshot.CheckpointStats) {
	m.checkpoints.WithLabelValues(result(s.Err)).Inc()
	if s.Err != nil {
		return
	}
	m.ckptSeconds.Observe(s.Duration.Seconds())
	m.pauseSeconds.Observe(s.PauseTime.Seconds())
	m.ckptBytes.Set(float64(s.Bytes))
	m.ckptNewBytes.Set(float64(s.NewBytes))
	m.ckptShared.Set(float64(s.SharedBytes))
	m.lastCkpt.Set(float64(time.Now().Unix()))
	m.lastCkptIndex.Set(float64(s.Index))
	m.cadence.checkpointed(s.Index, time.Now(), s.Duration)
}

func (m *snapMetrics) InstallDone(s snapshot.InstallStats) {
	m.installs.WithLabelValues(result(s.Err)).Inc()
	m.installSeconds.Observe(s.Duration.Seconds())
	m.filesFetched.Add(float64(s.FilesFetched))
	m.filesReused.Add(float64(s.FilesReused))
	m.bytesFetched.Add(float64(s.BytesFetched))
	m.bytesReused.Add(float64(s.BytesReused))
	m.bytesSent.Add(float64(s.BytesSent))
	m.keysFetched.Add(float64(s.KeysFetched))
	if s.Delta && s.Err == nil {
		m.deltaInstalls.Inc()
	}
	if s.Err == nil {
		m.cadence.checkpointed(s.Index, time.Now(), 0)
	}
}

func (m *snapMetrics) FileServed(s snapshot.ServeStats) {
	m.shipped.Add(float64(s.Bytes))
	if s.Err != nil {
		m.failures.WithLabelValues("fetch").Inc()
	}
}

func (m *snapMetrics) GCDone(snapshot.GCStats)         {}
func (m *snapMetrics) ExportDone(snapshot.ExportStats) {}

// catchUpToSnapshot closes the window the store's pending marker does not
// cover: a crash after an installed snapshot became visible to List but
// before the state machine swapped in its DB (or any loss of the FSM's
// unsynced tail below a snapshot). With NoSnapshotRestoreOnStart raft
// trusts List()[0] as what the state machine holds and re-applies only
// entries after it, so a state machine behind it would silently miss
// entries. Restore that snapshot into the state machine before raft starts.
func (n *Node) catchUpToSnapshot() error {
	metas, err := n.Snapshots.List()
	if err != nil || len(metas) == 0 {
		return err
	}
	m := metas[0]
	applied := n.FSM.AppliedIndex()
	if applied >= m.Index {
		return nil
	}
	n.log.Warn("node: state machine is behind the newest snapshot; restoring the snapshot before raft starts",
		"applied", applied, "snapshot", m.ID, "index", m.Index)
	_, rc, err := n.Snapshots.Open(m.ID)
	if err != nil {
		return fmt.Errorf("node: open snapshot %s to catch up: %w", m.ID, err)
	}
	if err := n.FSM.Restore(rc); err != nil {
		return fmt.Errorf("node: restore snapshot %s to catch up (applied index %d): %w", m.ID, applied, err)
	}
	if got := n.FSM.AppliedIndex(); got < m.Index {
		return fmt.Errorf("node: restored snapshot %s at index %d but the state machine is at %d", m.ID, m.Index, got)
	}
	return nil
}

// startCadence connects the cadence to the state machine and raft and
// tells it of the newest checkpoint on disk.
func (n *Node) startCadence(t *timedFSM) {
	c := n.cadence
	c.applied, c.busy, c.snapshot, c.log = n.FSM.AppliedIndex, t.busyTime, n.Raft.Snapshot, n.log
	metas, err := n.Snapshots.List()
	if err != nil || len(metas) == 0 {
		c.checkpointed(0, time.Now(), 0)
		return
	}
	at := time.Now()
	if d, err := n.Snapshots.Show(metas[0].ID); err == nil && !d.Created.IsZero() {
		at = d.Created
	}
	c.checkpointed(metas[0].Index, at, 0)
}
