//go:build tools

package deps

import (
	_ "github.com/anishathalye/porcupine"
	_ "github.com/axiomhq/hyperloglog"
	_ "github.com/cockroachdb/pebble/v2"
	_ "github.com/hashicorp/raft"
	_ "github.com/hashicorp/raft-boltdb/v2"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/spf13/cobra"
	_ "github.com/zeebo/xxh3"
	_ "gocloud.dev/blob"
	_ "gocloud.dev/blob/fileblob"
	_ "google.golang.org/grpc"
	_ "google.golang.org/protobuf/proto"
)
