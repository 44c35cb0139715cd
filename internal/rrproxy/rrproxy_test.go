package rrproxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestRoundRobinSkipsDownBackends: requests take the backends in turn, a
// backend that refuses connections is skipped (the request, body and all,
// reaches the next one), and the answer names its backend.
func TestRoundRobinSkipsDownBackends(t *testing.T) {
	var urls []string
	for _, name := range []string{"a", "b"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			io.WriteString(w, name+":"+string(body)+":"+r.Header.Get("X-Forwarded-Proto"))
		}))
		t.Cleanup(srv.Close)
		urls = append(urls, srv.URL)
	}
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close()
	p, err := New(urls[0], downURL, urls[1])
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(p)
	defer front.Close()
	seen := map[string]int{}
	for i := range 6 {
		resp, err := http.Post(front.URL+"/x", "text/plain", strings.NewReader("body"))
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got := string(data)
		if resp.StatusCode != 200 || !strings.HasSuffix(got, ":body:http") {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, got)
		}
		be := resp.Header.Get(BackendHeader)
		if be == downURL || (be != urls[0] && be != urls[1]) {
			t.Fatalf("request %d answered by %q", i, be)
		}
		seen[got[:1]]++
	}
	if seen["a"] == 0 || seen["b"] == 0 {
		t.Fatalf("backends used %v, want both", seen)
	}
	if _, err := New(); err == nil {
		t.Error("a proxy without backends")
	}
	if _, err := New("ftp://x"); err == nil {
		t.Error("a proxy to ftp://x")
	}
}
