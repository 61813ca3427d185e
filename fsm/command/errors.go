package command

import (
	"errors"

	"github.com/cairn-db/cairn/internal/wire"
)

// Sentinel errors of the codec. Callers test them with errors.Is.
var (
	// ErrCorrupt: the bytes are not a valid encoding of any command or result.
	ErrCorrupt = wire.ErrCorrupt
	// ErrVersion: the envelope was written by a newer, unknown codec version.
	ErrVersion = errors.New("command: unsupported envelope version")
	// ErrUnknownType: the envelope names a command type this build does not know.
	ErrUnknownType = errors.New("command: unknown command type")
)
