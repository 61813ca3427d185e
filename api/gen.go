package api

// Regenerate the checked-in gRPC code (needs protoc, protoc-gen-go and
// protoc-gen-go-grpc on PATH; .ci/gen-proto installs the pinned versions):
//
//go:generate protoc -I proto --go_out=. --go_opt=module=github.com/cairn-db/cairn/api --go-grpc_out=. --go-grpc_opt=module=github.com/cairn-db/cairn/api cairn/v1/kv.proto cairn/v1/producer.proto cairn/v1/cluster.proto cairn/v1/table.proto cairn/v1/checkpoint.proto
