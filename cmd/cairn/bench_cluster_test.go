package main

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
)

// A load interrupted while a write is in flight returns. The cut-off write
// has an unknown outcome, and so has every later attempt with the
// cancelled context: retrying those spun forever (a `bench checkpoint`
// killed while loading burned a CPU for 90 minutes).
func TestLoadValuesStopsWhenCancelled(t *testing.T) {
	// A server that accepts connections and never answers: the first
	// write stays in flight until the context is cancelled.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- conn
		}
	}()
	c, err := api.NewClient(api.DefaultClientConfig(ln.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- loadValues(ctx, c, 2, 4096, 1024, 100, ckptKey, nil)
	}()
	select {
	case conn := <-accepted:
		defer conn.Close()
	case <-time.After(30 * time.Second):
		t.Fatal("the load never connected")
	}
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("loadValues with a cancelled context returned no error")
		}
	case <-time.After(30 * time.Second): // a hang, not a speed limit
		t.Fatal("loadValues did not return after its context was cancelled")
	}
}
