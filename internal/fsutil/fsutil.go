// Package fsutil holds the file-system steps several packages need to
// make a change durable.
package fsutil

import "os"

// SyncDir makes a directory's entries durable (a rename, a new or removed
// file in it).
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
