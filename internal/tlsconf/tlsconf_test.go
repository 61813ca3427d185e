package tlsconf_test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-db/cairn/internal/testcerts"
	"github.com/cairn-db/cairn/internal/tlsconf"
)

func TestNodeAndClientConfigs(t *testing.T) {
	dir := t.TempDir()
	ca, err := testcerts.NewCA(dir, "c")
	if err != nil {
		t.Fatal(err)
	}
	p, err := ca.Issue("n1")
	if err != nil {
		t.Fatal(err)
	}
	serverOnly, err := ca.IssueFor("server-only", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth})
	if err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		node    tlsconf.Node
		wantErr string // "" = loads
		off     bool
	}{
		{name: "off", node: tlsconf.Node{}, off: true},
		{name: "complete", node: tlsconf.Node{CAFile: ca.CAFile, CertFile: p.CertFile, KeyFile: p.KeyFile}},
		{name: "client auth", node: tlsconf.Node{CAFile: ca.CAFile, CertFile: p.CertFile, KeyFile: p.KeyFile, ClientAuth: true}},
		{name: "no CA", node: tlsconf.Node{CertFile: p.CertFile, KeyFile: p.KeyFile}, wantErr: "--tls-ca"},
		{name: "no key", node: tlsconf.Node{CAFile: ca.CAFile, CertFile: p.CertFile}, wantErr: "--tls-key"},
		{name: "client auth alone", node: tlsconf.Node{ClientAuth: true}, wantErr: "--tls-cert"},
		{name: "CA not PEM", node: tlsconf.Node{CAFile: notPEM, CertFile: p.CertFile, KeyFile: p.KeyFile}, wantErr: "no PEM certificate"},
		{name: "server-only certificate", node: tlsconf.Node{CAFile: ca.CAFile, CertFile: serverOnly.CertFile, KeyFile: serverOnly.KeyFile}, wantErr: "clientAuth"},
		{name: "key of another cert", node: tlsconf.Node{CAFile: ca.CAFile, CertFile: p.CertFile, KeyFile: ca.CAFile}, wantErr: "certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfgs, err := tc.node.Load()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.off != (cfgs == nil) {
				t.Fatalf("configs %v, off %v", cfgs, tc.off)
			}
			if cfgs == nil {
				return
			}
			if cfgs.PeerServer.ClientAuth != tls.RequireAndVerifyClientCert {
				t.Error("the raft listener does not require client certificates")
			}
			want := tls.VerifyClientCertIfGiven
			if tc.node.ClientAuth {
				want = tls.RequireAndVerifyClientCert
			}
			if cfgs.GRPCServer.ClientAuth != want {
				t.Errorf("gRPC client auth %v, want %v", cfgs.GRPCServer.ClientAuth, want)
			}
			if cert, err := cfgs.PeerClient.GetClientCertificate(nil); err != nil || cert == nil || cfgs.PeerClient.RootCAs == nil {
				t.Errorf("connections to members do not present the node's certificate or verify theirs: %v", err)
			}
		})
	}

	if c, err := tlsconf.Client("", "", ""); c != nil || err != nil {
		t.Fatalf("no files: %v, %v; want plaintext", c, err)
	}
	if _, err := tlsconf.Client("", p.CertFile, p.KeyFile); err == nil || !strings.Contains(err.Error(), "--cacert") {
		t.Fatalf("certificate without CA: %v", err)
	}
	if _, err := tlsconf.Client(ca.CAFile, p.CertFile, ""); err == nil || !strings.Contains(err.Error(), "--key") {
		t.Fatalf("certificate without key: %v", err)
	}
	c, err := tlsconf.Client(ca.CAFile, p.CertFile, p.KeyFile)
	if err != nil || len(c.Certificates) != 1 || c.RootCAs == nil {
		t.Fatalf("client with certificate: %+v, %v", c, err)
	}
}

// A renewed certificate is served from the next handshake on; a pair
// caught half-replaced (new certificate, old key) keeps the previous one.
func TestCertificateReloadedWhenItsFilesChange(t *testing.T) {
	ca := testcerts.MustCA(t, "c")
	p := ca.MustIssue(t, "n1")
	cfgs, err := tlsconf.Node{CAFile: ca.CAFile, CertFile: p.CertFile, KeyFile: p.KeyFile}.Load()
	if err != nil {
		t.Fatal(err)
	}
	serial := func() string {
		t.Helper()
		c, err := cfgs.GRPCServer.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf.SerialNumber.String()
	}
	first := serial()
	if serial() != first {
		t.Fatal("the certificate changed without its files changing")
	}
	renewed := ca.MustIssue(t, "n1-renewed")
	later := time.Now().Add(2 * time.Second)
	move := func(from, to string) {
		t.Helper()
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(to, later, later); err != nil {
			t.Fatal(err)
		}
	}
	move(renewed.CertFile, p.CertFile) // the key not yet
	if got := serial(); got != first {
		t.Fatalf("serial %s with the new certificate and the old key, want the previous %s", got, first)
	}
	move(renewed.KeyFile, p.KeyFile)
	if got := serial(); got == first {
		t.Fatal("the renewed certificate is not served after both files changed")
	}
	client, err := cfgs.PeerClient.GetClientCertificate(nil)
	if err != nil || client.Leaf.SerialNumber.String() == first {
		t.Fatalf("connections to members still present the old certificate: %v", err)
	}
}

func TestUncoveredAdvertisedAddresses(t *testing.T) {
	ca := testcerts.MustCA(t, "c")
	node, err := ca.Issue("n1", "n1.example", "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cfgs, err := tlsconf.Node{CAFile: ca.CAFile, CertFile: node.CertFile, KeyFile: node.KeyFile}.Load()
	if err != nil {
		t.Fatal(err)
	}
	got := cfgs.Uncovered("n1.example:7101", "10.0.0.1:7201", "10.0.0.2:7201", "other.example:7101", "0.0.0.0:7101", ":7101")
	if want := []string{"10.0.0.2:7201", "other.example:7101"}; !slices.Equal(got, want) {
		t.Fatalf("uncovered %v, want %v", got, want)
	}
}
