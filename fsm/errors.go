package fsm

import "errors"

// Sentinel errors of the state machine.
var (
	// ErrCorruptState: bytes read from Pebble are not what this package wrote.
	ErrCorruptState = errors.New("fsm: corrupt stored state")
	// ErrNotFound: a read found no value.
	ErrNotFound = errors.New("fsm: not found")
	// ErrClosed: the state machine was closed.
	ErrClosed = errors.New("fsm: closed")
	// ErrLocked: the state is open in another process.
	ErrLocked = errors.New("fsm: state is in use by another process")
)
