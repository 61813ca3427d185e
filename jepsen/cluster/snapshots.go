package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// What the harness reads of a node's checkpoint (raft snapshot) installs.
// A node's Prometheus counters start from zero with every process, so the
// per-run totals come from node.log, which is appended across restarts:
// the snapshot store logs one line per install (snapshot/install.go).
//
// The on-disk layout below is the snapshot store's (snapshot/store.go,
// snapshot/files.go): a checkpoint received through raft's InstallSnapshot
// is a manifest directory with a PENDING marker until its files are all
// fetched and the state machine swapped in; a file being fetched is
// files/<checksum>.partial.
const (
	logInstalled     = `msg="snapshot: installed"`
	logInstallFailed = `msg="snapshot: install failed"`
	logStartMarker   = "=== jepsen "

	storeDir       = "snapshots"
	manifestsDir   = "manifests"
	filesDir       = "files"
	pendingMarker  = "PENDING"
	partialSuffix  = ".partial"
	tmpSuffix      = ".tmp" // a snapshot still being received
	metricInstalls = "cairn_checkpoint_installs_total"
)

// InstallLog summarises the install lines of a node.log.
type InstallLog struct {
	Installs     int   `json:"installs"` // completed
	Failed       int   `json:"failed"`
	FilesFetched int   `json:"files_fetched"`
	FilesReused  int   `json:"files_reused"`
	BytesFetched int64 `json:"bytes_fetched"` // completed and failed installs
	BytesResumed int64 `json:"bytes_resumed"` // continued partial files
	// Deltas of the completed installs rebuilt the state from the node's
	// own plus the keys that differ (delta=true); KeysFetched their keys.
	Deltas      int   `json:"deltas"`
	KeysFetched int64 `json:"keys_fetched"`
	Processes   int   `json:"processes"` // process starts seen in the log
}

// ParseInstallLog reads a node.log (slog text lines, harness start
// markers) and totals its install lines.
func ParseInstallLog(r io.Reader) (InstallLog, error) {
	var l InstallLog
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, logStartMarker):
			l.Processes++
		case strings.Contains(line, logInstalled):
			kv := logFields(line)
			l.Installs++
			l.FilesFetched += int(kv.int("fetched"))
			l.FilesReused += int(kv.int("reused"))
			l.BytesFetched += kv.int("fetched_bytes")
			l.BytesResumed += kv.int("resumed_bytes")
			if kv["delta"] == "true" {
				l.Deltas++
				l.KeysFetched += kv.int("keys_fetched")
			}
		case strings.Contains(line, logInstallFailed):
			l.Failed++
			l.BytesFetched += logFields(line).int("fetched_bytes")
		}
	}
	return l, sc.Err()
}

type fields map[string]string

func (f fields) int(k string) int64 {
	v, _ := strconv.ParseInt(f[k], 10, 64)
	return v
}

// logFields splits an slog text line into its key=value pairs (quoted
// values are unquoted).
func logFields(line string) fields {
	out := fields{}
	for len(line) > 0 {
		line = strings.TrimLeft(line, " ")
		eq := strings.IndexByte(line, '=')
		if eq < 0 {
			break
		}
		key, rest := line[:eq], line[eq+1:]
		if sp := strings.LastIndexByte(key, ' '); sp >= 0 {
			key = key[sp+1:]
		}
		var val string
		if strings.HasPrefix(rest, `"`) {
			if q, err := strconv.QuotedPrefix(rest); err == nil {
				val, _ = strconv.Unquote(q)
				rest = rest[len(q):]
			} else {
				val, rest = rest, ""
			}
		} else if sp := strings.IndexByte(rest, ' '); sp >= 0 {
			val, rest = rest[:sp], rest[sp:]
		} else {
			val, rest = rest, ""
		}
		out[key] = val
		line = rest
	}
	return out
}

// InstallLog totals the install lines of n's node.log from offset on.
func (n *Node) InstallLog(offset int64) (InstallLog, error) {
	f, err := os.Open(n.LogPath)
	if err != nil {
		return InstallLog{}, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return InstallLog{}, err
	}
	return ParseInstallLog(f)
}

