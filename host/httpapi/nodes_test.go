package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/magicads/r2storage/host/localstore"
	"github.com/magicads/r2storage/host/results"
	"github.com/magicads/r2storage/internal/testdb"
)

// ownerLog records the requests a node's API received.
type ownerLog struct {
	mu   sync.Mutex
	reqs []http.Header
}

func (l *ownerLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		l.reqs = append(l.reqs, r.Header.Clone())
		l.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (l *ownerLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.reqs)
}

func (l *ownerLog) last() http.Header {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reqs[len(l.reqs)-1]
}

// TestContentThroughTheOwnerNode: the content of a local result held in
// another node's results folder is served through that node while it is
// live (Range kept), and answered 503 with Retry-After while it is not;
// never 404, and a request already forwarded is not forwarded again.
func TestContentThroughTheOwnerNode(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			db := testdb.Open(t, d)
			localA, err := localstore.New(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			localB, err := localstore.New(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			nodeA := results.New(db.DB, localA, nil, results.Options{NodeID: "node-a"})
			nodeB := results.New(db.DB, localB, nil, results.Options{NodeID: "node-b"})
			data := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte("0123456789"), 100)...)
			res, err := nodeA.Finalize(context.Background(), results.Upload{Kind: results.KindImages, Generator: "gemini", ContentType: "image/png"}, bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			seen := &ownerLog{}
			owner := httptest.NewServer(seen.wrap(New(nodeA, nil, nil, Options{})))
			defer owner.Close()
			var mu sync.Mutex
			live, base := true, owner.URL
			a := New(nodeB, nil, nil, Options{NodeURL: func(_ context.Context, node string) (string, bool, error) {
				mu.Lock()
				defer mu.Unlock()
				if node != "node-a" {
					return "", false, nil
				}
				return base, live, nil
			}})
			path := "/api/v1/results/" + res.ID + "/content"
			get := func(method string, hdr map[string]string) *httptest.ResponseRecorder {
				t.Helper()
				req := httptest.NewRequest(method, path, nil)
				for k, v := range hdr {
					req.Header.Set(k, v)
				}
				rec := httptest.NewRecorder()
				a.ServeHTTP(rec, req)
				if method == http.MethodGet {
					checkAnswer(t, "GET /api/v1/results/{id}/content", req, rec.Code, rec.Header(), rec.Body.Bytes())
				}
				return rec
			}
			// The owner is live: the bytes come through it.
			rec := get(http.MethodGet, map[string]string{"Cookie": "magicads_session=secret", "Authorization": "Bearer secret"})
			if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), data) || rec.Header().Get("Content-Type") != "image/png" {
				t.Fatalf("GET through node-b: %d %q, %d bytes", rec.Code, rec.Header().Get("Content-Type"), rec.Body.Len())
			}
			if rec.Header().Get("Content-Security-Policy") == "" || rec.Header().Get("Content-Disposition") == "" {
				t.Fatalf("GET through node-b lacks the owner's headers: %v", rec.Header())
			}
			if h := seen.last(); h.Get("X-Magicads-Forwarded") != "1" || h.Get("Cookie") != "" || h.Get("Authorization") != "" {
				t.Fatalf("the owner got headers %v; want X-Magicads-Forwarded and no credentials", h)
			}
			rec = get(http.MethodGet, map[string]string{"Range": "bytes=10-19"})
			if rec.Code != http.StatusPartialContent || !bytes.Equal(rec.Body.Bytes(), data[10:20]) || rec.Header().Get("Content-Range") != "bytes 10-19/1008" {
				t.Fatalf("Range through node-b: %d %q %q", rec.Code, rec.Header().Get("Content-Range"), rec.Body.Bytes())
			}
			rec = get(http.MethodHead, nil)
			if rec.Code != http.StatusOK || rec.Body.Len() != 0 || rec.Header().Get("Content-Length") != "1008" {
				t.Fatalf("HEAD through node-b: %d, %d bytes, length %q", rec.Code, rec.Body.Len(), rec.Header().Get("Content-Length"))
			}
			// A request already forwarded is not forwarded again.
			before := seen.count()
			rec = get(http.MethodGet, map[string]string{"X-Magicads-Forwarded": "1"})
			wantUnavailable(t, rec, "node-a")
			if seen.count() != before {
				t.Fatal("a forwarded request was forwarded again")
			}
			// The owner is down, or does not answer.
			mu.Lock()
			live = false
			mu.Unlock()
			wantUnavailable(t, get(http.MethodGet, nil), "node-a")
			mu.Lock()
			live = true
			mu.Unlock()
			owner.Close()
			wantUnavailable(t, get(http.MethodGet, nil), "node-a")
			// A single node (no node directory) never answers 404 either.
			single := New(nodeB, nil, nil, Options{})
			req := httptest.NewRequest(http.MethodGet, path, nil)
			rec = httptest.NewRecorder()
			single.ServeHTTP(rec, req)
			wantUnavailable(t, rec, "node-a")
			// The owner serves it from its disk.
			req = httptest.NewRequest(http.MethodGet, path, nil)
			req.Header.Set("X-Magicads-Forwarded", "1")
			rec = httptest.NewRecorder()
			New(nodeA, nil, nil, Options{}).ServeHTTP(rec, req)
			if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), data) {
				t.Fatalf("GET on node-a: %d, %d bytes", rec.Code, rec.Body.Len())
			}
		})
	}
}

// wantUnavailable checks a 503 with Retry-After whose error names node.
func wantUnavailable(t *testing.T, rec *httptest.ResponseRecorder, node string) {
	t.Helper()
	var out map[string]string
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "5" || !strings.Contains(out["error"], node) {
		t.Fatalf("got %d Retry-After %q %q; want 503, Retry-After 5 and an error naming %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body, node)
	}
}
