package cluster

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// CgroupPrefix starts the name of every cgroup the harness creates, so
// that `cairn jepsen clean` can find leftovers.
const CgroupPrefix = "cairn-jepsen-"

// Cgroup2Root returns the mount point of the cgroup v2 hierarchy
// (/sys/fs/cgroup on unified systems, /sys/fs/cgroup/unified on hybrid
// ones), or an error saying why there is none.
func Cgroup2Root() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("cgroup v2: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options ... - fstype source superopts
		fields := strings.Fields(sc.Text())
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && len(fields) > 4 {
				return fields[4], nil
			}
		}
	}
	return "", errors.New("cgroup v2 is not mounted")
}

// Cgroups places node processes in their own cgroup v2 groups, which lets
// packet filters recognise a node's traffic by the sending socket's cgroup
// (iptables -m cgroup --path) even though every node's outgoing
// connections come from 127.0.0.1.
type Cgroups struct {
	Root string // cgroup2 mount point
	Base string // this run's group, relative to Root: cairn-jepsen-<run>
}

// NewCgroups creates Root/Base.
func NewCgroups(runID string) (*Cgroups, error) {
	root, err := Cgroup2Root()
	if err != nil {
		return nil, err
	}
	c := &Cgroups{Root: root, Base: CgroupPrefix + runID}
	if err := os.MkdirAll(filepath.Join(root, c.Base), 0o755); err != nil {
		return nil, fmt.Errorf("cgroup v2: %w", err)
	}
	return c, nil
}

// Path returns node id's group relative to the cgroup2 root, as iptables'
// --path wants it.
func (c *Cgroups) Path(id string) string { return c.Base + "/" + id }

// Open creates node id's group and opens it for exec (CLONE_INTO_CGROUP),
// so the process is in the group before it creates any socket.
func (c *Cgroups) Open(id string) (*os.File, error) {
	dir := filepath.Join(c.Root, c.Path(id))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", dir, err)
	}
	return os.Open(dir)
}

// Remove deletes the run's groups (they must be empty: stop the nodes first).
func (c *Cgroups) Remove() error {
	return RemoveCgroupTree(filepath.Join(c.Root, c.Base))
}

// RemoveCgroupTree removes a cgroup directory and its children, deepest
// first. cgroup directories are removed with rmdir, never recursively.
func RemoveCgroupTree(dir string) error {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	var errs []error
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Remove(dirs[i]); err != nil && !os.IsNotExist(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// CgroupPIDs lists the processes in dir and its children.
func CgroupPIDs(dir string) []int {
	var pids []int
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		for _, f := range strings.Fields(string(b)) {
			var pid int
			if _, err := fmt.Sscan(f, &pid); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids
}
