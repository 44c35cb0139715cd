package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"path/filepath"
	"testing"

	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/host/localstore"
	"github.com/magicads/r2storage/host/media"
	"github.com/magicads/r2storage/host/results"
	"github.com/magicads/r2storage/internal/testdb"
)

// seedForm builds a results form: text fields then parts as given.
func seedForm(parts ...[3]string) (string, []byte) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.SetBoundary("fuzzboundary")
	for _, p := range parts { // name, filename, content
		h := textproto.MIMEHeader{}
		cd := `form-data; name="` + p[0] + `"`
		if p[1] != "" {
			cd += `; filename="` + p[1] + `"`
		}
		h.Set("Content-Disposition", cd)
		w, _ := mw.CreatePart(h)
		w.Write([]byte(p[2]))
	}
	mw.Close()
	return mw.FormDataContentType(), buf.Bytes()
}

// FuzzResultsUpload feeds arbitrary bodies to POST /api/v1/results: the
// handler never panics or answers 500, every answer is one of the documented
// ones, a created result is an accepted media type whose local file exists,
// and no spool file is left behind.
func FuzzResultsUpload(f *testing.F) {
	png := "\x89PNG\r\n\x1a\nrest of the image"
	for _, parts := range [][][3]string{
		{{"kind", "", "images"}, {"generator", "", "gemini"}, {"file", "a.png", png}},
		{{"file", "a.png", png}, {"kind", "", "images"}, {"generator", "", "gemini"}, {"owner", "", "user-1"}},
		{{"kind", "", "images"}, {"generator", "", "gemini"}, {"file", "a.png", png}, {"owner", "", "u"}},
		{{"kind", "", "images"}, {"generator", "", "gemini"}, {"file", "a.svg", "<svg onload=alert(1)>"}},
		{{"kind", "", "images"}, {"kind", "", "images"}, {"file", "a.png", png}},
		{{"junk", "", "x"}},
		{{"kind", "", "images"}, {"generator", "", "gemini"}, {"file", "a.png", png}, {"file", "b.png", png}},
		{{"kind", "", "videos"}, {"generator", "", "veo"}, {"file", "a.mp4", "\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"}},
	} {
		_, body := seedForm(parts...)
		f.Add(body, "fuzzboundary")
	}
	f.Add([]byte("--fuzzboundary\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n\x89PNG"), "fuzzboundary")
	f.Add([]byte{}, "")

	db := testdb.Open(f, dbmigrate.SQLite)
	dir := f.TempDir()
	local, err := localstore.New(filepath.Join(dir, "results"))
	if err != nil {
		f.Fatal(err)
	}
	spool := filepath.Join(dir, "spool")
	os.MkdirAll(spool, 0o700)
	svc := results.New(db.DB, local, nil, results.Options{Logger: nil})
	a := New(svc, nil, nil, Options{ServiceToken: "svc", SpoolDir: spool, Limits: Limits{MaxResultBytes: 1 << 16}})

	f.Fuzz(func(t *testing.T, body []byte, boundary string) {
		req := httptest.NewRequest("POST", "/api/v1/results", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer svc")
		req.Header.Set("Content-Type", "multipart/form-data; boundary="+boundary)
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusCreated:
			var r struct{ ID, Path string }
			if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
				t.Fatalf("201 with %q: %v", rec.Body, err)
			}
			res, err := svc.Get(context.Background(), r.ID)
			if err != nil {
				t.Fatalf("created %s but: %v", r.ID, err)
			}
			if _, ok := media.Accepted(res.ContentType); !ok {
				t.Fatalf("created a %s result", res.ContentType)
			}
			if _, err := os.Stat(filepath.Join(dir, "results", filepath.FromSlash(res.Path))); err != nil {
				t.Fatalf("created without a local file: %v", err)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
		default:
			t.Fatalf("answer %d %s", rec.Code, rec.Body)
		}
		if left, _ := os.ReadDir(spool); len(left) > 0 {
			t.Fatalf("spool files left: %v", left)
		}
	})
}
