// Package faultproxy is a TCP proxy for tests that injects network faults
// between a client and a server (PostgreSQL, an S3 endpoint): it listens on
// 127.0.0.1:0 and forwards every connection to one target address, and its
// mode can be switched at any time:
//
//   - Pass forwards bytes both ways.
//   - Blackhole accepts connections and holds them: nothing is forwarded in
//     either direction (new connections are not even dialed to the target),
//     as on a network path that silently drops packets. Nothing is lost:
//     when the mode returns to Pass, held bytes flow again, as TCP would
//     deliver them once the path is back, unless a side gave up meanwhile.
//   - Reset closes every connection with a TCP reset (both sides) and resets
//     each new one at once, as a crashed server or a firewall rejecting.
//   - Mute forwards the client's bytes to the target but holds the
//     target's answers, as when a request was applied and its answer is lost
//     on the way back.
//
// The proxy is bounded: at most MaxConns connections at once (more are
// reset), a fixed buffer per direction, and a dial timeout. Close stops it
// and closes every connection.
package faultproxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Mode is what the proxy does with traffic.
type Mode int

// Modes.
const (
	// Pass forwards bytes both ways.
	Pass Mode = iota
	// Blackhole accepts and holds connections and forwards nothing.
	Blackhole
	// Reset resets every connection, open or new.
	Reset
	// Mute forwards requests and holds answers.
	Mute
)

// String names the mode.
func (m Mode) String() string {
	switch m {
	case Pass:
		return "pass"
	case Blackhole:
		return "blackhole"
	case Reset:
		return "reset"
	case Mute:
		return "mute"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Limits of a proxy.
const (
	// MaxConns is how many client connections a proxy holds at once.
	MaxConns = 256
	// bufSize is the buffer of one direction of one connection.
	bufSize = 32 << 10
	// dialTimeout bounds dialing the target.
	dialTimeout = 5 * time.Second
)

// errReset and errClosed end a pump.
var (
	errReset  = errors.New("faultproxy: connection reset by the proxy")
	errClosed = errors.New("faultproxy: proxy closed")
)

// Proxy is a running fault-injecting TCP proxy. Its methods are safe for
// concurrent use.
type Proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	mode    Mode
	changed chan struct{} // closed and replaced at every mode change
	conns   map[net.Conn]struct{}
	closed  bool
	done    chan struct{}
	wg      sync.WaitGroup
}

// Start listens on 127.0.0.1:0 and forwards connections to target
// ("host:port") in mode Pass.
func Start(target string) (*Proxy, error) {
	if _, _, err := net.SplitHostPort(target); err != nil {
		return nil, fmt.Errorf("faultproxy: target %q is not host:port: %w", target, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listening on 127.0.0.1: %w", err)
	}
	p := &Proxy{ln: ln, target: target, changed: make(chan struct{}), conns: map[net.Conn]struct{}{}, done: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's listen address ("127.0.0.1:port").
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Mode returns the current mode.
func (p *Proxy) Mode() Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// SetMode switches the mode; Reset also resets every open connection.
func (p *Proxy) SetMode(m Mode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.mode = m
	close(p.changed)
	p.changed = make(chan struct{})
	if m == Reset {
		for c := range p.conns {
			resetConn(c)
		}
	}
}

// Conns returns how many connections (client and target sides) are open.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close stops listening, closes every connection and waits for the
// proxy's goroutines to end.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.done)
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

// resetConn closes c with a TCP reset rather than a FIN.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// track registers c; false when the proxy is closed or full.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.conns) >= 2*MaxConns {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// await returns nil once the mode is Pass (or Mute, for bytes towards the
// target), errReset in mode Reset, and errClosed when the proxy closes; in
// mode Blackhole (and Mute, for answers) it waits.
func (p *Proxy) await(answer bool) error {
	for {
		p.mu.Lock()
		m, ch, closed := p.mode, p.changed, p.closed
		p.mu.Unlock()
		switch {
		case closed:
			return errClosed
		case m == Pass, m == Mute && !answer:
			return nil
		case m == Reset:
			return errReset
		}
		select {
		case <-ch:
		case <-p.done:
			return errClosed
		}
	}
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		if !p.track(c) {
			resetConn(c)
			continue
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// serve forwards one client connection: it waits while blackholed, then
// dials the target and pumps both ways until either side ends.
func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	defer p.untrack(client)
	if err := p.await(false); err != nil {
		resetConn(client)
		return
	}
	server, err := net.DialTimeout("tcp", p.target, dialTimeout)
	if err != nil {
		resetConn(client)
		return
	}
	if !p.track(server) {
		resetConn(server)
		resetConn(client)
		return
	}
	defer p.untrack(server)
	var once sync.Once
	end := func(err error) {
		once.Do(func() {
			// A pump that failed because SetMode(Reset) closed the other
			// connection must reset this one too, not close it cleanly.
			if errors.Is(err, errReset) || p.Mode() == Reset {
				resetConn(client)
				resetConn(server)
				return
			}
			client.Close()
			server.Close()
		})
	}
	// A side that ends its stream half-closes the other side's write
	// direction; an error or a reset ends both.
	run := func(dst, src net.Conn) {
		if err := p.pump(dst, src, src == server); err != nil {
			end(err)
		} else if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}
	var pumps sync.WaitGroup
	pumps.Add(2)
	go func() { defer pumps.Done(); run(server, client) }()
	go func() { defer pumps.Done(); run(client, server) }()
	pumps.Wait()
	end(nil)
}

// pump copies src to dst, holding the bytes while the proxy is blackholed
// (or muted, for answers: the target's bytes).
func (p *Proxy) pump(dst, src net.Conn, answer bool) error {
	buf := make([]byte, bufSize)
	for {
		if err := p.await(answer); err != nil {
			return err
		}
		n, rerr := src.Read(buf)
		if n > 0 {
			if err := p.await(answer); err != nil {
				return err
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return err
			}
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				return nil
			}
			return rerr
		}
	}
}
