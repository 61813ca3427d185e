// Package snapshot makes cairn's raft snapshots consistent Pebble
// checkpoints that are shipped incrementally.
//
// A raft snapshot here is a small Manifest (raft index and term, every
// file of a Pebble checkpoint by name, size and xxh3-128 checksum, the
// node to fetch them from), not the data. The files live once each in a
// content-addressed file store (files/<checksum>), shared by every
// checkpoint that contains them. A follower that installs a snapshot
// fetches only the files it does not hold, over the FileService gRPC
// stream (snapshotpb), resuming partial files, and verifies every checksum
// before anything is linked into a Pebble directory.
//
// The pieces:
//
//   - Store (Open) is raft's SnapshotStore: manifests with raft's metadata,
//     retention of the newest Config.Retain plus pinned ones, and garbage
//     collection of files no retained manifest references.
//   - Store.Checkpointer is the fsm.Checkpointer: Snapshot takes the Pebble
//     checkpoint (hard links), Persist writes the manifest, Restore
//     installs one (Store.Install).
//   - Server serves this node's files; GRPCFetcher fetches peers' files.
//   - Checkpoints, Show, Verify, Pin, Unpin, Quarantined are the catalog.
//   - Export, RestoreFrom and Adopt move checkpoints to and from blob
//     buckets (savepoints).
//   - Metrics receives one event per checkpoint, install, served file, GC
//     pass and export; Counters accumulates them.
//
// DESIGN.md explains why it is built this way.
package snapshot
