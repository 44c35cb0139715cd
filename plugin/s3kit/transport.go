// Package s3kit holds the S3 mechanics the S3-based storage providers
// (cloudflare-r2, s3-compatible) share: the HTTP transport with its
// time-outs, the S3 client and transfer manager configured with checksums
// only when required and pinned part size and concurrency, the mapping of
// S3 errors to storage codes, and the abort of incomplete multipart
// uploads. Rules of one service (R2's region "auto" and account
// endpoints, a region setting) stay in the provider packages.
package s3kit

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"
)

// Timeouts bound how long the provider waits on a silent network, so a
// dead connection (a blackholed path, a vanished peer) is noticed in
// seconds. None of them bounds a whole request: an upload on a slow link
// runs as long as its bytes keep moving.
type Timeouts struct {
	// Dial bounds opening a TCP connection (default 5s).
	Dial time.Duration
	// TLSHandshake bounds the TLS handshake (default 5s).
	TLSHandshake time.Duration
	// ResponseHeader bounds the wait for a response's headers once the
	// request, body included, was sent (default 15s).
	ResponseHeader time.Duration
	// Idle is how long an open connection may move no byte in either
	// direction (default 15s): a write stuck that long, or a read that
	// long after the last byte went out or came in, fails the request.
	// Connections idle in the pool are closed before that.
	Idle time.Duration
}

// Default timeouts.
const (
	// DefaultDialTimeout is the default Timeouts.Dial.
	DefaultDialTimeout = 5 * time.Second
	// DefaultTLSHandshakeTimeout is the default Timeouts.TLSHandshake.
	DefaultTLSHandshakeTimeout = 5 * time.Second
	// DefaultResponseHeaderTimeout is the default Timeouts.ResponseHeader.
	DefaultResponseHeaderTimeout = 15 * time.Second
	// DefaultIdleTimeout is the default Timeouts.Idle.
	DefaultIdleTimeout = 15 * time.Second
)

// WithDefaults fills the zero fields of t with the defaults.
func (t Timeouts) WithDefaults() Timeouts {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.Dial, DefaultDialTimeout)
	def(&t.TLSHandshake, DefaultTLSHandshakeTimeout)
	def(&t.ResponseHeader, DefaultResponseHeaderTimeout)
	def(&t.Idle, DefaultIdleTimeout)
	return t
}

// NewHTTPClient returns the client a provider talks to the service with: HTTP/1.1
// over connections that fail after t.Idle without progress. It is a plain
// *http.Client, so the S3 client uses it as is.
func NewHTTPClient(t Timeouts) *http.Client {
	t = t.WithDefaults()
	dialer := &net.Dialer{Timeout: t.Dial, KeepAlive: 15 * time.Second,
		// Best effort: without it a slow link only drains more slowly
		// after the last write.
		Control: func(_, _ string, c syscall.RawConn) error { _ = limitUnsent(c); return nil }}
	tr := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &idleConn{Conn: c, idle: t.Idle}, nil
		},
		TLSHandshakeTimeout:   t.TLSHandshake,
		ResponseHeaderTimeout: t.ResponseHeader,
		ExpectContinueTimeout: time.Second,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   16,
		// Below Idle: the pool drops a connection before its pending
		// read times out, so a request never picks one that is closing.
		IdleConnTimeout: t.Idle * 2 / 3,
		// HTTP/1.1 only: one request per connection, so the header and
		// idle bounds are the request's own.
		ForceAttemptHTTP2: false,
	}
	return &http.Client{Transport: tr}
}

// idleConn fails reads and writes after idle without progress. A write
// that moves bytes also pushes back the read deadline: the transport keeps
// a read pending while it sends a request body, and a slow upload must not
// look like a silent server.
type idleConn struct {
	net.Conn
	idle time.Duration
}

// errIdle says a connection moved nothing for too long.
type errIdle struct {
	op   string
	idle time.Duration
	err  error
}

func (e *errIdle) Error() string {
	return "connection silent for " + e.idle.String() + " (" + e.op + "): " + e.err.Error()
}
func (e *errIdle) Unwrap() error { return e.err }

// Timeout reports true, so the SDK retries on a fresh connection.
func (e *errIdle) Timeout() bool { return true }

// Temporary reports true (net.Error).
func (e *errIdle) Temporary() bool { return true }

// writeChunk is the most one deadline covers, so progress is seen often.
const writeChunk = 64 << 10

// notSentLowat is how many bytes may wait unsent in a socket's buffer.
const notSentLowat = 128 << 10

// Read reads with a deadline of idle from now.
func (c *idleConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.idle)); err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(p)
	return n, c.wrap("read", err)
}

// Write writes in chunks, each with a deadline of idle from its start.
func (c *idleConn) Write(p []byte) (int, error) {
	total := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), writeChunk)]
		if err := c.Conn.SetWriteDeadline(time.Now().Add(c.idle)); err != nil {
			return total, err
		}
		n, err := c.Conn.Write(chunk)
		total += n
		p = p[n:]
		if n > 0 {
			_ = c.Conn.SetReadDeadline(time.Now().Add(c.idle))
		}
		if err != nil {
			return total, c.wrap("write", err)
		}
	}
	return total, nil
}

func (c *idleConn) wrap(op string, err error) error {
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		return &errIdle{op: op, idle: c.idle, err: err}
	}
	return err
}
