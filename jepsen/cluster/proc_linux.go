package cluster

import (
	"os"
	"syscall"
)

// The signals Pause and Resume send.
const sigStop, sigCont = syscall.SIGSTOP, syscall.SIGCONT

// procAttr starts a node in its own process group, makes it die with the
// harness (Pdeathsig) and, if cg is not nil, starts it in that cgroup.
func procAttr(cg *os.File) (*syscall.SysProcAttr, error) {
	a := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if cg != nil {
		a.UseCgroupFD, a.CgroupFD = true, int(cg.Fd())
	}
	return a, nil
}
