package s3test

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Blackhole is a TCP proxy for tests that can make its backend unreachable
// the way a dead network path does: nothing is refused or reset, bytes just
// stop moving. Create it with NewBlackhole; point clients at Endpoint.
type Blackhole struct {
	// Endpoint is "http://127.0.0.1:PORT", the proxy's address as a URL.
	Endpoint string

	backend string
	ln      net.Listener

	mu     sync.Mutex
	holed  bool
	rate   int // bytes per second in each direction; 0 is unlimited
	conns  map[*bhConn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// bhConn is one proxied connection.
type bhConn struct {
	client, server net.Conn
	// dead is set when the connection was open during a blackhole: it never
	// forwards again, as if its path's state was lost.
	dead bool
}

// NewBlackhole starts a proxy on a free loopback port forwarding to
// backend (host:port) and stops it when the test ends.
func NewBlackhole(t testing.TB, backend string) *Blackhole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("s3test: blackhole listen: %v", err)
	}
	b := &Blackhole{Endpoint: "http://" + ln.Addr().String(), backend: backend, ln: ln, conns: map[*bhConn]struct{}{}}
	b.wg.Add(1)
	go b.accept()
	t.Cleanup(b.Close)
	return b
}

// SetBlackhole turns the blackhole on or off. While on, every open
// connection goes silent for good (it stays silent after the blackhole is
// lifted) and new connections are accepted but never reach the backend.
// After it is lifted, new connections work again.
func (b *Blackhole) SetBlackhole(on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.holed = on
	if on {
		for c := range b.conns {
			c.dead = true
		}
	}
}

// SetRate limits each direction of every connection to bytesPerSecond
// (0 lifts the limit), to simulate a slow link.
func (b *Blackhole) SetRate(bytesPerSecond int) {
	b.mu.Lock()
	b.rate = bytesPerSecond
	b.mu.Unlock()
}

// Close stops the proxy and closes every connection.
func (b *Blackhole) Close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	b.ln.Close()
	for c := range b.conns {
		c.client.Close()
		if c.server != nil {
			c.server.Close()
		}
	}
	b.mu.Unlock()
	b.wg.Wait()
}

func (b *Blackhole) accept() {
	defer b.wg.Done()
	for {
		client, err := b.ln.Accept()
		if err != nil {
			return
		}
		// A small receive window, so a slow rate holds the sender back
		// instead of filling a large buffer here.
		if tcp, ok := client.(*net.TCPConn); ok {
			tcp.SetReadBuffer(64 << 10)
		}
		c := &bhConn{client: client}
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			client.Close()
			return
		}
		c.dead = b.holed
		b.conns[c] = struct{}{}
		b.mu.Unlock()
		b.wg.Add(1)
		go b.serve(c)
	}
}

// serve forwards one connection; a dead one holds its client until Close.
func (b *Blackhole) serve(c *bhConn) {
	defer b.wg.Done()
	defer func() {
		b.mu.Lock()
		delete(b.conns, c)
		b.mu.Unlock()
		c.client.Close()
		if c.server != nil {
			c.server.Close()
		}
	}()
	if b.isDead(c) {
		b.hold(c)
		return
	}
	server, err := net.Dial("tcp", b.backend)
	if err != nil {
		return
	}
	b.mu.Lock()
	c.server = server
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return
	}
	done := make(chan struct{}, 2)
	go func() { b.pipe(c, server, c.client); done <- struct{}{} }()
	go func() { b.pipe(c, c.client, server); done <- struct{}{} }()
	<-done
	// One side ended (or the path died): stop the other direction too.
	server.Close()
	if !b.isDead(c) {
		c.client.Close()
	}
	<-done
	if b.isDead(c) {
		// Keep the client's side open and silent, as a dead path does.
		b.hold(c)
	}
}

// hold keeps a dead connection open without reading from it, until Close.
func (b *Blackhole) hold(c *bhConn) {
	for {
		b.mu.Lock()
		closed := b.closed
		b.mu.Unlock()
		if closed {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *Blackhole) isDead(c *bhConn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return c.dead
}

// pipe copies src to dst in small chunks until an error or until c dies;
// the bytes in flight when it dies are dropped.
func (b *Blackhole) pipe(c *bhConn, dst, src net.Conn) {
	buf := make([]byte, 16<<10)
	for {
		b.mu.Lock()
		rate := b.rate
		b.mu.Unlock()
		chunk := buf
		if rate > 0 && rate/10 < len(chunk) {
			chunk = buf[:max(rate/10, 1)]
		}
		// Poll so a connection that dies while idle stops at once.
		src.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		n, err := src.Read(chunk)
		if b.isDead(c) {
			return
		}
		if n > 0 {
			if _, werr := dst.Write(chunk[:n]); werr != nil {
				return
			}
			if rate > 0 {
				time.Sleep(time.Duration(n) * time.Second / time.Duration(rate))
			}
		}
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			if err != io.EOF {
				return
			}
			if tcp, ok := dst.(*net.TCPConn); ok {
				tcp.CloseWrite()
			}
			return
		}
	}
}
