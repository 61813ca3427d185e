package snapshot

import "errors"

// Sentinel errors. Callers test them with errors.Is; the returned errors
// wrap them with the snapshot id, file or address involved.
var (
	// ErrNotFound: no retained snapshot has this id.
	ErrNotFound = errors.New("snapshot: not found")
	// ErrNotManifest: a raft snapshot payload is not a cairn checkpoint
	// manifest (for example one written by fsm.FullCheckpointer).
	ErrNotManifest = errors.New("snapshot: payload is not a checkpoint manifest")
	// ErrCorrupt: stored data does not match its checksum.
	ErrCorrupt = errors.New("snapshot: corrupt")
	// ErrNoSource: an install needs files and no node to fetch them from is known.
	ErrNoSource = errors.New("snapshot: no source to fetch files from")
	// ErrIncomplete: the checkpoint's files are not all held locally.
	ErrIncomplete = errors.New("snapshot: checkpoint files missing locally")
	// ErrExists: a restore target already exists and is never overwritten.
	ErrExists = errors.New("snapshot: target already exists")
	// ErrBadURL: an object-storage URL that cannot name a bucket.
	ErrBadURL = errors.New("snapshot: bad bucket URL")
)
