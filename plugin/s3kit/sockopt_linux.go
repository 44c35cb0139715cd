package s3kit

import "syscall"

// tcpNotSentLowat is TCP_NOTSENT_LOWAT on Linux.
const tcpNotSentLowat = 0x19

// limitUnsent keeps at most notSentLowat bytes unsent in the socket's
// buffer, so a write returns only when its bytes are about to leave: write
// progress then follows the link, and after the last write little is left
// to drain before the response can come.
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
