package node

import (
	"encoding/json"
	"sort"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairn-db/cairn/fsm"
	"github.com/cairn-db/cairn/snapshot"
)

// snapshotSources lists every member that announced a gRPC address: the
// node that created a checkpoint may be gone when a follower installs it.
func (n *Node) snapshotSources(*snapshot.Manifest) []snapshot.Source {
	if n.FSM == nil {
		return nil
	}
	addrs, err := n.FSM.NodeAddrs()
	if err != nil {
		return nil
	}
	out := make([]snapshot.Source, 0, len(addrs))
	for id, a := range addrs {
		if id != n.cfg.NodeID {
			out = append(out, snapshot.Source{NodeID: id, Addr: a})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeID < out[j].NodeID })
	return out
}

// checkpointExtra records the committed producer offsets and sequence
// numbers at the checkpoint's index in its manifest (the catalog shows them).
func checkpointExtra(db *pebble.DB, _, _ uint64) (map[string]json.RawMessage, error) {
	ps, err := fsm.ProducersIn(db)
	if err != nil {
		return nil, err
	}
	type offset struct {
		Source string `json:"source"`
		Offset int64  `json:"offset"`
	}
	type producer struct {
		Name    string   `json:"name"`
		Epoch   uint64   `json:"epoch"`
		LastSeq uint64   `json:"last_seq"`
		Offsets []offset `json:"offsets"`
	}
	out := make([]producer, 0, len(ps))
	for _, p := range ps {
		q := producer{Name: p.Name, Epoch: p.Epoch, LastSeq: p.LastSeq, Offsets: []offset{}}
		for _, o := range p.Offsets {
			q.Offsets = append(q.Offsets, offset{o.Source, o.Offset})
		}
		out = append(out, q)
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	return map[string]json.RawMessage{"producers": b}, nil
}

// snapMetrics bridges snapshot events to Prometheus.
type snapMetrics struct {
	ckptSeconds, installSeconds        prometheus.Histogram
	ckptBytes, ckptNewBytes            prometheus.Gauge
	ckptShared                         prometheus.Gauge
	lastCkpt                           prometheus.Gauge
	lastCkptIndex                      prometheus.Gauge
	filesFetched, filesReused          prometheus.Counter
	bytesFetched, bytesReused, shipped prometheus.Counter
	installs, checkpoints, failures    *prometheus.CounterVec
}

func newSnapMetrics(r prometheus.Registerer) *snapMetrics {
	h := func(name, help string) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: prometheus.ExponentialBuckets(0.001, 2, 18)})
	}
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	}
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	m := &snapMetrics{
		ckptSeconds:    h("cairn_checkpoint_duration_seconds", "Time to create a checkpoint (Snapshot to manifest written)."),
		installSeconds: h("cairn_checkpoint_install_duration_seconds", "Time to install a checkpoint received from a peer."),
		ckptBytes:      g("cairn_checkpoint_bytes", "State bytes of the last checkpoint."),
		ckptNewBytes:   g("cairn_checkpoint_new_bytes", "Bytes of the last checkpoint not in the previous one."),
		ckptShared:     g("cairn_checkpoint_shared_bytes", "Bytes of the last checkpoint shared with the previous one."),
		lastCkpt:       g("cairn_checkpoint_last_timestamp_seconds", "Unix time of the last checkpoint (time since = now - this)."),
		lastCkptIndex:  g("cairn_checkpoint_last_index", "Raft index of the last checkpoint (entries since = applied - this)."),
		filesFetched:   c("cairn_checkpoint_install_files_fetched_total", "Files fetched from peers during installs."),
		filesReused:    c("cairn_checkpoint_install_files_reused_total", "Files already held locally during installs."),
		bytesFetched:   c("cairn_checkpoint_install_bytes_fetched_total", "Bytes fetched from peers during installs."),
		bytesReused:    c("cairn_checkpoint_install_bytes_reused_total", "Bytes already held locally during installs."),
		shipped:        c("cairn_checkpoint_bytes_shipped_total", "Bytes served to peers fetching checkpoint files."),
		installs:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cairn_checkpoint_installs_total", Help: "Checkpoint installs by result."}, []string{"result"}),
		checkpoints:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cairn_checkpoints_total", Help: "Checkpoints created by result."}, []string{"result"}),
		failures:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cairn_checkpoint_serve_errors_total", Help: "File fetches served with an error."}, []string{"op"}),
	}
	r.MustRegister(m.ckptSeconds, m.installSeconds, m.ckptBytes, m.ckptNewBytes, m.ckptShared, m.lastCkpt, m.lastCkptIndex,
		m.filesFetched, m.filesReused, m.bytesFetched, m.bytesReused, m.shipped, m.installs, m.checkpoints, m.failures)
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
	m.ckptBytes.Set(float64(s.Bytes))
	m.ckptNewBytes.Set(float64(s.NewBytes))
	m.ckptShared.Set(float64(s.SharedBytes))
	m.lastCkpt.Set(float64(time.Now().Unix()))
	m.lastCkptIndex.Set(float64(s.Index))
}

func (m *snapMetrics) InstallDone(s snapshot.InstallStats) {
	m.installs.WithLabelValues(result(s.Err)).Inc()
	m.installSeconds.Observe(s.Duration.Seconds())
	m.filesFetched.Add(float64(s.FilesFetched))
	m.filesReused.Add(float64(s.FilesReused))
	m.bytesFetched.Add(float64(s.BytesFetched))
	m.bytesReused.Add(float64(s.BytesReused))
}

func (m *snapMetrics) FileServed(s snapshot.ServeStats) {
	m.shipped.Add(float64(s.Bytes))
	if s.Err != nil {
		m.failures.WithLabelValues("fetch").Inc()
	}
}

func (m *snapMetrics) GCDone(snapshot.GCStats)         {}
func (m *snapMetrics) ExportDone(snapshot.ExportStats) {}
