package marketplace_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/host/marketplace"
	"github.com/magicads/r2storage/internal/plugintest"
	"github.com/magicads/r2storage/internal/s3test"
	"github.com/magicads/r2storage/internal/testdb"
	"github.com/magicads/r2storage/shared/conformance"
	"github.com/magicads/r2storage/shared/storage"
)

// todaysSDK is the commit whose SDK, plugin and bundle files (manifest.json,
// schema/settings.schema.json declaring enabled and delete_local, and
// migrations/*.sql) are what plugins in the field are built from before the
// host took ownership of those settings and shared/manifest existed.
const todaysSDK = "696bc3867425dc4f692b06dec85538f9c2c8620c"

// bundleAt returns the bundle files of the cloudflare-r2 plugin as they are
// at commit (manifest.json, schema/*.json and migrations/*.sql, what that
// commit's bundle embedded and its packaging command put in an archive),
// read with git from the repository's history, and the binary at the
// manifest's executable path for this platform. It fails the test, never
// skips it, when git cannot read the commit.
func bundleAt(t testing.TB, commit string, binary []byte) ([]file, map[string]any) {
	t.Helper()
	root := plugintest.ModuleRoot(t)
	gitShow := func(p string) []byte {
		out, err := exec.Command("git", "-C", root, "show", commit+":"+p).Output()
		if err != nil {
			t.Fatalf("git show %s:%s: %v (the test needs git and the repository's history)", commit[:7], p, err)
		}
		return out
	}
	list, err := exec.Command("git", "-C", root, "ls-tree", "-r", "--name-only", commit, "--", "manifest.json", "schema", "migrations").Output()
	if err != nil {
		t.Fatalf("git ls-tree %s: %v (the test needs git and the repository's history)", commit[:7], err)
	}
	var files []file
	var man map[string]any
	for _, p := range strings.Fields(string(list)) {
		keep := p == "manifest.json"
		if m, _ := path.Match("schema/*.json", p); m {
			keep = true
		}
		if m, _ := path.Match("migrations/*.sql", p); m {
			keep = true
		}
		if !keep {
			continue
		}
		data := gitShow(p)
		if p == "manifest.json" {
			if err := json.Unmarshal(data, &man); err != nil {
				t.Fatalf("manifest.json at %s: %v", commit[:7], err)
			}
		}
		files = append(files, file{Name: p, Mode: 0o644, Data: data})
	}
	if man == nil {
		t.Fatalf("no manifest.json at %s", commit[:7])
	}
	exes, _ := man["executables"].(map[string]any)
	exe, _ := exes[platform].(string)
	if exe == "" {
		t.Fatalf("the manifest at %s has no executable for %s", commit[:7], platform)
	}
	return append(files, file{Name: exe, Mode: 0o755, Data: binary}), man
}

// bundleFile returns the data of the file named name in files.
func bundleFile(t testing.TB, files []file, name string) []byte {
	t.Helper()
	for _, f := range files {
		if f.Name == name {
			return f.Data
		}
	}
	t.Fatalf("the bundle has no %q", name)
	return nil
}

// compatAPI is an admin's HTTP session with a host.
type compatAPI struct {
	t   testing.TB
	srv *httptest.Server
}

// do sends an admin request and decodes a JSON answer into out (if not
// nil); it returns the status and the raw body.
func (c compatAPI) do(method, p string, body, out any) (int, string) {
	c.t.Helper()
	var r io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		r = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, c.srv.URL+p, r)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, p, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			c.t.Fatalf("%s %s: %d %s: %v", method, p, resp.StatusCode, data, err)
		}
	}
	return resp.StatusCode, string(data)
}

// compatResult is a result as the API answers it.
type compatResult struct {
	ID, Path, Storage, URL string
}

