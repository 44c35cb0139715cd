//go:build linux

package s3test

import "syscall"

// sysProcAttr puts versitygw in its own process group and has the kernel kill
// it if the test binary dies without running its cleanups.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
