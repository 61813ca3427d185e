package raftnode

import (
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cairn-db/cairn/internal/testcerts"
	"github.com/cairn-db/cairn/internal/tlsconf"
)

func tlsLayer(t *testing.T, ca *testcerts.CA, name string) *TLSStreamLayer {
	t.Helper()
	p, err := ca.Issue(name)
	if err != nil {
		t.Fatal(err)
	}
	cfgs, err := tlsconf.Node{CAFile: ca.CAFile, CertFile: p.CertFile, KeyFile: p.KeyFile}.Load()
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := NewTCPStreamLayer("127.0.0.1:0", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tcp.Close() })
	return NewTLSStreamLayer(tcp, cfgs.PeerServer, cfgs.PeerClient)
}

// Members whose certificates the same CA signed talk; a peer with a
// certificate from another CA is refused in both directions.
func TestTLSStreamLayer(t *testing.T) {
	dir := t.TempDir()
	ca, err := testcerts.NewCA(dir, "cluster")
	if err != nil {
		t.Fatal(err)
	}
	other, err := testcerts.NewCA(dir, "other")
	if err != nil {
		t.Fatal(err)
	}
	a, b, stranger := tlsLayer(t, ca, "a"), tlsLayer(t, ca, "b"), tlsLayer(t, other, "stranger")

	got := make(chan []byte, 1)
	go func() {
		c, err := b.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		buf := make([]byte, 5)
		if _, err := io.ReadFull(c, buf); err != nil {
			got <- nil
			return
		}
		got <- buf
	}()
	c, err := a.Dial(raft.ServerAddress(b.Addr().String()), 5*time.Second)
	if err != nil {
		t.Fatalf("a member dialling a member: %v", err)
	}
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if msg := <-got; string(msg) != "hello" {
		t.Fatalf("b read %q, want hello", msg)
	}
	c.Close()

	// A stranger dialling a member: the stranger cannot verify b's
	// certificate, and b would not accept the stranger's.
	go func() {
		if c, err := b.Accept(); err == nil {
			_, _ = io.ReadFull(c, make([]byte, 1))
			c.Close()
		}
	}()
	if c, err := stranger.Dial(raft.ServerAddress(b.Addr().String()), 5*time.Second); err == nil {
		c.Close()
		t.Fatal("a peer with another CA's certificate completed a handshake with a member")
	}
	// A member dialling a stranger: refused by the member.
	go func() {
		if c, err := stranger.Accept(); err == nil {
			_, _ = io.ReadFull(c, make([]byte, 1))
			c.Close()
		}
	}()
	if c, err := a.Dial(raft.ServerAddress(stranger.Addr().String()), 5*time.Second); err == nil {
		c.Close()
		t.Fatal("a member completed a handshake with a peer holding another CA's certificate")
	}
}
