//go:build unix && !linux

package cluster

import (
	"errors"
	"os"
	"syscall"
)

// The signals Pause and Resume send.
const sigStop, sigCont = syscall.SIGSTOP, syscall.SIGCONT

// procAttr starts a node in its own process group. Outside Linux there is
// no Pdeathsig (a node outlives a harness killed with -9; `cairn jepsen
// clean` does not find it either) and no cgroup v2 to start it in.
func procAttr(cg *os.File) (*syscall.SysProcAttr, error) {
	if cg != nil {
		return nil, errors.New("cluster: cgroups need Linux")
	}
	return &syscall.SysProcAttr{Setpgid: true}, nil
}
