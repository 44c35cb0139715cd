package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/magicads/r2storage/internal/plugintest"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/magicads/r2storage/internal/s3test"
)

const (
	testBucket   = "public-demo"
	immutable    = "public, max-age=31536000, immutable"
	pngType      = "image/png"
	missingBkt   = "no-such-bucket"
	plusSpaceKey = "images/a+b c/ü 100%.png"
)

// escapeKey escapes an object key the way the R2 plugin builds public URLs:
// each segment path-escaped, and + as %2B.
func escapeKey(key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = strings.ReplaceAll(url.PathEscape(s), "+", "%2B")
	}
	return strings.Join(segs, "/")
}

type fixture struct {
	vgw *s3test.Server
	url string // base URL of the publicbucket handler
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	vgw := s3test.StartVersity(t)
	vgw.CreateBucket(t, testBucket)
	h := &handler{
		client: newClient(vgw.Endpoint, vgw.AccessKey, vgw.SecretKey, nil),
		bucket: testBucket,
		log:    slog.New(slog.DiscardHandler),
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &fixture{vgw: vgw, url: srv.URL}
}

func (f *fixture) put(t *testing.T, key, contentType string, body []byte) string {
	t.Helper()
	out, err := f.vgw.Client().PutObject(t.Context(), &s3.PutObjectInput{
		Bucket: aws.String(testBucket), Key: aws.String(key), Body: bytes.NewReader(body),
		ContentType: aws.String(contentType), CacheControl: aws.String(immutable),
	})
	if err != nil {
		t.Fatalf("PutObject %q: %v", key, err)
	}
	return aws.ToString(out.ETag)
}

// do sends method to the raw (already escaped) path and returns the answer
// with its body read.
func do(t *testing.T, method, rawURL string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, rawURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestServesObjects(t *testing.T) {
	f := newFixture(t)
	body := bytes.Repeat([]byte("\x89PNG-data-"), 1000)
	etag := f.put(t, "images/gemini/0001.png", pngType, body)

	t.Run("GET", func(t *testing.T) {
		resp, got := do(t, http.MethodGet, f.url+"/images/gemini/0001.png", nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d, want 200; body %q", resp.StatusCode, got)
		}
		if !bytes.Equal(got, body) {
			t.Fatalf("body: got %d bytes, want the %d stored", len(got), len(body))
		}
		want := map[string]string{
			"Content-Type":   pngType,
			"Content-Length": fmt.Sprint(len(body)),
			"ETag":           etag,
			"Cache-Control":  immutable,
			"Accept-Ranges":  "bytes",
		}
		for k, v := range want {
			if g := resp.Header.Get(k); g != v {
				t.Errorf("%s = %q, want %q", k, g, v)
			}
		}
		if resp.Header.Get("Last-Modified") == "" {
			t.Error("no Last-Modified")
		}
	})

	t.Run("HEAD", func(t *testing.T) {
		resp, got := do(t, http.MethodHead, f.url+"/images/gemini/0001.png", nil)
		if resp.StatusCode != http.StatusOK || len(got) != 0 {
			t.Fatalf("status %d with %d body bytes, want 200 and none", resp.StatusCode, len(got))
		}
		if resp.ContentLength != int64(len(body)) || resp.Header.Get("Content-Type") != pngType ||
			resp.Header.Get("ETag") != etag || resp.Header.Get("Cache-Control") != immutable {
			t.Fatalf("headers %v", resp.Header)
		}
	})

	t.Run("Range", func(t *testing.T) {
		resp, got := do(t, http.MethodGet, f.url+"/images/gemini/0001.png", http.Header{"Range": {"bytes=10-19"}})
		if resp.StatusCode != http.StatusPartialContent {
			t.Fatalf("status %d, want 206", resp.StatusCode)
		}
		if !bytes.Equal(got, body[10:20]) {
			t.Fatalf("body %q, want %q", got, body[10:20])
		}
		if cr := resp.Header.Get("Content-Range"); cr != fmt.Sprintf("bytes 10-19/%d", len(body)) {
			t.Fatalf("Content-Range %q", cr)
		}
	})

	t.Run("If-None-Match", func(t *testing.T) {
		resp, got := do(t, http.MethodGet, f.url+"/images/gemini/0001.png", http.Header{"If-None-Match": {etag}})
		if resp.StatusCode != http.StatusNotModified || len(got) != 0 {
			t.Fatalf("status %d with %d body bytes, want 304", resp.StatusCode, len(got))
		}
	})

	t.Run("default content type", func(t *testing.T) {
		if _, err := f.vgw.Client().PutObject(t.Context(), &s3.PutObjectInput{
			Bucket: aws.String(testBucket), Key: aws.String("raw"), Body: strings.NewReader("x"),
		}); err != nil {
			t.Fatal(err)
		}
		resp, _ := do(t, http.MethodGet, f.url+"/raw", nil)
		if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct == "" {
			t.Fatalf("status %d Content-Type %q", resp.StatusCode, ct)
		}
	})
}

func TestNotFoundAndNoListing(t *testing.T) {
	f := newFixture(t)
	f.put(t, "images/x.png", pngType, []byte("x"))
	for _, path := range []string{"/", "/?list-type=2", "/images/", "/images", "/images/y.png", "/" + testBucket + "/images/x.png"} {
		for _, m := range []string{http.MethodGet, http.MethodHead} {
			resp, body := do(t, m, f.url+path, nil)
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s %s: status %d, want 404", m, path, resp.StatusCode)
			}
			if strings.Contains(string(body), "x.png") {
				t.Errorf("%s %s: body lists keys: %q", m, path, body)
			}
		}
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		resp, _ := do(t, m, f.url+"/images/x.png", nil)
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: status %d Allow %q, want 405 GET, HEAD", m, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
	if keys := f.vgw.Keys(t, testBucket); len(keys) != 1 {
		t.Fatalf("bucket changed: %q", keys)
	}
}

func TestKeysDecodedOnce(t *testing.T) {
	f := newFixture(t)
	keys := map[string][]byte{
		plusSpaceKey:        []byte("plus and space"),
		"images/a%2Bb.png":  []byte("literal percent-2B"),
		"images/a b.png":    []byte("space"),
		"images/a+b.png":    []byte("plus"),
		"videos/x/y/z.mp4":  []byte("nested"),
		"images/semi;c.png": []byte("semicolon"),
	}
	for k, v := range keys {
		f.put(t, k, pngType, v)
	}
	cases := []struct{ path, want string }{
		{"/" + escapeKey(plusSpaceKey), plusSpaceKey},             // how the plugin builds public URLs
		{"/images/a%252Bb.png", "images/a%2Bb.png"},               // decoded once: %25 -> %, the rest stays
		{"/images/a%2Bb.png", "images/a+b.png"},                   // %2B is a plus
		{"/images/a+b.png", "images/a+b.png"},                     // a literal + is a plus, not a space
		{"/images/a%20b.png", "images/a b.png"},                   // %20 is a space
		{"/videos/x%2Fy/z.mp4", "videos/x/y/z.mp4"},               // an escaped slash is a slash
		{"/images/semi;c.png", "images/semi;c.png"},               // no parameter stripping
		{"/images/a%20b.png?cache-buster=1", "images/a b.png"},    // the query is not part of the key
		{"/" + escapeKey("images/a%2Bb.png"), "images/a%2Bb.png"}, // plugin escaping of a literal %
	}
	for _, c := range cases {
		resp, body := do(t, http.MethodGet, f.url+c.path, nil)
		if resp.StatusCode != http.StatusOK || string(body) != string(keys[c.want]) {
			t.Errorf("GET %s: status %d body %q, want 200 %q (key %q)", c.path, resp.StatusCode, body, keys[c.want], c.want)
		}
	}
	// A key encoded twice must not be found by decoding twice.
	resp, _ := do(t, http.MethodGet, f.url+"/images/a%25252Bb.png", nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("double-escaped path: status %d, want 404", resp.StatusCode)
	}
}

func TestPrepareBucket(t *testing.T) {
	vgw := s3test.StartVersity(t)
	c := newClient(vgw.Endpoint, vgw.AccessKey, vgw.SecretKey, nil)
	ctx := t.Context()

	_, err := prepareBucket(ctx, c, missingBkt, vgw.Endpoint, false, time.Second)
	if err == nil || !strings.Contains(err.Error(), "not found") || !strings.Contains(err.Error(), "--create-bucket") {
		t.Fatalf("missing bucket without --create-bucket: %v", err)
	}
	created, err := prepareBucket(ctx, c, "made-here", vgw.Endpoint, true, time.Second)
	if err != nil || !created {
		t.Fatalf("create: created=%v err=%v", created, err)
	}
	created, err = prepareBucket(ctx, c, "made-here", vgw.Endpoint, true, time.Second)
	if err != nil || created {
		t.Fatalf("second start: created=%v err=%v, want an existing bucket", created, err)
	}

	bad := newClient(vgw.Endpoint, vgw.AccessKey, "wrong-secret", nil)
	_, err = prepareBucket(ctx, bad, "made-here", vgw.Endpoint, true, time.Second)
	if err == nil || !strings.Contains(err.Error(), "rejected the credentials") {
		t.Fatalf("bad secret: %v", err)
	}
	if strings.Contains(fmt.Sprint(err), vgw.SecretKey) {
		t.Fatal("error shows the secret")
	}

	// Nothing listens: it waits, then names the endpoint.
	dead := "http://" + freeAddr(t)
	start := time.Now()
	_, err = prepareBucket(ctx, newClient(dead, "a", "b", nil), "x", dead, true, 600*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "did not answer") || !strings.Contains(err.Error(), dead) {
		t.Fatalf("dead endpoint: %v", err)
	}
	if time.Since(start) < 500*time.Millisecond {
		t.Fatalf("gave up after %v, before --wait", time.Since(start))
	}
}

func TestRun(t *testing.T) {
	vgw := s3test.StartVersity(t)
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(t.Context())
	var logs plugintest.Logs
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, []string{"--addr", addr, "--endpoint", vgw.Endpoint, "--bucket", "magicads-demo",
			"--access", vgw.AccessKey, "--secret", vgw.SecretKey, "--create-bucket"}, &logs)
	}()
	base := "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(base + "/missing")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Fatalf("missing key: status %d", resp.StatusCode)
			}
			break
		}
		select {
		case err := <-errc:
			t.Fatalf("run returned early: %v; log:\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("publicbucket did not answer on %s; log:\n%s", addr, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := vgw.Client().PutObject(t.Context(), &s3.PutObjectInput{
		Bucket: aws.String("magicads-demo"), Key: aws.String("images/gemini/a.png"),
		Body: strings.NewReader("img"), ContentType: aws.String(pngType),
	}); err != nil {
		t.Fatalf("the bucket was not created: %v", err)
	}
	resp, body := do(t, http.MethodGet, base+"/images/gemini/a.png", nil)
	if resp.StatusCode != 200 || string(body) != "img" || resp.Header.Get("Content-Type") != pngType {
		t.Fatalf("status %d body %q type %q", resp.StatusCode, body, resp.Header.Get("Content-Type"))
	}

	// A second instance on the same port fails with a clear message.
	err := run(t.Context(), []string{"--addr", addr, "--endpoint", vgw.Endpoint, "--bucket", "magicads-demo",
		"--access", vgw.AccessKey, "--secret", vgw.SecretKey}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "another server") {
		t.Fatalf("port taken: %v", err)
	}

	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop after cancel")
	}
	out := logs.String()
	for _, want := range []string{"created bucket", "publicbucket listening", "publicbucket stopped"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, vgw.SecretKey) {
		t.Error("log shows the secret")
	}
}

