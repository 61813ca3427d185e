package snapshot

import (
	"sync"
	"time"
)

// Metrics receives one event per operation. Implementations must be safe
// for concurrent use and must not block; Counters is a ready one, and a
// Prometheus bridge implements this interface (or reads Counters.Totals).
type Metrics interface {
	CheckpointCreated(CheckpointStats)
	InstallDone(InstallStats)
	FileServed(ServeStats)
	GCDone(GCStats)
	ExportDone(ExportStats)
}

// CheckpointStats describes one checkpoint creation (Snapshot + Persist).
type CheckpointStats struct {
	ID          string
	Index, Term uint64
	Duration    time.Duration // Snapshot start to manifest written
	PauseTime   time.Duration // part of it on the FSM goroutine (applies blocked)
	// Where the rest of Duration went, in Persist (applies continue): the
	// Pebble checkpoint and reading its state index; trimming and
	// checksumming its files; linking them into the store; committing the
	// manifest (and retention).
	TakeTime, FilesTime, StoreTime, CommitTime time.Duration
	Files                                      int
	Bytes                                      int64
	NewFiles                                   int // not in the previous checkpoint
	NewBytes                                   int64
	SharedFiles                                int
	SharedBytes                                int64
	HashedBytes                                int64 // bytes read to compute checksums (cache misses)
	// WALTrimmedBytes is the stale tail of recycled WAL files cut from
	// copies in the checkpoint (see trimWAL).
	WALTrimmedBytes int64
	// WALLinkedBytes is the part of live WALs the checkpoint holds
	// through hard links instead of copies (see fsm.TakeCheckpoint).
	WALLinkedBytes int64
	StoredFiles    int // files added to the content store
	StoredBytes    int64
	// ReusedFiles are tables the store already held (the same inode):
	// not linked into the scratch checkpoint, nor stat'ed again.
	ReusedFiles int
	Err         error
}

// InstallStats describes one install (Restore) on this node.
type InstallStats struct {
	CheckpointID     string
	Index, Term      uint64
	Duration         time.Duration
	Files            int
	Bytes            int64
	FilesReused      int // already held locally
	BytesReused      int64
	FilesFetched     int // fetched (completely or the rest of a partial)
	BytesFetched     int64
	FilesResumed     int // fetches that continued a partial file
	BytesResumed     int64
	FilesQuarantined int // local copies found corrupt and moved aside
	// Delta is set when the state was rebuilt from this node's own state
	// plus the differences (a delta install, see DESIGN.md) instead of
	// from the checkpoint's files. BytesFetched then counts the
	// differences received, BytesSent the digest of the local state sent,
	// BytesReused the keys and values already held.
	Delta                                bool
	KeysFetched, KeysDeleted, KeysReused int64
	BytesSent                            int64
	// Where a delta install's time went: copying and opening the local
	// state; exchanging digest and differences and applying them; reading
	// the result back against the source's digest and flushing it;
	// storing the rebuilt checkpoint's files and manifest.
	CopyTime, SyncTime, CheckTime, StoreTime time.Duration
	Err                                      error
}

// ServeStats describes one Fetch served to a peer.
type ServeStats struct {
	Checksum string
	Offset   int64
	Bytes    int64
	Err      error
}

// GCStats describes one retention pass.
type GCStats struct {
	SnapshotsDeleted int
	FilesDeleted     int
	BytesDeleted     int64
	Skipped          string // non-empty: why files were not collected
}

// ExportStats describes one Export.
type ExportStats struct {
	ID            string
	Duration      time.Duration
	FilesUploaded int
	BytesUploaded int64
	FilesSkipped  int // already in the bucket
	BytesSkipped  int64
	Err           error
}

type nopMetrics struct{}

func (nopMetrics) CheckpointCreated(CheckpointStats) {}
func (nopMetrics) InstallDone(InstallStats)          {}
func (nopMetrics) FileServed(ServeStats)             {}
func (nopMetrics) GCDone(GCStats)                    {}
func (nopMetrics) ExportDone(ExportStats)            {}

// Counters accumulates events into Totals.
type Counters struct {
	mu sync.Mutex
	t  Totals
}

// Totals are cumulative counters plus the last event of each kind.
type Totals struct {
	Checkpoints, CheckpointFailures int64
	CheckpointTime                  time.Duration
	CheckpointNewBytes              int64
	CheckpointSharedBytes           int64
	HashedBytes                     int64
	LastCheckpoint                  CheckpointStats

	Installs, InstallFailures int64
	InstallTime               time.Duration
	FilesFetched, FilesReused int64
	BytesFetched, BytesReused int64
	BytesResumed              int64
	FilesQuarantined          int64
	LastInstall               InstallStats

	FilesServed, BytesServed, ServeFailures int64

	GCRuns, SnapshotsDeleted, FilesDeleted, BytesDeleted int64

	Exports, ExportFailures      int64
	BytesExported, FilesExported int64
	BytesExportSkipped           int64
}

var _ Metrics = (*Counters)(nil)

// Totals returns a copy of the counters.
func (c *Counters) Totals() Totals {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *Counters) CheckpointCreated(s CheckpointStats) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t.LastCheckpoint = s
	if s.Err != nil {
		c.t.CheckpointFailures++
		return
	}
	c.t.Checkpoints++
	c.t.CheckpointTime += s.Duration
	c.t.CheckpointNewBytes += s.NewBytes
	c.t.CheckpointSharedBytes += s.SharedBytes
	c.t.HashedBytes += s.HashedBytes
}

func (c *Counters) InstallDone(s InstallStats) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t.LastInstall = s
	if s.Err != nil {
		c.t.InstallFailures++
	} else {
		c.t.Installs++
		c.t.InstallTime += s.Duration
	}
	// Transfers count even when the install failed: that is what was shipped.
	c.t.FilesFetched += int64(s.FilesFetched)
	c.t.BytesFetched += s.BytesFetched
	c.t.BytesResumed += s.BytesResumed
	c.t.FilesQuarantined += int64(s.FilesQuarantined)
	if s.Err == nil {
		c.t.FilesReused += int64(s.FilesReused)
		c.t.BytesReused += s.BytesReused
	}
}

func (c *Counters) FileServed(s ServeStats) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t.FilesServed++
	c.t.BytesServed += s.Bytes
	if s.Err != nil {
		c.t.ServeFailures++
	}
}

func (c *Counters) GCDone(s GCStats) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t.GCRuns++
	c.t.SnapshotsDeleted += int64(s.SnapshotsDeleted)
	c.t.FilesDeleted += int64(s.FilesDeleted)
	c.t.BytesDeleted += s.BytesDeleted
}

func (c *Counters) ExportDone(s ExportStats) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.Err != nil {
		c.t.ExportFailures++
	} else {
		c.t.Exports++
	}
	c.t.BytesExported += s.BytesUploaded
	c.t.FilesExported += int64(s.FilesUploaded)
	c.t.BytesExportSkipped += s.BytesSkipped
}
