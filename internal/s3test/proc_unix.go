//go:build unix

package s3test

import (
	"os"
	"syscall"
)

// killGroup signals the process group led by p: SIGKILL when force is set,
// SIGTERM otherwise. Errors (typically "no such process") are ignored.
func killGroup(p *os.Process, force bool) {
	sig := syscall.SIGTERM
	if force {
		sig = syscall.SIGKILL
	}
	_ = syscall.Kill(-p.Pid, sig)
}
