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
	p := ca.MustIssue(t, name)
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
	ca, other := testcerts.MustCA(t, "cluster"), testcerts.MustCA(t, "other")
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

	// refused: from dials to; the handshake must fail.
	refused := func(what string, from, to *TLSStreamLayer) {
		go func() {
			if c, err := to.Accept(); err == nil {
				_, _ = io.ReadFull(c, make([]byte, 1))
				c.Close()
			}
		}()
		if c, err := from.Dial(raft.ServerAddress(to.Addr().String()), 5*time.Second); err == nil {
			c.Close()
			t.Fatalf("%s: the handshake completed", what)
		}
	}
	refused("a stranger dialling a member", stranger, b)
	refused("a member dialling a stranger", a, stranger)
}
