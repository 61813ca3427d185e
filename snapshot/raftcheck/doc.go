// Package raftcheck runs the snapshot package end to end with
// hashicorp/raft, the fsm state machine and raftnode: real InstallSnapshot
// exchanges whose payload is a manifest and whose files travel over the
// FileService. It holds tests only; they double as the reference wiring.
package raftcheck
