// Package client is the harness's recording client: every request it
// makes becomes one history record (linearizability.Op) with call and
// return times on the run clock, an outcome, and a request id that travels
// with the request into the raft log. Errors never abort a client: a
// timeout, a lost leader or a cut connection is an unknown outcome, a
// request that provably never reached the log is a failure.
package client

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/cairn-db/cairn/linearizability"
)

// Record is a history record plus harness-only detail. It marshals flat:
// history.jsonl stays readable by linearizability.ReadJSONL, which ignores
// the extra fields.
type Record struct {
	linearizability.Op
	// Node is the node a read was sent to (writes go through the client's
	// leader discovery and are not attributed).
	Node string `json:"node,omitempty"`
	// Consistency is a read's level when it was not linearizable ("lease").
	Consistency string `json:"consistency,omitempty"`
}

// Recorder collects records from concurrent clients, keeps them in memory
// and streams them as JSON lines. It also is the run clock.
type Recorder struct {
	start time.Time
	mu    sync.Mutex
	enc   *json.Encoder
	recs  []Record
	err   error
}

// NewRecorder starts the run clock; w (may be nil) receives one JSON line
// per record as it completes.
func NewRecorder(w io.Writer) *Recorder {
	r := &Recorder{start: time.Now()}
	if w != nil {
		r.enc = json.NewEncoder(w)
	}
	return r
}

// Now is nanoseconds since the recorder started (monotonic).
func (r *Recorder) Now() int64 { return int64(time.Since(r.start)) }

// Start is the wall-clock time of the run clock's zero.
func (r *Recorder) Start() time.Time { return r.start }

// Add appends a record. The first write error is kept (Err).
func (r *Recorder) Add(rec Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
	if r.enc != nil && r.err == nil {
		r.err = r.enc.Encode(&rec)
	}
}

// Err returns the first write error.
func (r *Recorder) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// Records returns a copy of every record so far.
func (r *Recorder) Records() []Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Record(nil), r.recs...)
}

// History returns the records as a linearizability history.
func History(recs []Record) linearizability.History {
	h := make(linearizability.History, len(recs))
	for i := range recs {
		h[i] = recs[i].Op
	}
	return h
}

// RequestID is the id client number c sends with its n-th request. The
// client number is in the high 32 bits (plus one, so that no id is zero).
func RequestID(c int, n uint32) uint64 { return uint64(c+1)<<32 | uint64(n) }

// OpID is the history id of a request id: "c<client>-<n>".
func OpID(reqID uint64) (string, bool) {
	c := reqID >> 32
	if c == 0 {
		return "", false
	}
	return fmt.Sprintf("c%d-%d", c-1, uint32(reqID)), true
}
