//go:build unix

package snapshot

import (
	"os"
	"syscall"
)

// identity returns what identifies a file's content without reading it:
// device and inode (a hard link shares them), size and modification time.
func identity(fi os.FileInfo) (fileKey, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileKey{}, false
	}
	return fileKey{dev: uint64(st.Dev), ino: st.Ino, size: fi.Size(), mtime: fi.ModTime().UnixNano()}, true
}
