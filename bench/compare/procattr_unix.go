//go:build unix

package main

import "syscall"

// ownProcessGroup keeps a Ctrl-C in the terminal from reaching the
// servers directly: compare stops them itself.
func ownProcessGroup() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
