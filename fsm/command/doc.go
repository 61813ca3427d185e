// Package command defines the one versioned envelope for everything that
// enters cairn's Raft log, and the results the state machine returns for it.
//
// The codec is pure: no I/O, no clock, no randomness. Encoding is canonical
// (the same value always encodes to the same bytes), and decoding never
// panics on arbitrary input: a corrupt entry yields ErrCorrupt.
//
// Envelope layout (all integers are unsigned LEB128 varints unless stated):
//
//	byte 0   version (currently 1)
//	byte 1   type (TypeBatch, TypeRegisterProducer, ...)
//	byte 2   flags (FlagSnappy: payload is snappy-compressed)
//	byte 3.. payload, type specific
package command
