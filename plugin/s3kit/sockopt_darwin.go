package s3kit

import "syscall"

// tcpNotSentLowat is TCP_NOTSENT_LOWAT on macOS.
const tcpNotSentLowat = 0x201

// limitUnsent keeps at most notSentLowat bytes unsent in the socket's
// buffer (see the Linux version).
func limitUnsent(c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpNotSentLowat, notSentLowat)
	})
	if err != nil {
		return err
	}
	return serr
}
