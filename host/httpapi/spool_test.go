package httpapi

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/host/localstore"
	"github.com/magicads/r2storage/host/results"
	"github.com/magicads/r2storage/internal/testdb"
)

// TestNoSpoolDirNeverUsesTheSystemTempDir: an API without a spool folder
// refuses a file sent before its fields instead of spooling it into the
// system temp dir, where nothing would clean up after a crash.
func TestNoSpoolDirNeverUsesTheSystemTempDir(t *testing.T) {
	sysTmp := t.TempDir()
	t.Setenv("TMPDIR", sysTmp)
	db := testdb.Open(t, dbmigrate.SQLite)
	local, err := localstore.New(filepath.Join(t.TempDir(), "results"))
	if err != nil {
		t.Fatal(err)
	}
	svc := results.New(db.DB, local, nil, results.Options{})
	a := New(svc, nil, nil, Options{ServiceToken: "svc"})
	ct, body := seedForm([3]string{"file", "a.png", "\x89PNG\r\n\x1a\nrest of the image"}, [3]string{"kind", "", "images"}, [3]string{"generator", "", "gemini"})
	req := httptest.NewRequest("POST", "/api/v1/results", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer svc")
	req.Header.Set("Content-Type", ct)
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, req)
	if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), "spool") {
		t.Fatalf("a file-first upload without a spool folder: %d %s, want 500 naming the missing spool folder", rec.Code, rec.Body)
	}
	// The same form with its fields first needs no spool.
	ct, body = seedForm([3]string{"kind", "", "images"}, [3]string{"generator", "", "gemini"}, [3]string{"file", "a.png", "\x89PNG\r\n\x1a\nrest of the image"})
	req = httptest.NewRequest("POST", "/api/v1/results", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer svc")
	req.Header.Set("Content-Type", ct)
	rec = httptest.NewRecorder()
	a.ServeHTTP(rec, req)
	if rec.Code != http.StatusCreated {
		t.Fatalf("a fields-first upload: %d %s", rec.Code, rec.Body)
	}
	if left, _ := os.ReadDir(sysTmp); len(left) > 0 {
		t.Fatalf("the system temp dir got %v", left)
	}
}
