package snapshot

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/zeebo/xxh3"
)

// ManifestFormat identifies the manifest encoding. Persisted in every raft
// snapshot: a new encoding gets a new value and readers keep the old one
// (fixtures under testdata/).
const ManifestFormat = "cairn-checkpoint/1"

// maxManifestBytes bounds what is read as a manifest (about 100 bytes per
// file: far above any real checkpoint).
const maxManifestBytes = 64 << 20

// Source is a node that serves checkpoint files over the FileService.
type Source struct {
	NodeID string `json:"node_id"`
	Addr   string `json:"addr"` // gRPC host:port
}

// File is one file of a checkpoint. Name is its name inside the Pebble
// directory and means something only there; Checksum and Size identify the
// content everywhere.
type File struct {
	Name     string `json:"name"`
	Size     int64  `json:"size"`
	Checksum string `json:"xxh3_128"` // 32 lower-case hex digits
}

// Manifest is the raft snapshot payload: everything needed to rebuild the
// Pebble directory of one checkpoint from content-addressed files.
type Manifest struct {
	Format string `json:"format"`
	// ID names the checkpoint; it is the raft snapshot id on the node that
	// created it (followers store it under ids of their own).
	ID string `json:"id"`
	// Index and Term are the raft snapshot's: every entry up to Index is
	// in the state.
	Index uint64 `json:"index"`
	Term  uint64 `json:"term"`
	// StateIndex and StateTerm, when set, are the last entry whose effects
	// the files hold, above Index: the Pebble checkpoint is taken after
	// the snapshot point while entries keep being applied, and holds a
	// prefix of them. A node installing the checkpoint skips re-delivered
	// entries up to StateIndex; a new cluster restored from it continues
	// its log above StateIndex. Zero means equal to Index and Term.
	StateIndex   uint64        `json:"state_index,omitempty"`
	StateTerm    uint64        `json:"state_term,omitempty"`
	Source       Source        `json:"source"`
	Created      time.Time     `json:"created"`
	Duration     time.Duration `json:"duration_ns"`
	PebbleFormat uint64        `json:"pebble_format"`
	Files        []File        `json:"files"`
	StateBytes   int64         `json:"state_bytes"`
	// Previous is the checkpoint the New/Shared counts compare with.
	Previous    string `json:"previous,omitempty"`
	NewFiles    int    `json:"new_files"`
	NewBytes    int64  `json:"new_bytes"`
	SharedFiles int    `json:"shared_files"`
	SharedBytes int64  `json:"shared_bytes"`
	// Extra carries summaries added by hooks (Config.Extra), for example
	// producer offsets. The store never interprets it.
	Extra map[string]json.RawMessage `json:"extra,omitempty"`
	// RebuiltFrom, when set, says that this node rebuilt the checkpoint's
	// state from its own files by a delta install against RebuiltFrom's
	// copy: the same state (ID, index, term, Extra), this node's files.
	RebuiltFrom *Source `json:"rebuilt_from,omitempty"`
	// Holder, when set, is the node that sent this manifest to an
	// installing node: it holds every file (a store keeps the files of
	// every checkpoint it lists), so the install asks it first. Set by
	// Store.Open on the way out, never stored by the creator; Source stays
	// the creator, which may be gone — or be the installing node's own id in
	// a previous life, or empty for a restored checkpoint.
	Holder *Source `json:"holder,omitempty"`
}

// State returns the index and term of the last entry the checkpoint's
// files hold (StateIndex, or Index when the two are equal).
func (m *Manifest) State() (index, term uint64) {
	if m.StateIndex > m.Index {
		return m.StateIndex, m.StateTerm
	}
	return m.Index, m.Term
}

// Encode returns the manifest's persisted form.
func (m *Manifest) Encode() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// DecodeManifest reads a manifest. A payload that is not a cairn manifest
// yields ErrNotManifest; one that claims to be but is invalid yields ErrCorrupt.
func DecodeManifest(r io.Reader) (*Manifest, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxManifestBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxManifestBytes {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrNotManifest, maxManifestBytes)
	}
	return decodeManifest(b)
}

