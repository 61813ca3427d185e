// Package tlsconf loads the TLS settings of a node and of its clients from
// PEM files. One certificate per node serves both directions: clients and
// members verify it when they connect, and members present it when the node
// connects to them (raft, forwarded calls, checkpoint files), so it needs
// both the serverAuth and clientAuth extended key usages and the node's
// advertised host names or IPs as subject alternative names. It is read
// again when its files change (keyPair); the CA is read at start.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// Node is a node's TLS configuration. The zero value is plaintext.
type Node struct {
	CAFile   string // CA bundle that signs every member's certificate (and clients', with ClientAuth)
	CertFile string // this node's certificate, PEM
	KeyFile  string // its private key, PEM
	// ClientAuth requires clients of the gRPC port to present a
	// certificate signed by the CA. Raft connections always require one.
	ClientAuth bool
}

// Enabled reports whether any TLS setting is given.
func (n Node) Enabled() bool {
	return n.CAFile != "" || n.CertFile != "" || n.KeyFile != "" || n.ClientAuth
}

// Validate reports an incomplete configuration.
func (n Node) Validate() error {
	if !n.Enabled() {
		return nil
	}
	if n.CAFile == "" || n.CertFile == "" || n.KeyFile == "" {
		return errors.New("tls: a node needs all of the CA, certificate and key files (--tls-ca, --tls-cert, --tls-key)")
	}
	return nil
}

// Configs are the TLS configurations a node uses.
type Configs struct {
	GRPCServer *tls.Config // the gRPC port
	PeerServer *tls.Config // the raft port: members must present a certificate
	PeerClient *tls.Config // connections to members: raft, forwarding, checkpoint files
	// Leaf is the node's certificate as loaded at start.
	Leaf *x509.Certificate
}

// Uncovered returns those of addrs (host:port) whose host the node's
// certificate does not name: members and clients that dial them verify the
// name, and fail. Unspecified hosts ("", 0.0.0.0, ::) are skipped: they are
// bind addresses, not names anyone dials.
func (c *Configs) Uncovered(addrs ...string) []string {
	var out []string
	for _, a := range addrs {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			host = a
		}
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			continue
		}
		if c.Leaf.VerifyHostname(host) != nil {
			out = append(out, a)
		}
	}
	return out
}

// Load reads the files; it returns nil, nil when TLS is off.
func (n Node) Load() (*Configs, error) {
	if !n.Enabled() {
		return nil, nil
	}
	if err := n.Validate(); err != nil {
		return nil, err
	}
	pool, err := loadCA(n.CAFile)
	if err != nil {
		return nil, err
	}
	kp := &keyPair{certFile: n.CertFile, keyFile: n.KeyFile}
	cert, err := kp.get()
	if err != nil {
		return nil, err
	}
	leaf := cert.Leaf
	if leaf == nil { // GODEBUG=x509keypairleaf=0
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tls: %s: %w", n.CertFile, err)
		}
	}
	if err := bothDirections(leaf); err != nil {
		return nil, fmt.Errorf("tls: %s: %w", n.CertFile, err)
	}
	clientAuth := tls.VerifyClientCertIfGiven
	if n.ClientAuth {
		clientAuth = tls.RequireAndVerifyClientCert
	}
	serverCert := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return kp.get() }
	return &Configs{
		GRPCServer: &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: serverCert, ClientCAs: pool, ClientAuth: clientAuth},
		PeerServer: &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: serverCert, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert},
		PeerClient: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return kp.get() }},
		Leaf: leaf,
	}, nil
}

// bothDirections checks that a node's certificate may be used to accept
// connections and to open them: members connect to each other with it. A
// server-only certificate, as many CAs issue by default, would otherwise
// fail every raft connection with "incompatible key usage".
func bothDirections(c *x509.Certificate) error {
	if len(c.ExtKeyUsage) == 0 {
		return nil // no restriction
	}
	var server, client bool
	for _, u := range c.ExtKeyUsage {
		server = server || u == x509.ExtKeyUsageServerAuth || u == x509.ExtKeyUsageAny
		client = client || u == x509.ExtKeyUsageClientAuth || u == x509.ExtKeyUsageAny
	}
	if !server || !client {
		return errors.New("a node's certificate needs both the serverAuth and clientAuth extended key usages (members connect to each other with it)")
	}
	return nil
}

// keyPair is the node's certificate, read again when its files change, so
// that a renewed certificate is used from the next handshake on without a
// restart (connections are long-lived: handshakes, and so these checks,
// are rare). A pair that does not load — the certificate replaced and the
// key not yet — leaves the previous one in use.
type keyPair struct {
	certFile, keyFile string
	mu                sync.Mutex
	cert              *tls.Certificate
	stamp             [2]fileStamp
}

type fileStamp struct {
	mod  time.Time
	size int64
}

func (k *keyPair) get() (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var stamp [2]fileStamp
	for i, f := range []string{k.certFile, k.keyFile} {
		if fi, err := os.Stat(f); err == nil {
			stamp[i] = fileStamp{fi.ModTime(), fi.Size()}
		}
	}
	if k.cert != nil && stamp == k.stamp {
		return k.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		if k.cert != nil {
			return k.cert, nil
		}
		return nil, fmt.Errorf("tls: certificate %s, key %s: %w", k.certFile, k.keyFile, err)
	}
	k.cert, k.stamp = &cert, stamp
	return k.cert, nil
}

// Client returns the TLS configuration of a client that verifies the
// cluster's certificates against caFile and, if certFile is given,
// presents that certificate (for nodes run with ClientAuth). It returns
// nil, nil when all three are empty (plaintext).
func Client(caFile, certFile, keyFile string) (*tls.Config, error) {
	if caFile == "" && certFile == "" && keyFile == "" {
		return nil, nil
	}
	if caFile == "" {
		return nil, errors.New("tls: a client needs the CA file that signed the nodes' certificates (--cacert)")
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("tls: a client certificate needs its key and the other way round (--cert, --key)")
	}
	pool, err := loadCA(caFile)
	if err != nil {
		return nil, err
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: certificate %s, key %s: %w", certFile, keyFile, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

func loadCA(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tls: CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls: CA file %s holds no PEM certificate", file)
	}
	return pool, nil
}

// Credentials are gRPC transport credentials for connecting with cfg:
// TLS, or plaintext when cfg is nil.
func Credentials(cfg *tls.Config) credentials.TransportCredentials {
	if cfg == nil {
		return insecure.NewCredentials()
	}
	return credentials.NewTLS(cfg)
}
