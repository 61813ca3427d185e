package cluster

import (
	"errors"
	"os"
	"syscall"
)

// Windows has no SIGSTOP/SIGCONT: os.Process.Signal refuses every signal
// but Kill, so Pause, Resume and Stop return its error there. The harness
// is built on Windows only so that the cairn binary, which links it, is.
const sigStop, sigCont = syscall.Signal(0x13), syscall.Signal(0x12)

func procAttr(cg *os.File) (*syscall.SysProcAttr, error) {
	if cg != nil {
		return nil, errors.New("cluster: cgroups need Linux")
	}
	return &syscall.SysProcAttr{}, nil
}
