package node_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/internal/node"
	"github.com/cairn-db/cairn/internal/testcerts"
	"github.com/cairn-db/cairn/internal/testcluster"
	"github.com/cairn-db/cairn/internal/tlsconf"
)

// A cluster with TLS and client certificates required: clients with a
// certificate from the cluster's CA write through a follower (forwarded to
// the leader over TLS) and read from every node; a plaintext client, a
// client without a certificate and one with another CA's certificate are
// refused and write nothing; a follower that missed the log catches up by
// fetching checkpoint files from the leader over TLS.
func TestTLSCluster(t *testing.T) {
	ca, other := testcerts.MustCA(t, "cluster"), testcerts.MustCA(t, "other")
	c := testcluster.Start(t, 3, func(cfg *node.Config) {
		p := ca.MustIssue(t, cfg.NodeID)
		cfg.TLS = tlsconf.Node{CAFile: ca.CAFile, CertFile: p.CertFile, KeyFile: p.KeyFile, ClientAuth: true}
		cfg.Raft.SnapshotThreshold, cfg.Raft.TrailingLogs, cfg.Raft.SnapshotInterval = 1<<40, 16, time.Hour
	})
	clientCert := ca.MustIssue(t, "client")
	var err error
	if c.ClientTLS, err = api.TLSFromFiles(ca.CAFile, clientCert.CertFile, clientCert.KeyFile); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	client := func(tlsCfg *tls.Config, budget time.Duration, endpoints ...string) *api.Client {
		cfg := api.DefaultClientConfig(endpoints...)
		cfg.TLS, cfg.RetryBudget, cfg.AttemptTimeout = tlsCfg, budget, min(budget, cfg.AttemptTimeout)
		cl, err := api.NewClient(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		return cl
	}
	l := c.Leader()
	fs := c.Followers(l)
	if _, err := client(c.ClientTLS, 30*time.Second, fs[0].Node.GRPCAddr()).Put(ctx, []byte("k"), []byte("v")); err != nil {
		t.Fatalf("put through follower %s: %v", fs[0].ID, err)
	}
	for _, m := range c.Members {
		v, _, err := client(c.ClientTLS, 30*time.Second, m.Node.GRPCAddr()).Get(ctx, []byte("k"))
		if err != nil || string(v.Bytes) != "v" {
			t.Fatalf("linearizable get from %s: %q, %v", m.ID, v.Bytes, err)
		}
	}

	// Raft's port speaks TLS, to a member's certificate.
	member, err := tlsconf.Node{CAFile: ca.CAFile, CertFile: clientCert.CertFile, KeyFile: clientCert.KeyFile}.Load()
	if err != nil {
		t.Fatal(err)
	}
	rc := member.PeerClient.Clone()
	rc.ServerName = "127.0.0.1"
	if conn, err := tls.Dial("tcp", l.RaftAddr, rc); err != nil {
		t.Fatalf("TLS handshake with %s's raft port: %v", l.ID, err)
	} else {
		conn.Close()
	}

	noCert, err := tlsconf.Client(ca.CAFile, "", "")
	if err != nil {
		t.Fatal(err)
	}
	strangerCert := other.MustIssue(t, "stranger")
	stranger, err := tlsconf.Client(ca.CAFile, strangerCert.CertFile, strangerCert.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]*tls.Config{"plaintext": nil, "no client certificate": noCert, "another CA's certificate": stranger} {
		key := []byte("refused/" + name)
		if _, err := client(cfg, time.Second, l.Node.GRPCAddr()).Put(ctx, key, []byte("x")); err == nil {
			t.Fatalf("%s client: put accepted", name)
		}
		if _, _, err := l.Node.FSM.Get(key); err == nil {
			t.Fatalf("%s client: its put was applied", name)
		}
	}

	// Catch-up through a checkpoint: the follower's files come from the
	// leader's gRPC port, over TLS.
	f := fs[1]
	c.StopMember(f)
	cl := c.Client()
	for i := range 40 {
		if _, err := cl.Put(ctx, fmt.Appendf(nil, "more/%02d", i), []byte("x")); err != nil && !errors.Is(err, api.ErrUnknownOutcome) {
			t.Fatal(err)
		}
	}
	if _, err := l.Node.Raft.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Put(ctx, []byte("last"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	c.StartMember(f)
	c.WaitConverged()
	if _, _, err := f.Node.FSM.Get([]byte("last")); err != nil {
		t.Fatalf("the restarted follower lacks the last write: %v", err)
	}
	var fetched float64
	mf, _ := f.Node.Registry().Gather()
	for _, m := range mf {
		if m.GetName() == "cairn_checkpoint_install_bytes_fetched_total" {
			fetched = m.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if fetched == 0 {
		t.Fatal("the follower caught up without fetching checkpoint files: the test did not exercise the fetch")
	}
}

// With HTTPTLS the HTTP endpoints take TLS and, with ClientAuth, a client
// certificate: a plaintext request gets no metrics, nor does a TLS client
// without a certificate; one with a certificate does. HTTPTLS without a
// certificate is refused at start.
func TestHTTPOverTLS(t *testing.T) {
	ca := testcerts.MustCA(t, "cluster")
	nodeCert, clientCert := ca.MustIssue(t, "n1"), ca.MustIssue(t, "client")
	cfg := node.DefaultConfig()
	cfg.NodeID, cfg.DataDir = "n1", t.TempDir()
	cfg.GRPCAddr, cfg.RaftAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.HTTPTLS = true
	if n, err := node.Start(cfg); err == nil {
		n.Stop()
		t.Fatal("started with HTTP over TLS and no certificate")
	}
	cfg.TLS = tlsconf.Node{CAFile: ca.CAFile, CertFile: nodeCert.CertFile, KeyFile: nodeCert.KeyFile, ClientAuth: true}
	n, err := node.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	get := func(url string, tlsCfg *tls.Config) (int, error) {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
		resp, err := c.Get(url)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	if code, err := get("http://"+n.HTTPAddr()+"/metrics", nil); err == nil && code == http.StatusOK {
		t.Fatal("plaintext HTTP served the metrics")
	}
	noCert, err := api.TLSFromFiles(ca.CAFile, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if code, err := get("https://"+n.HTTPAddr()+"/metrics", noCert); err == nil && code == http.StatusOK {
		t.Fatal("a client without a certificate got the metrics")
	}
	withCert, err := api.TLSFromFiles(ca.CAFile, clientCert.CertFile, clientCert.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if code, err := get("https://"+n.HTTPAddr()+"/metrics", withCert); err != nil || code != http.StatusOK {
		t.Fatalf("metrics over TLS with a client certificate: %d, %v", code, err)
	}
}
