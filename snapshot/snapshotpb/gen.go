// Package snapshotpb holds the gRPC service that moves checkpoint files
// between cairn nodes (see snapshot/DESIGN.md).
package snapshotpb

//go:generate env PATH=/root/go/bin:$PATH protoc --proto_path=. --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative snapshot.proto
