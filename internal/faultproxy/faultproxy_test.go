package faultproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// echoServer answers every line with the same line.
func echoServer(t *testing.T) string {
	addr, _ := lineServer(t)
	return addr
}

func start(t *testing.T) *Proxy {
	t.Helper()
	p, err := Start(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dial(t *testing.T, p *Proxy) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr(), 2*time.Second)
	if err != nil {
		t.Fatalf("dialing the proxy: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip sends line and reads the echo within d.
func roundTrip(c net.Conn, line string, d time.Duration) (string, error) {
	c.SetDeadline(time.Now().Add(d))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSuffix(got, "\n"), err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestPass(t *testing.T) {
	p := start(t)
	c := dial(t, p)
	for _, line := range []string{"one", "two"} {
		if got, err := roundTrip(c, line, 5*time.Second); err != nil || got != line {
			t.Fatalf("echo of %q: %q, %v", line, got, err)
		}
	}
}

func TestBlackholeHoldsThenDelivers(t *testing.T) {
	p := start(t)
	open := dial(t, p)
	if _, err := roundTrip(open, "before", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.SetMode(Blackhole)
	if got, err := roundTrip(open, "held", 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("an open connection answered while blackholed: %q, %v", got, err)
	}
	fresh := dial(t, p) // accepted, but nothing comes back
	if got, err := roundTrip(fresh, "new", 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("a new connection answered while blackholed: %q, %v", got, err)
	}
	p.SetMode(Pass)
	// The held bytes arrive once the path is back, in order.
	r := bufio.NewReader(open)
	open.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := r.ReadString('\n'); err != nil || got != "held\n" {
		t.Fatalf("held line after pass: %q, %v", got, err)
	}
	fr := bufio.NewReader(fresh)
	fresh.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := fr.ReadString('\n'); err != nil || got != "new\n" {
		t.Fatalf("held connection after pass: %q, %v", got, err)
	}
}

// lineServer echoes every line and reports each line it received (while
// the report channel has room).
func lineServer(t *testing.T) (string, <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := make(chan string, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					select {
					case got <- strings.TrimSuffix(line, "\n"):
					default: // nobody is counting
					}
					io.WriteString(c, line)
				}
			}()
		}
	}()
	return ln.Addr().String(), got
}

func TestMuteAppliesRequestsAndHoldsAnswers(t *testing.T) {
	addr, received := lineServer(t)
	p, err := Start(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	open := dial(t, p)
	if _, err := roundTrip(open, "before", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	<-received
	p.SetMode(Mute)
	for _, c := range []net.Conn{open, dial(t, p)} {
		if got, err := roundTrip(c, "muted", 300*time.Millisecond); !isTimeout(err) {
			t.Fatalf("an answer came through while muted: %q, %v", got, err)
		}
		select {
		case line := <-received:
			if line != "muted" {
				t.Fatalf("the server received %q", line)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the request did not reach the server while muted")
		}
	}
	p.SetMode(Pass)
	open.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := bufio.NewReader(open).ReadString('\n'); err != nil || got != "muted\n" {
		t.Fatalf("held answer after pass: %q, %v", got, err)
	}
}

func TestResetResetsOpenAndNewConnections(t *testing.T) {
	p := start(t)
	open := dial(t, p)
	if _, err := roundTrip(open, "before", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.SetMode(Reset)
	if _, err := roundTrip(open, "after", 5*time.Second); !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("an open connection after reset: %v (want a reset)", err)
	}
	// A new connection is reset, during the dial or at the first exchange.
	fresh, err := net.DialTimeout("tcp", p.Addr(), 2*time.Second)
	if err == nil {
		defer fresh.Close()
		_, err = roundTrip(fresh, "new", 5*time.Second)
	}
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("a new connection in reset mode: %v (want a reset)", err)
	}
	p.SetMode(Pass)
	if got, err := roundTrip(dial(t, p), "again", 5*time.Second); err != nil || got != "again" {
		t.Fatalf("after pass again: %q, %v", got, err)
	}
}

func TestCloseEndsEverything(t *testing.T) {
	p := start(t)
	c := dial(t, p)
	if _, err := roundTrip(c, "x", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.SetMode(Blackhole)
	dial(t, p) // held
	waitConns := time.Now().Add(5 * time.Second)
	for p.Conns() < 3 && time.Now().Before(waitConns) {
		time.Sleep(10 * time.Millisecond)
	}
	done := make(chan error, 1)
	go func() { done <- p.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return within 5s with a blackholed connection open")
	}
	if n := p.Conns(); n != 0 {
		t.Fatalf("%d connections still open after Close", n)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("a client connection after Close: %v (want closed)", err)
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Fatal("the proxy still accepts after Close")
	}
}

func TestBadTarget(t *testing.T) {
	if _, err := Start("no-port"); err == nil {
		t.Fatal("Start accepted a target without a port")
	}
}
