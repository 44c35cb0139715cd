package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/magicads/r2storage/internal/testdb"
)

// TestOffloadLifecycle walks the seed's flow on SQLite and PostgreSQL with
// the real plugin binary and versitygw: offload on, delete_local off and on,
// Default Storage back to local, provider disabled, deletes.
func TestOffloadLifecycle(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			h := newHost(t, d)

			// Fresh install: nothing is offloaded.
			before := h.upload(pngBytes(1000), "before.png")
			if before.Storage != "local" || len(h.objects()) != 0 {
				t.Fatalf("a fresh install offloaded: %+v %v", before, h.objects())
			}
			var st struct {
				Default string
				Options []struct{ ID string }
			}
			h.do("GET", "/api/v1/admin/storage", nil, &st)
			if st.Default != "local" || len(st.Options) != 1 {
				t.Fatalf("storage before configuring: %+v", st)
			}

			// Test connection through the API: green.
			var test struct {
				OK            bool
				Step, Message string
			}
			if code := h.do("POST", "/api/v1/admin/plugins/"+pluginID+"/test", map[string]any{"values": h.settings()}, &test); code != 200 || !test.OK {
				t.Fatalf("test connection: %d %+v", code, test)
			}
			h.configure()
			h.do("GET", "/api/v1/admin/storage", nil, &st)
			if st.Default != pluginID || len(st.Options) != 2 || st.Options[1].ID != pluginID {
				t.Fatalf("storage after configuring: %+v", st)
			}

			// Offload on, delete_local off.
			data := pngBytes(200 << 10)
			r := h.upload(data, "cat.png")
			key := "magicads/" + r.Path
			if r.Storage != pluginID || !strings.HasPrefix(r.Path, "images/gemini/") || !hasKey(h.objects(), key) {
				t.Fatalf("not offloaded: %+v, bucket %v", r, h.objects())
			}
			if want := publicURL + "/" + key; r.URL != want {
				t.Fatalf("url %q, want %q", r.URL, want)
			}
			code, _, loc := h.content(r.ID)
			if code != http.StatusFound || loc != r.URL {
				t.Fatalf("content of an offloaded result: %d → %q", code, loc)
			}
			if _, err := os.Stat(filepath.Join(h.dataDir, "results", filepath.FromSlash(r.Path))); err != nil {
				t.Fatalf("delete_local off removed the local copy: %v", err)
			}
			got := h.s3.GetObject(t, bucket, key)
			if !bytes.Equal(got, data) {
				t.Fatal("the bucket object differs from the upload")
			}

			// delete_local on: the local copy goes once the upload is confirmed.
			h.configure("delete_local", true)
			r2 := h.upload(pngBytes(5000), "dog.png")
			if r2.Storage != pluginID {
				t.Fatalf("not offloaded: %+v", r2)
			}
			if _, err := os.Stat(filepath.Join(h.dataDir, "results", filepath.FromSlash(r2.Path))); !os.IsNotExist(err) {
				t.Fatalf("delete_local on kept the local copy: %v", err)
			}

			// Default back to local: new results local, old ones keep serving from R2.
			if code := h.do("PUT", "/api/v1/admin/storage", map[string]string{"default": "local"}, nil); code != 200 {
				t.Fatalf("default local: %d", code)
			}
			r3 := h.upload(pngBytes(100), "local.png")
			if r3.Storage != "local" {
				t.Fatalf("default local but stored in %s", r3.Storage)
			}
			if code, _, loc := h.content(r2.ID); code != http.StatusFound || loc != r2.URL {
				t.Fatalf("offloaded result no longer served after switching to local: %d %q", code, loc)
			}
			if !hasKey(h.objects(), "magicads/"+r2.Path) {
				t.Fatal("switching Default Storage deleted a bucket object")
			}

			// Provider disabled: it leaves the options and new results stay local.
			h.configure()
			if code := h.do("PUT", "/api/v1/admin/plugins/"+pluginID+"/settings", map[string]any{"values": h.settings("enabled", false)}, nil); code != 200 {
				t.Fatal("disabling failed")
			}
			h.do("GET", "/api/v1/admin/storage", nil, &st)
			if len(st.Options) != 1 {
				t.Fatalf("a disabled provider is still an option: %+v", st)
			}
			r4 := h.upload(pngBytes(100), "disabled.png")
			if r4.Storage != "local" {
				t.Fatalf("provider disabled but stored in %s", r4.Storage)
			}
			if code, _, loc := h.content(r.ID); code != http.StatusFound || loc != r.URL {
				t.Fatalf("offloaded result not served with the provider disabled: %d %q", code, loc)
			}

			// Local content is served with its type and Range support.
			req, _ := http.NewRequest("GET", h.srv.URL+"/api/v1/results/"+before.ID+"/content", nil)
			req.Header.Set("Range", "bytes=10-19")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusPartialContent || resp.Header.Get("Content-Type") != "image/png" || resp.ContentLength != 10 {
				t.Fatalf("range on local content: %d %q %d", resp.StatusCode, resp.Header.Get("Content-Type"), resp.ContentLength)
			}

			// Deleting an offloaded result deletes the bucket object, even with the provider disabled.
			if code := h.do("DELETE", "/api/v1/results/"+r.ID, nil, nil); code != http.StatusNoContent {
				t.Fatalf("delete: %d", code)
			}
			if code := h.do("GET", "/api/v1/results/"+r.ID, nil, nil); code != http.StatusNotFound {
				t.Fatalf("a deleted result is still listed: %d", code)
			}
			waitFor(t, 10e9, "the bucket object to be deleted", func() bool { return !hasKey(h.objects(), key) })
		})
	}
}

