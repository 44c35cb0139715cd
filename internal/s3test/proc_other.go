//go:build !unix

package s3test

import (
	"os"
	"syscall"
)

// sysProcAttr returns nil: process groups are a Unix feature.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// killGroup kills p; graceful termination is not available here.
func killGroup(p *os.Process, _ bool) { _ = p.Kill() }
