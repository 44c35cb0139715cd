//go:build unix && !linux

package s3test

import "syscall"

// sysProcAttr puts versitygw in its own process group.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
