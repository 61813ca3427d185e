// Package api is cairn's gRPC surface: the protobuf services (cairnpb), the
// server that maps them onto raftnode and fsm, and a Go client that finds
// the leader, retries what is safe to retry, and offers exactly-once
// producer sessions.
//
// Handlers declare the small interfaces they consume (Raft, State); the
// server never reaches into raft directly.
package api
