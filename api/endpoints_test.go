package api_test

import (
	"context"
	"net"
	"net/http"
	"testing"

	"github.com/cairn-db/cairn/api"
	"github.com/cairn-db/cairn/internal/testcluster"
)

// A write whose first attempts go to endpoints that cannot have received it
// — a name that does not resolve, a port that is not gRPC (a node's HTTP
// port), a closed port — is retried on the next endpoint, not reported as
// an unknown outcome; and a client tries its endpoints from the first.
func TestWriteSkipsEndpointsThatNeverGotIt(t *testing.T) {
	c := testcluster.Start(t, 1, nil)
	good := c.Endpoints()[0]
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.NotFoundHandler()}
	go func() { _ = srv.Serve(httpLn) }()
	t.Cleanup(func() { _ = srv.Close() })
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	_ = closed.Close()
	for _, bad := range []struct{ name, addr string }{
		{"unresolvable name", "nohost.invalid:7102"},
		{"HTTP port", httpLn.Addr().String()},
		{"closed port", closedAddr},
	} {
		t.Run(bad.name, func(t *testing.T) {
			// bad first and in the middle: every order must work.
			for _, eps := range [][]string{{bad.addr, good}, {good, bad.addr, good}} {
				cfg := api.DefaultClientConfig(eps...)
				cl, err := api.NewClient(cfg)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := cl.Put(context.Background(), []byte("k"), []byte("v")); err != nil {
					t.Errorf("endpoints %v: put: %v", eps, err)
				}
				_ = cl.Close()
			}
		})
	}
}
