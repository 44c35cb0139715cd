//go:build !linux && !darwin

package s3kit

import "syscall"

// limitUnsent does nothing where TCP_NOTSENT_LOWAT is not available: the
// idle and response-header timeouts then also cover the time the socket
// buffer takes to drain.
func limitUnsent(syscall.RawConn) error { return nil }