// TestBadInput: an unknown default → 422; no admin credentials → 401.
func TestBadInput(t *testing.T) {
	h := newHost(t, "sqlite")
	var e struct{ Error string }
	if code := h.do("PUT", "/api/v1/admin/storage", map[string]string{"default": "no-such-provider"}, &e); code != http.StatusUnprocessableEntity || e.Error == "" {
		t.Fatalf("unknown default: %d %+v", code, e)
	}
	// R2 installed but not configured is not an option either.
	if code := h.do("PUT", "/api/v1/admin/storage", map[string]string{"default": pluginID}, nil); code != http.StatusUnprocessableEntity {
		t.Fatalf("unconfigured provider as default: %d", code)
	}
	var fields struct {
		Error  string
		Fields map[string]string
	}
	if code := h.do("PUT", "/api/v1/admin/plugins/"+pluginID+"/settings", map[string]any{"values": map[string]any{"bucket": "Bad_Name"}}, &fields); code != http.StatusUnprocessableEntity || fields.Fields["bucket"] == "" {
		t.Fatalf("bad bucket: %d %+v", code, fields)
	}
	for _, path := range []string{"/api/v1/admin/storage", "/api/v1/admin/plugins", "/api/v1/admin/plugins/" + pluginID + "/settings"} {
		resp, err := http.Get(h.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without credentials: %d", path, resp.StatusCode)
		}
	}
	_ = context.Background
}

// TestUninstallKeepsOffloadedResults: uninstalling the Default Storage
// provider sends new results to local; offloaded results keep serving from
// their public URLs and nothing in the bucket is deleted.
func TestUninstallKeepsOffloadedResults(t *testing.T) {
	h := newHost(t, "sqlite")
	h.configure()
	r := h.upload(pngBytes(2000), "kept.png")
	if r.Storage != pluginID {
		t.Fatalf("not offloaded: %+v", r)
	}
	pid := h.pluginPid()
	if err := h.app.Market.Uninstall(context.Background(), pluginID); err != nil {
		t.Fatal(err)
	}
	var st struct{ Default string }
	h.do("GET", "/api/v1/admin/storage", nil, &st)
	if st.Default != "local" {
		t.Fatalf("default after uninstalling it: %q", st.Default)
	}
	if code, _, loc := h.content(r.ID); code != http.StatusFound || loc != r.URL {
		t.Fatalf("offloaded result after uninstall: %d %q", code, loc)
	}
	if !hasKey(h.objects(), "magicads/"+r.Path) {
		t.Fatal("uninstall deleted a bucket object")
	}
	if r2 := h.upload(pngBytes(100), "after.png"); r2.Storage != "local" {
		t.Fatalf("new result after uninstall stored in %s", r2.Storage)
	}
	waitFor(t, 10*time.Second, "the plugin process to exit", func() bool { return syscall.Kill(pid, 0) != nil })
}

// TestUploadFieldsInAnyOrder: api.md lists the file first; kind and
// generator may also come after it.
func TestUploadFieldsInAnyOrder(t *testing.T) {
	h := newHost(t, "sqlite")
	for _, fileFirst := range []bool{true, false} {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		if !fileFirst {
			mw.WriteField("kind", "images")
			mw.WriteField("generator", "gemini")
		}
		fw, _ := mw.CreateFormFile("file", "x.png")
		data := pngBytes(3000)
		fw.Write(data)
		if fileFirst {
			mw.WriteField("kind", "images")
			mw.WriteField("generator", "gemini")
		}
		mw.Close()
		resp, err := h.postForm(mw.FormDataContentType(), &buf)
		if err != nil {
			t.Fatal(err)
		}
		var r resultBody
		json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if resp.StatusCode != 201 || r.Size != 3000 || !strings.HasPrefix(r.Path, "images/gemini/") {
			t.Fatalf("file first=%v: %d %+v", fileFirst, resp.StatusCode, r)
		}
		h.readable(r, data)
	}
}
