//go:build !faultybuild

package faulty

// Enabled reports whether a planted bug is switched on: never, in this build.
func Enabled(string) bool { return false }

// Build reports whether this is a faultybuild binary.
const Build = false
