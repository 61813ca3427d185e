package node

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cairn-db/cairn/internal/fsutil"
)

// ErrWrongNode: a data directory that belongs to another node id.
var ErrWrongNode = errors.New("node: data directory belongs to another node")

// identityFile names the node id a data directory belongs to. A raft log
// is one member's: started under another id, the process would vote and
// acknowledge appends as that other member while claiming to be a new one
// (etcd keeps its member id in its data directory for the same reason).
const identityFile = "node-id"

// claimDataDir records that dir belongs to id, or checks that it does. A
// directory from before the file existed is claimed by whichever id opens
// it first.
func claimDataDir(dir, id string) error {
	p := filepath.Join(dir, identityFile)
	b, err := os.ReadFile(p)
	switch {
	case err == nil:
		if got := strings.TrimSpace(string(b)); got != id {
			return fmt.Errorf("%w: %s belongs to node %q, not %q; start it with --node-id %s, or give %s a data directory of its own",
				ErrWrongNode, dir, got, id, got, id)
		}
		return nil
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o644); err != nil {
		return err
	}
	f, err := os.Open(tmp)
	if err != nil {
		return err
	}
	serr := f.Sync()
	_ = f.Close()
	if serr != nil {
		return serr
	}
	if err := os.Rename(tmp, p); err != nil {
		return err
	}
	return fsutil.SyncDir(dir)
}