func TestFlags(t *testing.T) {
	ok := []string{"--endpoint", "http://127.0.0.1:1", "--bucket", "b", "--access", "a", "--secret", "s"}
	if _, err := parse(ok, io.Discard); err != nil {
		t.Fatalf("valid flags: %v", err)
	}
	cases := map[string][]string{
		"--endpoint is required": {"--bucket", "b", "--access", "a", "--secret", "s"},
		"--bucket is required":   {"--endpoint", "http://x", "--access", "a", "--secret", "s"},
		"--access is required":   {"--endpoint", "http://x", "--bucket", "b", "--secret", "s"},
		"--secret is required":   {"--endpoint", "http://x", "--bucket", "b", "--access", "a"},
		"must be an http(s) URL": append([]string{"--endpoint", "127.0.0.1:9000"}, ok[2:]...),
		"unexpected arguments":   append(append([]string{}, ok...), "extra"),
	}
	for want, args := range cases {
		if _, err := parse(args, io.Discard); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want an error containing %q", args, err, want)
		}
	}
	if _, err := parse([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestRunInRegion: --region signs for a bucket's real region (an
// S3-compatible provider's, e.g. us-east-1) instead of R2's auto, so the
// stand-in also serves a bucket of a server that refuses other regions.
func TestRunInRegion(t *testing.T) {
	vgw := s3test.StartVersityIn(t, "us-east-1")
	vgw.CreateBucket(t, testBucket)
	if _, err := vgw.Client().PutObject(t.Context(), &s3.PutObjectInput{
		Bucket: aws.String(testBucket), Key: aws.String("images/a.png"),
		Body: strings.NewReader("img"), ContentType: aws.String(pngType),
	}); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var logs plugintest.Logs
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, []string{"--addr", addr, "--endpoint", vgw.Endpoint, "--bucket", testBucket,
			"--access", vgw.AccessKey, "--secret", vgw.SecretKey, "--region", "us-east-1"}, &logs)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/images/a.png")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(body) != "img" {
				t.Fatalf("status %d body %q", resp.StatusCode, body)
			}
			break
		}
		select {
		case err := <-errc:
			t.Fatalf("run returned early: %v; log:\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("publicbucket did not answer on %s; log:\n%s", addr, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop after cancel")
	}
}
