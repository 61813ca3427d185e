package fsm

import "encoding/binary"

// Pebble key layout. The first byte separates namespaces so that a user
// scan can never see internal state, and internal state never collides with
// a user key. Persisted: never change a prefix.
const (
	prefixMeta     byte = 0x00 // internal metadata (applied index, node addresses, sweep clock)
	prefixUser     byte = 'u'  // user keys: 'u' + key
	prefixProducer byte = 'p'  // producer sessions
	prefixTable    byte = 't'  // windowed tables (window/ owns the layout below it)
)

var (
	keyApplied    = []byte{prefixMeta, 'a'}      // applied index (8 bytes BE) + term (8 bytes BE)
	keySweep      = []byte{prefixMeta, 's'}      // last producer-expiry sweep bucket
	keyNodePrefix = []byte{prefixMeta, 'n', '/'} // + node id -> gRPC address
	// producer name -> id (8 bytes BE)
	keyProducerNamePrefix = []byte{prefixProducer, 'n', '/'}
	// producer id (8 bytes BE) -> record
	keyProducerIDPrefix = []byte{prefixProducer, 'i', '/'}
)

// userKey returns the Pebble key of a user key.
func userKey(k []byte) []byte {
	out := make([]byte, 1+len(k))
	out[0] = prefixUser
	copy(out[1:], k)
	return out
}

func nodeKey(id string) []byte { return append(append([]byte{}, keyNodePrefix...), id...) }

func producerNameKey(name string) []byte {
	return append(append([]byte{}, keyProducerNamePrefix...), name...)
}

func producerIDKey(id uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte{}, keyProducerIDPrefix...), id)
}

// prefixEnd returns the smallest key greater than every key with prefix p,
// or nil if there is none.
func prefixEnd(p []byte) []byte {
	end := append([]byte{}, p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