// finalize posts a result (an image from a generator) through the API.
func (c compatAPI) finalize(data []byte, name string) compatResult {
	c.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.WriteField("kind", "images")
	mw.WriteField("generator", "gemini")
	fw, _ := mw.CreateFormFile("file", name)
	fw.Write(data)
	mw.Close()
	req, _ := http.NewRequest("POST", c.srv.URL+"/api/v1/results", &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r compatResult
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(body, &r) != nil || r.ID == "" {
		c.t.Fatalf("finalizing a result: %d %s", resp.StatusCode, body)
	}
	return r
}

// compatOffload finalizes a result (an image) through api and waits until it
// is offloaded: the inline upload may be cut on a loaded machine, then the
// result is answered local and the queue offloads it. It checks the bucket
// object, under the key prefix magicads, and the result's public URL.
func compatOffload(t testing.TB, api compatAPI, s3 *s3test.Server, bucket, publicURL, name string) compatResult {
	t.Helper()
	data := make([]byte, 64<<10)
	rand.Read(data)
	copy(data, "\x89PNG\r\n\x1a\n")
	r := api.finalize(data, name)
	deadline := time.Now().Add(60 * time.Second)
	for r.Storage != pluginID {
		if time.Now().After(deadline) {
			t.Fatalf("result %s was not offloaded within 60s: %+v; bucket %v", name, r, s3.Keys(t, bucket))
		}
		time.Sleep(50 * time.Millisecond)
		api.do("GET", "/api/v1/results/"+r.ID, nil, &r)
	}
	key := "magicads/" + r.Path
	if got := s3.GetObject(t, bucket, key); !bytes.Equal(got, data) {
		t.Fatalf("the bucket object %s differs from result %s", key, name)
	}
	if want := publicURL + "/" + key; r.URL != want {
		t.Fatalf("result %s URL %q, want %q", name, r.URL, want)
	}
	return r
}

// sorted sorts s in place and returns it.
func sorted(s []string) []string { slices.Sort(s); return s }

// TestPluginFromTodaysSDKInstalls (SQLite and PostgreSQL): the
// cloudflare-r2 plugin built from the pinned commit, packed with that
// commit's manifest, settings schema (which declares enabled and
// delete_local itself) and migrations, installs from the signed catalog
// through the admin API (download, checks, migrations, canary, launch), is
// configured through the settings API with enabled on, passes Test
// connection, becomes the Default Storage and offloads a finalized result
// to the bucket, and does again after a host restart; the installed binary
// then passes the current conformance suite over the plugin protocol with
// the same settings.
func TestPluginFromTodaysSDKInstalls(t *testing.T) {
	old := plugintest.BuildAt(t, todaysSDK, "./plugin/cmd/cloudflare-r2")
	oldBin := readFile(t, old)
	files, man := bundleAt(t, todaysSDK, oldBin)
	ver, _ := man["version"].(string)
	if ver == "" {
		t.Fatalf("the manifest at %s has no version", todaysSDK[:7])
	}
	// The point of the pin: its settings schema declares the settings the
	// host now owns.
	schemaPath, _ := man["settings_schema"].(string)
	oldSchema := bundleFile(t, files, schemaPath)
	var doc struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	if err := json.Unmarshal(oldSchema, &doc); err != nil || doc.Properties["enabled"] == nil || doc.Properties["delete_local"] == nil {
		t.Fatalf("the settings schema %s at %s does not declare enabled and delete_local (%v): not the pre-round bundle", schemaPath, todaysSDK[:7], err)
	}
	m := newMarket(t)
	m.publish(freeForExtended, version(ver, m.addArchive(pluginID, ver, tarGz(files), archiveOpts{})))

	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			compatInstallAndUse(t, d, m, ver, oldBin, schemaPath, oldSchema)
		})
	}
}

