package r2

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/magicads/r2storage/internal/s3test"
	"github.com/magicads/r2storage/shared/storage"
)

// shortTimeouts make a silent network fail within about a second.
var shortTimeouts = Timeouts{Dial: time.Second, TLSHandshake: time.Second, ResponseHeader: time.Second, Idle: time.Second}

// newProxied returns a provider reaching versitygw through a blackhole
// proxy, with the given timeouts.
func newProxied(t *testing.T, to Timeouts) (*Provider, *s3test.Server, *s3test.Blackhole) {
	t.Helper()
	srv, s := newVersity(t)
	bh := s3test.NewBlackhole(t, strings.TrimPrefix(srv.Endpoint, "http://"))
	p, err := NewFromBundle(nil)
	if err != nil {
		t.Fatal(err)
	}
	p.opts.Timeouts = to
	if _, err := p.Configure(context.Background(), with(s, "endpoint", bh.Endpoint)); err != nil {
		t.Fatal(err)
	}
	return p, srv, bh
}

func randomData(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// TestDeadConnectionNoticedInSeconds: with the bucket's network path
// blackholed (connections open but silent), a small put and a multipart put
// fail within a few seconds as Unavailable, whatever their size, and work
// again once the path is back.
func TestDeadConnectionNoticedInSeconds(t *testing.T) {
	p, srv, bh := newProxied(t, shortTimeouts)
	ctx := context.Background()
	if _, err := p.Put(ctx, "images/g/warm.png", bytes.NewReader(randomData(1000)), storage.PutOptions{Size: 1000}); err != nil {
		t.Fatal(err)
	}
	bh.SetBlackhole(true)
	for _, size := range []int{100 << 10, 2*PartSize + 1} {
		start := time.Now()
		_, err := p.Put(ctx, "images/g/dead.png", bytes.NewReader(randomData(size)), storage.PutOptions{Size: int64(size)})
		took := time.Since(start)
		var se *storage.Error
		if err == nil || !errors.As(err, &se) || se.Code != storage.Unavailable {
			t.Fatalf("put of %d bytes on a dead path: %v", size, err)
		}
		// Three attempts of about a second each, the backoff between them,
		// and for a multipart upload its abort.
		if took > 15*time.Second {
			t.Fatalf("put of %d bytes took %v to notice the dead path", size, took)
		}
		t.Logf("put of %d bytes failed after %v: %v", size, took.Round(time.Millisecond), err)
	}
	// The path dies in the middle of a part.
	bh.SetBlackhole(false)
	bh.SetRate(2 << 20)
	time.AfterFunc(700*time.Millisecond, func() { bh.SetBlackhole(true) })
	start := time.Now()
	_, err := p.Put(ctx, "videos/v/dies.mp4", bytes.NewReader(randomData(3*PartSize)), storage.PutOptions{Size: 3 * PartSize})
	if took := time.Since(start); err == nil || took > 15*time.Second {
		t.Fatalf("a put whose path died mid-part: %v after %v", err, took)
	} else {
		t.Logf("a put whose path died mid-part failed after %v: %v", took.Round(time.Millisecond), err)
	}
	bh.SetRate(0)
	bh.SetBlackhole(false)
	if _, err := p.Put(ctx, "images/g/back.png", bytes.NewReader(randomData(1000)), storage.PutOptions{Size: 1000}); err != nil {
		t.Fatalf("put after the path came back: %v", err)
	}
	if keys := srv.Keys(t, bucket); len(keys) != 2 {
		t.Fatalf("objects %v, want the two that succeeded", keys)
	}
}

// TestSlowLinkIsNotCut: on a link far slower than the timeouts allow for a
// whole part (1 MB/s, 1 s timeouts, 5 MiB parts), a multipart upload and a
// large read complete: only silence is cut, not duration.
func TestSlowLinkIsNotCut(t *testing.T) {
	p, _, bh := newProxied(t, shortTimeouts)
	ctx := context.Background()
	data := randomData(2*PartSize + 123)
	bh.SetRate(1 << 20)
	start := time.Now()
	if _, err := p.Put(ctx, "videos/v/slow.mp4", bytes.NewReader(data), storage.PutOptions{ContentType: "video/mp4", Size: int64(len(data))}); err != nil {
		t.Fatalf("a slow multipart upload was cut after %v: %v", time.Since(start), err)
	}
	took := time.Since(start)
	if took < 3*time.Second {
		t.Fatalf("the upload took %v: the link was not slow", took)
	}
	t.Logf("uploaded %d bytes in %v", len(data), took.Round(time.Millisecond))
	rc, _, err := p.Get(ctx, "videos/v/slow.mp4", storage.GetOptions{Length: -1})
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	_, err = got.ReadFrom(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("slow read: %d bytes, %v", got.Len(), err)
	}
}

// TestDefaultTimeoutsAreSeconds: the plugin binary's defaults notice a
// dead connection in seconds, not minutes.
func TestDefaultTimeoutsAreSeconds(t *testing.T) {
	d := Timeouts{}.WithDefaults()
	for name, v := range map[string]time.Duration{"dial": d.Dial, "tls": d.TLSHandshake, "response header": d.ResponseHeader, "idle": d.Idle} {
		if v <= 0 || v > 20*time.Second {
			t.Errorf("default %s timeout %v", name, v)
		}
	}
	tr := newHTTPClient(Timeouts{}).Transport.(*http.Transport)
	if tr.ResponseHeaderTimeout != d.ResponseHeader || tr.TLSHandshakeTimeout != d.TLSHandshake || tr.IdleConnTimeout >= d.Idle {
		t.Fatalf("transport: %+v", tr)
	}
}
