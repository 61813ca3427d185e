//go:build faultybuild

package faulty

import (
	"os"
	"strings"
	"sync"
)

var (
	once sync.Once
	set  map[string]bool
)

// Enabled reports whether the planted bug name is listed in CAIRN_FAULTS.
func Enabled(name string) bool {
	once.Do(func() {
		set = map[string]bool{}
		for _, f := range strings.Split(os.Getenv("CAIRN_FAULTS"), ",") {
			if f = strings.TrimSpace(f); f != "" {
				set[f] = true
			}
		}
	})
	return set[name]
}

// Build reports whether this is a faultybuild binary.
const Build = true