func decodeManifest(b []byte) (*Manifest, error) {
	var probe struct {
		Format string `json:"format"`
	}
	if err := json.Unmarshal(b, &probe); err != nil || probe.Format == "" {
		if bytes.Contains(b[:min(len(b), 64)], []byte(`"format"`)) {
			return nil, fmt.Errorf("%w: manifest does not parse", ErrCorrupt)
		}
		return nil, ErrNotManifest
	}
	if probe.Format != ManifestFormat {
		return nil, fmt.Errorf("%w: unknown format %q", ErrNotManifest, probe.Format)
	}
	m := new(Manifest)
	// Unknown fields are ignored: additions that old readers may skip do
	// not need a new format (rolling upgrades).
	if err := json.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("%w: manifest: %w", ErrCorrupt, err)
	}
	if err := compactExtra(m.Extra); err != nil {
		return nil, fmt.Errorf("%w: manifest extra %w", ErrCorrupt, err)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return m, nil
}

// compactExtra compacts each Extra value in place. Values come out of the
// indented encoding indented; compact, they are what a writer puts in
// (json.Marshal's output), so a manifest reads the same whether decoded
// or kept as written (manifestCache).
func compactExtra(extra map[string]json.RawMessage) error {
	for k, v := range extra {
		var c bytes.Buffer
		if err := json.Compact(&c, v); err != nil {
			return fmt.Errorf("%q: %w", k, err)
		}
		extra[k] = c.Bytes()
	}
	return nil
}

// Validate checks what a receiver must be able to trust before touching
// the filesystem: names are plain file names, checksums are well formed,
// sizes add up.
func (m *Manifest) Validate() error {
	if m.Format != ManifestFormat {
		return fmt.Errorf("snapshot: manifest format %q, want %q", m.Format, ManifestFormat)
	}
	seen := make(map[string]bool, len(m.Files))
	var total int64
	for _, f := range m.Files {
		if !validName(f.Name) {
			return fmt.Errorf("snapshot: manifest file name %q is not a plain file name", f.Name)
		}
		if seen[f.Name] {
			return fmt.Errorf("snapshot: manifest lists %q twice", f.Name)
		}
		seen[f.Name] = true
		if !validChecksum(f.Checksum) {
			return fmt.Errorf("snapshot: manifest file %q: malformed checksum %q", f.Name, f.Checksum)
		}
		if f.Size < 0 {
			return fmt.Errorf("snapshot: manifest file %q: negative size", f.Name)
		}
		total += f.Size
	}
	if total != m.StateBytes {
		return fmt.Errorf("snapshot: manifest files total %d bytes, state_bytes says %d", total, m.StateBytes)
	}
	return nil
}

// uniqueFiles returns the manifest's distinct contents (one File per
// checksum), in manifest order.
func (m *Manifest) uniqueFiles() []File {
	seen := make(map[string]bool, len(m.Files))
	out := make([]File, 0, len(m.Files))
	for _, f := range m.Files {
		if !seen[f.Checksum] {
			seen[f.Checksum] = true
			out = append(out, f)
		}
	}
	return out
}

func validName(n string) bool {
	return n != "" && n != "." && n != ".." && !strings.HasPrefix(n, ".") &&
		!strings.ContainsAny(n, `/\`+"\x00")
}

func validChecksum(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// immutable reports whether Pebble never rewrites a file of this name
// once written, so that it may be hard-linked between directories.
// OPTIONS, MANIFEST, WAL and marker files are copied instead (WAL files are
// recycled in place; MANIFESTs are appended to).
func immutable(name string) bool {
	return strings.HasSuffix(name, ".sst") || strings.HasSuffix(name, ".blob")
}

// checksumHex formats an xxh3-128 sum.
func checksumHex(u xxh3.Uint128) string {
	b := u.Bytes()
	return hex.EncodeToString(b[:])
}

// hashFile returns the checksum and length of a file's content.
func hashFile(path string) (string, int64, error) { return hashPrefix(path, -1) }

// hashPrefix returns the checksum and length of the first size bytes of a
// file (all of it if size < 0; fewer if the file is shorter).
func hashPrefix(path string, size int64) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	var r io.Reader = f
	if size >= 0 {
		r = io.LimitReader(f, size)
	}
	h := xxh3.New()
	n, err := io.CopyBuffer(h, r, make([]byte, 256<<10))
	if err != nil {
		return "", 0, err
	}
	return checksumHex(h.Sum128()), n, nil
}
