package node

import (
	"sync"
	"time"

	armonmetrics "github.com/armon/go-metrics"
	armonprom "github.com/armon/go-metrics/prometheus"
	hcmetrics "github.com/hashicorp/go-metrics"
	hcprom "github.com/hashicorp/go-metrics/prometheus"
	"github.com/prometheus/client_golang/prometheus"
)

// hashicorp/raft 1.8 reports to hashicorp/go-metrics and raft-boltdb to
// armon/go-metrics; both only have process-global sinks. One Prometheus
// sink per library is created once per process and registered as a
// collector in each node's own registry (tests run several nodes in one
// process; their raft metrics are then shared, which is harmless).
var (
	raftSinksOnce sync.Once
	raftSinks     []prometheus.Collector
)

func raftMetricCollectors() []prometheus.Collector {
	raftSinksOnce.Do(func() {
		scratch := prometheus.NewRegistry() // the sinks insist on registering somewhere
		if s, err := hcprom.NewPrometheusSinkFrom(hcprom.PrometheusOpts{Expiration: time.Minute, Registerer: scratch, Name: "cairn_raft"}); err == nil {
			c := hcmetrics.DefaultConfig("cairn")
			c.EnableHostname, c.EnableRuntimeMetrics, c.EnableHostnameLabel = false, false, false
			if _, err := hcmetrics.NewGlobal(c, s); err == nil {
				raftSinks = append(raftSinks, s)
			}
		}
		if s, err := armonprom.NewPrometheusSinkFrom(armonprom.PrometheusOpts{Expiration: time.Minute, Registerer: prometheus.NewRegistry()}); err == nil {
			c := armonmetrics.DefaultConfig("cairn")
			c.EnableHostname, c.EnableRuntimeMetrics, c.EnableHostnameLabel = false, false, false
			if _, err := armonmetrics.NewGlobal(c, s); err == nil {
				raftSinks = append(raftSinks, s)
			}
		}
	})
	return raftSinks
}
