//go:build unix

package main

import (
	"os/exec"
	"syscall"
)

// detach puts a child in its own process group, so that a Ctrl-C at the
// terminal reaches only `cairn dev`, which then stops the children in order.
func detach(c *exec.Cmd) { c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} }
