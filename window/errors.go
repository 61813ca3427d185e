package window

import "errors"

// Sentinel errors. Every error returned by this package wraps exactly one of
// these (with %w), so callers classify errors with errors.Is.
//
// Errors wrapping ErrInvalidSpec, ErrInvalidDuration, ErrInvalidTable and
// ErrTimeOutOfRange depend only on the command being applied; an FSM can treat
// them as a deterministic rejection of that command. ErrCorruptState,
// ErrCorruptKey and ErrAggMismatch mean stored bytes are not what this package
// wrote. Any other error came from the caller's State implementation.
var (
	// ErrInvalidSpec: a Spec failed Validate or ParseSpec could not parse it.
	ErrInvalidSpec = errors.New("window: invalid spec")
	// ErrInvalidDuration: ParseDuration could not parse a duration string.
	ErrInvalidDuration = errors.New("window: invalid duration")
	// ErrInvalidTable: NewEngine was given an empty table name.
	ErrInvalidTable = errors.New("window: invalid table")
	// ErrTimeOutOfRange: an event time lies outside [MinTime, MaxTime].
	ErrTimeOutOfRange = errors.New("window: event time out of range")
	// ErrCorruptState: aggregate state bytes are malformed or not canonical,
	// or an index entry points at a window that does not exist.
	ErrCorruptState = errors.New("window: corrupt aggregate state")
	// ErrCorruptKey: a key handed to a Decode function is malformed.
	ErrCorruptKey = errors.New("window: corrupt key")
	// ErrAggMismatch: an aggregate state belongs to a different aggregation
	// kind or HyperLogLog precision than the Aggregator handling it.
	ErrAggMismatch = errors.New("window: aggregate kind mismatch")
)
