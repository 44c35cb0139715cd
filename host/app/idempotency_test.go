package app_test

import (
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/dbmigrate"
)

// listIDs lists the ids of every result (at most 500).
func (h *trustHost) listIDs(t *testing.T) []string {
	t.Helper()
	a := h.send("GET", "/api/v1/results?limit=500", "", nil)
	var page struct{ Results []resultBody }
	if a.code != http.StatusOK || json.Unmarshal([]byte(a.body), &page) != nil {
		t.Fatalf("listing results: %v", a)
	}
	var ids []string
	for _, r := range page.Results {
		ids = append(ids, r.ID)
	}
	return ids
}

func resultID(t *testing.T, a answer) string {
	t.Helper()
	var r resultBody
	if err := json.Unmarshal([]byte(a.body), &r); err != nil || r.ID == "" {
		t.Fatalf("not a result: %v", a)
	}
	return r.ID
}

// TestIdempotencyKey: finding 8 — retrying a POST after a timeout created a
// second result. Now a repeated Idempotency-Key (per caller) returns the
// first result, a concurrent duplicate gets 409, and a key whose first
// attempt was refused can be used again.
func TestIdempotencyKey(t *testing.T) {
	for _, d := range []dbmigrate.Dialect{dbmigrate.SQLite, dbmigrate.Postgres} {
		t.Run(string(d), func(t *testing.T) {
			h := startTrustHost(t, d, nil)
			key := []string{"Idempotency-Key", "upload-7f3c2a"}
			first := h.postPNG(key...)
			if first.code != http.StatusCreated {
				t.Fatalf("first POST with a key: %v", first)
			}
			id := resultID(t, first)
			again := h.postPNG(key...)
			if again.code != http.StatusOK || resultID(t, again) != id {
				t.Fatalf("the same key again: %v; want 200 with the first result %s", again, id)
			}
			if ids := h.listIDs(t); len(ids) != 1 {
				t.Fatalf("%d results after a repeated key, want 1: %v", len(ids), ids)
			}
			// Keys are per caller: the admin's same key is another upload.
			admin := h.postPNG("Idempotency-Key", key[1], "Authorization", "Bearer "+adminToken)
			if admin.code != http.StatusCreated || resultID(t, admin) == id {
				t.Fatalf("the same key from another caller: %v; want a new result", admin)
			}
			// No key: every POST is a new result, as before.
			if a, b := h.postPNG(), h.postPNG(); resultID(t, a) == resultID(t, b) {
				t.Fatal("two POSTs without a key returned one result")
			}
			// Bad keys are refused before anything is read.
			for name, bad := range map[string]string{"too long": strings.Repeat("k", 256), "not ASCII": "ключ"} {
				if a := h.postPNG("Idempotency-Key", bad); a.code != http.StatusBadRequest || !strings.Contains(a.body, "Idempotency-Key") {
					t.Errorf("%s key: %v; want 400 naming the header", name, a)
				}
			}
			// A refused first attempt does not use the key up.
			refused := []string{"Idempotency-Key", "upload-refused"}
			ct, body := multipartBody(field("kind", "images"), field("generator", "gemini"), file("a.svg", "", []byte("<svg xmlns='http://www.w3.org/2000/svg'/>")))
			if a := h.send("POST", "/api/v1/results", ct, body, refused...); a.code != http.StatusUnsupportedMediaType {
				t.Fatalf("an SVG: %v", a)
			}
			if a := h.postPNG(refused...); a.code != http.StatusCreated {
				t.Fatalf("the key of a refused upload, with a good file: %v", a)
			}

			// A duplicate while the first upload is still being read: 409.
			busy := []string{"Idempotency-Key", "upload-busy"}
			before := len(h.listIDs(t))
			pr, pw := io.Pipe()
			t.Cleanup(func() { pw.CloseWithError(io.ErrUnexpectedEOF) })
			mw := multipart.NewWriter(pw)
			slow := make(chan answer, 1)
			go func() { slow <- h.send("POST", "/api/v1/results", mw.FormDataContentType(), pr, busy...) }()
			mw.WriteField("kind", "images")
			mw.WriteField("generator", "gemini")
			fw, _ := mw.CreateFormFile("file", "a.png")
			fw.Write(pngBytes(64 << 10))
			waitFor(t, 10*time.Second, "the first upload to be on the results disk", func() bool {
				return len(findFiles(t, filepath.Join(h.dataDir, "results"), ".magicads-tmp")) > 0
			})
			dup := h.postPNG(busy...)
			if dup.code != http.StatusConflict || dup.retryAfter == "" || !strings.Contains(dup.body, "in progress") {
				t.Errorf("a duplicate while the first uploads: %v; want 409 in progress with Retry-After", dup)
			}
			fw.Write(pngBytes(1024))
			pw.CloseWithError(mw.Close())
			won := <-slow
			if won.code != http.StatusCreated {
				t.Fatalf("the first upload: %v", won)
			}
			if a := h.postPNG(busy...); a.code != http.StatusOK || resultID(t, a) != resultID(t, won) {
				t.Fatalf("the key once the first finished: %v; want its result %s", a, resultID(t, won))
			}
			if after := len(h.listIDs(t)); after != before+1 {
				t.Fatalf("%d results were created for one key, want 1", after-before)
			}
		})
	}
}
