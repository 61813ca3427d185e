package command

import "errors"

// Sentinel errors of the codec. Callers test them with errors.Is.
var (
	// ErrCorrupt: the bytes are not a valid encoding of any command or result.
	ErrCorrupt = errors.New("command: corrupt encoding")
	// ErrVersion: the envelope was written by a newer, unknown codec version.
	ErrVersion = errors.New("command: unsupported envelope version")
	// ErrUnknownType: the envelope names a command type this build does not know.
	ErrUnknownType = errors.New("command: unknown command type")
)
