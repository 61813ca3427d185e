package node

import (
	"context"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// collector exports raft and state-machine gauges at scrape time.
type collector struct {
	n                                           *Node
	term, commit, applied, last, leader, ready  *prometheus.Desc
	diskBytes, memtableBytes, sstables, readAmp *prometheus.Desc
}

func newCollector(n *Node) *collector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("cairn_"+name, help, nil, prometheus.Labels{"node": n.cfg.NodeID})
	}
	return &collector{n: n,
		term:          d("raft_term", "Current raft term."),
		commit:        d("raft_commit_index", "Raft commit index known to this node."),
		applied:       d("fsm_applied_index", "Index of the last entry applied to the state machine."),
		last:          d("raft_last_index", "Last index in the raft log."),
		leader:        d("raft_is_leader", "1 if this node is the leader."),
		ready:         d("ready", "1 if the node is caught up and serving."),
		diskBytes:     d("pebble_disk_bytes", "Bytes used by the Pebble state machine on disk."),
		memtableBytes: d("pebble_memtable_bytes", "Bytes in Pebble memtables."),
		sstables:      d("pebble_sstables", "Number of live SSTables."),
		readAmp:       d("pebble_read_amplification", "Pebble read amplification."),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.term, c.commit, c.applied, c.last, c.leader, c.ready, c.diskBytes, c.memtableBytes, c.sstables, c.readAmp} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.n.Raft.Status()
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	g(c.term, float64(st.Term))
	g(c.commit, float64(st.CommitIndex))
	g(c.applied, float64(st.AppliedIndex))
	g(c.last, float64(st.LastIndex))
	g(c.leader, b2f(st.Role == "leader"))
	ok, _ := c.n.Ready()
	g(c.ready, b2f(ok))
	_ = c.n.FSM.DB(func(db *pebble.DB) error {
		m := db.Metrics()
		g(c.diskBytes, float64(m.DiskSpaceUsage()))
		g(c.memtableBytes, float64(m.MemTable.Size))
		var n int64
		for _, l := range m.Levels {
			n += l.TablesCount
		}
		g(c.sstables, float64(n))
		g(c.readAmp, float64(m.ReadAmp()))
		return nil
	})
}

type grpcMetrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newGRPCMetrics(r prometheus.Registerer) *grpcMetrics {
	m := &grpcMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cairn_grpc_requests_total", Help: "gRPC requests by method and code."}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "cairn_grpc_request_seconds", Help: "gRPC request latency.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18)}, []string{"method"}),
	}
	r.MustRegister(m.requests, m.latency)
	return m
}

func (m *grpcMetrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := h(ctx, req)
	m.latency.WithLabelValues(info.FullMethod).Observe(time.Since(start).Seconds())
	m.requests.WithLabelValues(info.FullMethod, status.Code(err).String()).Inc()
	return resp, err
}
