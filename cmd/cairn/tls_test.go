package main

import (
	"strings"
	"testing"
	"time"

	"github.com/cairn-db/cairn/internal/testcerts"
)

// Three `cairn serve` processes with TLS and client certificates required,
// and the CLI against them: with the CA and a client certificate from the
// environment or from flags it writes, reads and shows the cluster (status
// reaches every member over TLS); without them it fails with a message
// that says what is missing.
func TestCLITLS(t *testing.T) {
	ca := testcerts.MustCA(t, "cluster")
	nodeCert, clientCert := ca.MustIssue(t, "node"), ca.MustIssue(t, "client")
	c := startProcCluster(t, 3, "--tls-ca", ca.CAFile, "--tls-cert", nodeCert.CertFile, "--tls-key", nodeCert.KeyFile, "--tls-client-auth")
	eps := "--endpoints=" + strings.Join(c.endpoints(), ",")
	env := []string{"CAIRN_CACERT=" + ca.CAFile, "CAIRN_CERT=" + clientCert.CertFile, "CAIRN_KEY=" + clientCert.KeyFile}
	ok := func(env []string, args ...string) string {
		t.Helper()
		out, errOut, code := runCLI(t, env, append([]string{eps}, args...)...)
		if code != 0 {
			t.Fatalf("cairn %s: exit %d, stderr %q", strings.Join(args, " "), code, errOut)
		}
		return out
	}
	ok(env, "put", "k", "over tls")
	if got := ok(env, "get", "k"); got != "over tls\n" {
		t.Fatalf("get = %q", got)
	}
	flags := []string{"--cacert", ca.CAFile, "--cert", clientCert.CertFile, "--key", clientCert.KeyFile}
	if got := ok(nil, append(flags, "get", "k")...); got != "over tls\n" {
		t.Fatalf("get with flags = %q", got)
	}
	// Every member reachable once each announced its client address.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		status := ok(env, "cluster", "status")
		if strings.Count(status, "follower") == 2 && strings.Count(status, "leader") == 1 && !strings.Contains(status, "unreachable") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster status over TLS:\n%s", status)
		}
	}

	for _, tc := range []struct {
		name string
		env  []string
		want string
	}{
		{"plaintext", nil, "TLS"},
		{"no client certificate", []string{"CAIRN_CACERT=" + ca.CAFile}, "certificate"},
	} {
		_, errOut, code := runCLI(t, tc.env, eps, "--timeout", "2s", "get", "k")
		t.Logf("%s: %s", tc.name, strings.TrimSpace(errOut))
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want a failure that mentions %q", tc.name, code, errOut, tc.want)
		}
	}
}
