package window

import (
	"bytes"
	"slices"
)

// MemState is an in-memory, sorted key-value State, for tests (here and in
// other packages). It is not safe for concurrent use.
type MemState struct {
	keys, vals [][]byte
}

func (m *MemState) find(k []byte) (int, bool) {
	return slices.BinarySearchFunc(m.keys, k, bytes.Compare)
}

// Get implements State.
func (m *MemState) Get(key []byte) ([]byte, bool, error) {
	if i, ok := m.find(key); ok {
		return m.vals[i], true, nil
	}
	return nil, false, nil
}

// Scan implements State.
func (m *MemState) Scan(lower, upper []byte, fn func(key, value []byte) (bool, error)) error {
	i, _ := m.find(lower)
	for ; i < len(m.keys) && bytes.Compare(m.keys[i], upper) < 0; i++ {
		if more, err := fn(m.keys[i], m.vals[i]); err != nil || !more {
			return err
		}
	}
	return nil
}

// Apply applies mutations in order.
func (m *MemState) Apply(ms []Mutation) {
	for _, mu := range ms {
		i, ok := m.find(mu.Key)
		switch {
		case mu.Delete && ok:
			m.keys = slices.Delete(m.keys, i, i+1)
			m.vals = slices.Delete(m.vals, i, i+1)
		case mu.Delete:
		case ok:
			m.vals[i] = bytes.Clone(mu.Value)
		default:
			m.keys = slices.Insert(m.keys, i, bytes.Clone(mu.Key))
			m.vals = slices.Insert(m.vals, i, bytes.Clone(mu.Value))
		}
	}
}

// Len is the number of stored keys.
func (m *MemState) Len() int { return len(m.keys) }

// Dump returns all keys and values, in order, as one byte string: for
// comparing whole states for byte equality.
func (m *MemState) Dump() []byte {
	var b []byte
	for i := range m.keys {
		b = appendEscaped(b, m.keys[i])
		b = appendEscaped(b, m.vals[i])
	}
	return b
}