// compatInstallAndUse is one dialect's run of TestPluginFromTodaysSDKInstalls.
func compatInstallAndUse(t *testing.T, d dbmigrate.Dialect, m *market, ver string, oldBin []byte, schemaPath string, oldSchema []byte) {
	ctx := context.Background()
	s3 := s3test.StartVersity(t) // signs for R2's region, auto
	const bucket = "compat-media"
	s3.CreateBucket(t, bucket)
	const publicURL = "https://pub-compat.r2.dev"
	settings := map[string]any{
		"enabled": true, "delete_local": false,
		"access_key_id": s3.AccessKey, "secret_access_key": s3.SecretKey,
		"bucket": bucket, "endpoint": s3.Endpoint, "public_url": publicURL,
		"key_prefix": "magicads", "use_path_style": true,
	}

	h := newHost(t, d, m, marketplace.LicenseExtended)
	srv := httptest.NewServer(h.app.Handler())
	t.Cleanup(srv.Close)
	api := compatAPI{t: t, srv: srv}

	// Install as an admin does: the card's Install button's call.
	var installed struct {
		InstalledVersion string `json:"installed_version"`
	}
	if code, body := api.do("POST", "/api/v1/admin/plugins/"+pluginID+"/install", nil, &installed); code != http.StatusOK || installed.InstalledVersion != ver {
		t.Fatalf("installing the plugin built at %s: %d %s", todaysSDK[:7], code, body)
	}
	if st, err := dbmigrate.Version(ctx, h.db.DB, h.db.Dialect, dbmigrate.PluginTable(pluginID)); err != nil || !st.Applied {
		t.Fatalf("the plugin's migrations after install: %+v %v", st, err)
	}
	h.waitRunning()
	inst, ok := h.app.Providers.Installed(pluginID)
	if !ok {
		t.Fatal("no install record after install")
	}
	pluginsDir := filepath.Join(h.dataDir, "plugins")
	if rel, err := filepath.Rel(pluginsDir, inst.BinaryPath); err != nil || !filepath.IsLocal(rel) {
		t.Fatalf("installed binary %s is not under the plugins dir %s", inst.BinaryPath, pluginsDir)
	}
	if !bytes.Equal(readFile(t, inst.BinaryPath), oldBin) {
		t.Fatalf("the installed binary %s is not the one built at %s", inst.BinaryPath, todaysSDK[:7])
	}
	if got := readFile(t, filepath.Join(inst.Dir, filepath.FromSlash(schemaPath))); !bytes.Equal(got, oldSchema) {
		t.Fatalf("the installed settings schema is not the one of %s:\n%s", todaysSDK[:7], got)
	}

	// Configure through the settings API, then Test connection.
	if code, body := api.do("PUT", "/api/v1/admin/plugins/"+pluginID+"/settings", map[string]any{"values": settings}, nil); code != http.StatusOK {
		t.Fatalf("saving the settings (enabled on): %d %s", code, body)
	}
	var test struct {
		OK            bool
		Step, Message string
	}
	if code, body := api.do("POST", "/api/v1/admin/plugins/"+pluginID+"/test", map[string]any{"values": settings}, &test); code != http.StatusOK || !test.OK {
		t.Fatalf("Test connection: %d %s", code, body)
	}

	// Default Storage: the plugin must be an option, then chosen.
	var st struct {
		Default string
		Options []struct{ ID string }
	}
	api.do("GET", "/api/v1/admin/storage", nil, &st)
	var offered bool
	for _, o := range st.Options {
		offered = offered || o.ID == pluginID
	}
	if !offered {
		t.Fatalf("the configured, enabled plugin is not a Default Storage option: %+v", st)
	}
	if code, body := api.do("PUT", "/api/v1/admin/storage", map[string]string{"default": pluginID}, nil); code != http.StatusOK {
		t.Fatalf("choosing %s as Default Storage: %d %s", pluginID, code, body)
	}

	// A finalized result lands in the bucket under the key prefix.
	first := compatOffload(t, api, s3, bucket, publicURL, "compat.png")

	// The host restarted launches the recorded install again (its manifest
	// read by the current host), keeps it the Default Storage and offloads.
	h.restart()
	srv2 := httptest.NewServer(h.app.Handler())
	t.Cleanup(srv2.Close)
	api = compatAPI{t: t, srv: srv2}
	h.waitRunning()
	// Configure runs as the plugin starts: wait until it is usable again.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if api.do("GET", "/api/v1/admin/storage", nil, &st); st.Default == pluginID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Default Storage 30s after a restart: %+v, want %s", st, pluginID)
		}
		time.Sleep(50 * time.Millisecond)
	}
	second := compatOffload(t, api, s3, bucket, publicURL, "compat-after-restart.png")
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Get(srv2.URL + "/api/v1/results/" + first.ID + "/content")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != first.URL {
		t.Fatalf("content of the first result after a restart: %d → %q, want a redirect to %s", resp.StatusCode, resp.Header.Get("Location"), first.URL)
	}

	// The current suite against the installed binary, same settings. Cases
	// that do not apply to the plugin are skipped by the suite itself.
	t.Run("conformance", func(t *testing.T) {
		conformance.RunPlugin(t, inst.BinaryPath, storage.Settings(settings))
	})
	if keys, want := s3.Keys(t, bucket), []string{"magicads/" + first.Path, "magicads/" + second.Path}; !slices.Equal(keys, sorted(want)) {
		t.Errorf("after the suite the bucket holds %v, want only the two results %v", keys, want)
	}
}
