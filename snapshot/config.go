package snapshot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Config configures a Store.
type Config struct {
	// Dir holds manifests/, files/, quarantine/ and scratch/. It must be on
	// the same filesystem as the FSM's Pebble directory for hard links
	// (otherwise files are copied, correctly but at full cost).
	Dir string
	// NodeID and Addr (the gRPC address of this node's FileService) are
	// recorded in every manifest this node creates, as the place to fetch
	// its files from.
	NodeID string
	Addr   string
	// Retain is how many of the newest snapshots are kept, pinned ones
	// not counted.
	Retain int
	// Fetcher fetches missing files during an install; nil means installs
	// work only when every file is already held locally.
	Fetcher Fetcher
	// Sources, if set, names more nodes to try after the manifest's own
	// source (for example every cluster member): the creator of a
	// checkpoint may be gone by the time a follower installs it.
	Sources func(m *Manifest) []Source
	// FetchAttempts is how many rounds over all sources one install makes
	// for a file before failing (each attempt resumes the partial file).
	FetchAttempts int
	// Fallback, if set, restores payloads that are not manifests: snapshots
	// taken before the switch to this store, or sent by a leader not yet
	// upgraded (for example &fsm.FullCheckpointer{...}).
	Fallback interface {
		Restore(r io.Reader, dir string) error
	}
	// SkipReuseVerify trusts local files on install instead of rehashing
	// them. Off by default: a corrupt local file is then quarantined and
	// fetched again rather than linked into the new DB.
	SkipReuseVerify bool
	// DeltaAbove: when the files an install lacks exceed this fraction of
	// the checkpoint's bytes and the FSM offers a copy of its live state,
	// the install first tries to rebuild the state from that copy plus the
	// differences, key by key (a delta install; see DESIGN.md). 0 turns
	// delta installs off. Replicas' files differ even when their keys
	// mostly agree, so a follower that fell behind usually lacks nearly
	// all of a leader's files.
	DeltaAbove float64
	// DeltaMaxShipped stops a delta install once it has received more than
	// this fraction of the state's bytes; the install then fetches files
	// (resumable, unlike a delta). 0 means no limit.
	DeltaMaxShipped float64
	// PebbleOptions returns the options checkpoints are opened with by
	// Verify: pass fsm.PebbleOptions(vfs.Default) so that the Comparer and
	// Merger match the FSM's. nil means Pebble's defaults.
	PebbleOptions func() *pebble.Options
	// Extra, if set, runs in Snapshot (on the FSM goroutine, db quiescent
	// at index) and its result is stored in Manifest.Extra.
	Extra func(db *pebble.DB, index, term uint64) (map[string]json.RawMessage, error)
	// Metrics receives events; nil means none.
	Metrics Metrics
	Logger  *slog.Logger
	// Now is the clock for manifest times and durations; nil means time.Now.
	Now func() time.Time
}

// DefaultConfig returns a Config with defaults.
func DefaultConfig(dir, nodeID, addr string) Config {
	return Config{Dir: dir, NodeID: nodeID, Addr: addr, Retain: 2, FetchAttempts: 3, DeltaAbove: 0.2, DeltaMaxShipped: 0.5}
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("Dir is required"))
	}
	if c.NodeID == "" {
		errs = append(errs, errors.New("NodeID is required"))
	}
	if c.Retain < 1 {
		errs = append(errs, fmt.Errorf("Retain must be >= 1, got %d", c.Retain))
	}
	if c.FetchAttempts < 1 {
		errs = append(errs, fmt.Errorf("FetchAttempts must be >= 1, got %d", c.FetchAttempts))
	}
	if c.DeltaAbove < 0 || c.DeltaAbove > 1 {
		errs = append(errs, fmt.Errorf("DeltaAbove must be in [0,1], got %v", c.DeltaAbove))
	}
	if c.DeltaMaxShipped < 0 {
		errs = append(errs, fmt.Errorf("DeltaMaxShipped must be >= 0, got %v", c.DeltaMaxShipped))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("snapshot: invalid config: %w", err)
	}
	return nil
}

func (c *Config) fillDefaults() {
	if c.PebbleOptions == nil {
		c.PebbleOptions = func() *pebble.Options { return &pebble.Options{Logger: quietLogger{}} }
	}
	if c.Metrics == nil {
		c.Metrics = nopMetrics{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// quietLogger drops Pebble's informational output for the read-only opens
// of Verify.
type quietLogger struct{}

func (quietLogger) Infof(string, ...interface{}) {}
func (quietLogger) Errorf(format string, args ...interface{}) {
	slog.Error(fmt.Sprintf("pebble: "+format, args...))
}
func (quietLogger) Fatalf(format string, args ...interface{}) {
	panic(fmt.Sprintf("pebble: fatal: "+format, args...))
}
