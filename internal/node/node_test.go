package node_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/cairn-db/cairn/internal/node"
	"github.com/cairn-db/cairn/internal/testcluster"
	"github.com/cairn-db/cairn/raftnode"
)

func TestSingleNodeHTTPAndHealth(t *testing.T) {
	sl, err := raftnode.NewTCPStreamLayer("127.0.0.1:0", "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := node.DefaultConfig()
	cfg.NodeID, cfg.DataDir, cfg.GRPCAddr, cfg.HTTPAddr, cfg.RaftStream = "n1", t.TempDir(), "127.0.0.1:0", "127.0.0.1:0", sl
	cfg.Bootstrap = []raftnode.Peer{{ID: "n1", Addr: sl.Addr().String()}}
	testcluster.FastRaft(&cfg)
	n, err := node.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + n.HTTPAddr() + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	testcluster.WaitFor(t, "/readyz", 10*time.Second, func() bool { c, _ := get("/readyz"); return c == 200 })
	if c, _ := get("/healthz"); c != 200 {
		t.Fatalf("healthz %d", c)
	}
	c, body := get("/metrics")
	for _, want := range []string{"cairn_raft_is_leader{node=\"n1\"} 1", "cairn_fsm_applied_index", "cairn_pebble_disk_bytes", "go_goroutines", "cairn_raft_"} {
		if c != 200 || !strings.Contains(body, want) {
			t.Fatalf("metrics missing %q (code %d)", want, c)
		}
	}
	if c, _ := get("/debug/pprof/"); c != 200 {
		t.Fatalf("pprof %d", c)
	}
	cc, err := grpc.NewClient(n.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	testcluster.WaitFor(t, "grpc health SERVING", 10*time.Second, func() bool {
		r, err := healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{})
		return err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING
	})
}