// LogSize is the current length of n's node.log (an offset for InstallLog).
func (n *Node) LogSize() int64 {
	fi, err := os.Stat(n.LogPath)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// StoreState is what a node's snapshot store holds on disk.
type StoreState struct {
	// Pending lists the received checkpoints not yet installed (snapshot
	// ids with a PENDING marker); All every snapshot id.
	Pending map[string]bool
	All     map[string]bool
	// Partial maps the files being fetched (checksum.partial) to their size.
	Partial map[string]int64
}

// Store reads n's snapshot store directory; a missing store is empty.
func (n *Node) Store() (StoreState, error) {
	s := StoreState{Pending: map[string]bool{}, All: map[string]bool{}, Partial: map[string]int64{}}
	root := filepath.Join(n.DataDir, storeDir)
	ms, err := os.ReadDir(filepath.Join(root, manifestsDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return s, err
	}
	for _, m := range ms {
		if !m.IsDir() || !Received(m.Name()) {
			continue
		}
		s.All[m.Name()] = true
		if _, err := os.Stat(filepath.Join(root, manifestsDir, m.Name(), pendingMarker)); err == nil {
			s.Pending[m.Name()] = true
		}
	}
	files, err := os.ReadDir(filepath.Join(root, filesDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return s, err
	}
	for _, f := range files {
		if strings.HasSuffix(f.Name(), partialSuffix) {
			var size int64
			if fi, err := f.Info(); err == nil {
				size = fi.Size()
			}
			s.Partial[f.Name()] = size
		}
	}
	return s, nil
}

// Received reports whether name in the manifests directory is a snapshot
// received or taken completely (not one still being written).
func Received(name string) bool {
	return !strings.HasPrefix(name, ".") && !strings.HasSuffix(name, tmpSuffix)
}

// ManifestsDir is n's directory of snapshot manifests.
func (n *Node) ManifestsDir() string { return filepath.Join(n.DataDir, storeDir, manifestsDir) }

// NewPending returns the pending snapshot ids in s that were not in before.
func (s StoreState) NewPending(before StoreState) []string {
	var out []string
	for id := range s.Pending {
		if !before.All[id] {
			out = append(out, id)
		}
	}
	return out
}

// Metrics scrapes n's /metrics and returns the named counters and gauges,
// each summed over its label sets (absent names are 0).
func (c *Cluster) Metrics(ctx context.Context, n *Node, names ...string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.HTTPAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.st.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s /metrics: %s", n.ID, resp.Status)
	}
	return ParseMetrics(resp.Body, names...)
}

// ParseMetrics sums the samples of each named metric in Prometheus text
// exposition format.
func ParseMetrics(r io.Reader, names ...string) (map[string]float64, error) {
	out := make(map[string]float64, len(names))
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
		out[n] = 0
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		name := l
		if i := strings.IndexAny(l, "{ "); i >= 0 {
			name = l[:i]
		}
		if !want[name] {
			continue
		}
		sp := strings.LastIndexByte(l, ' ')
		if sp < 0 {
			continue
		}
		v, err := strconv.ParseFloat(l[sp+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("metric line %q: %w", l, err)
		}
		out[name] += v
	}
	return out, sc.Err()
}

// InstallMetrics are a node's install counters in its current process.
type InstallMetrics struct {
	Installs     int64 `json:"installs"` // completed and failed
	FilesFetched int64 `json:"files_fetched"`
	FilesReused  int64 `json:"files_reused"`
	BytesFetched int64 `json:"bytes_fetched"`
	BytesReused  int64 `json:"bytes_reused"`
}

// InstallMetrics scrapes n's install counters (snapshot.Metrics as the
// node exports them, internal/node/checkpoints.go).
func (c *Cluster) InstallMetrics(ctx context.Context, n *Node) (InstallMetrics, error) {
	const p = "cairn_checkpoint_install_"
	m, err := c.Metrics(ctx, n, metricInstalls, p+"files_fetched_total", p+"files_reused_total", p+"bytes_fetched_total", p+"bytes_reused_total")
	if err != nil {
		return InstallMetrics{}, err
	}
	return InstallMetrics{Installs: int64(m[metricInstalls]), FilesFetched: int64(m[p+"files_fetched_total"]),
		FilesReused: int64(m[p+"files_reused_total"]), BytesFetched: int64(m[p+"bytes_fetched_total"]),
		BytesReused: int64(m[p+"bytes_reused_total"])}, nil
}
