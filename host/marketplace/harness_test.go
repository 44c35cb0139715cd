package marketplace_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/app"
	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/host/marketplace"
	"github.com/magicads/r2storage/host/pluginrt"
	"github.com/magicads/r2storage/internal/markettest"
	"github.com/magicads/r2storage/internal/plugintest"
	"github.com/magicads/r2storage/internal/testdb"
	"github.com/magicads/r2storage/shared/catalog"
)

const (
	pluginID   = "cloudflare-r2"
	adminToken = "market-test-token"
)

var platform = runtime.GOOS + "/" + runtime.GOARCH

var (
	bin100 plugintest.Builder                                                         // reports 1.0.0 (the manifest's)
	bin110 = plugintest.Builder{Flags: []string{"-ldflags", "-X main.version=1.1.0"}} // reports 1.1.0
)

func TestMain(m *testing.M) {
	code := m.Run()
	bin100.Cleanup()
	bin110.Cleanup()
	os.Exit(code)
}

// market is a loopback marketplace serving a signed catalog.
type market struct {
	t     testing.TB
	priv  ed25519.PrivateKey
	pub   ed25519.PublicKey
	mu    sync.Mutex
	files map[string][]byte
	srv   *httptest.Server
	// serial is the highest serial published so far.
	serial int64
	// served counts the requests for each file other than the index.
	served map[string]int
}

func newMarket(t testing.TB) *market {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	m := &market{t: t, priv: priv, pub: pub, files: map[string][]byte{}, served: map[string]int{}}
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/")
		m.mu.Lock()
		data, ok := m.files[name]
		if ok && !strings.HasPrefix(name, "index.json") {
			m.served[name]++
		}
		m.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(data)
	}))
	t.Cleanup(m.srv.Close)
	return m
}

func (m *market) indexURL() string { return m.srv.URL + "/index.json" }

// downloads is how many archives the market served so far.
func (m *market) downloads() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, c := range m.served {
		n += c
	}
	return n
}

// file, bundle and tarGz are the shared archive builders.
type file = markettest.File

var (
	bundle = markettest.Bundle
	tarGz  = markettest.TarGz
)

// archiveOpts bends an archive entry of the catalog for hostile cases.
type archiveOpts struct {
	sha256    string // overrides the listed digest
	signature string // overrides the signature ("" keeps the real one)
	unsigned  bool
	signer    ed25519.PrivateKey
}

// addArchive stores data and returns its signed catalog entry.
func (m *market) addArchive(id, version string, data []byte, o archiveOpts) catalog.Archive {
	sum := sha256.Sum256(data)
	name := id + "_" + version + "_" + strings.ReplaceAll(platform, "/", "_") + "_" + hex.EncodeToString(sum[:4]) + ".tar.gz"
	m.mu.Lock()
	m.files[name] = data
	m.mu.Unlock()
	a := catalog.Archive{URL: name, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
	signer := m.priv
	if o.signer != nil {
		signer = o.signer
	}
	sig, err := catalog.SignArchive(signer, id, version, platform, a.SHA256)
	if err != nil {
		m.t.Fatal(err)
	}
	a.Signature = sig
	if o.sha256 != "" {
		a.SHA256 = o.sha256
	}
	if o.signature != "" {
		a.Signature = o.signature
	}
	if o.unsigned {
		a.Signature = ""
	}
	return a
}

// indexOpts are the freshness fields of a published index.
type indexOpts struct {
	serial      int64     // 0: one more than the last published serial
	expires     time.Time // zero: an hour from now
	omitSerial  bool      // publish an index without a serial
	omitExpires bool      // publish an index without an expiry
}

// publish writes and signs index.json with one plugin and the given
// versions, under the next serial and valid for an hour.
func (m *market) publish(pricing catalog.Pricing, versions ...catalog.Version) {
	m.publishWith(indexOpts{}, pricing, versions...)
}

// publishWith is publish with the index's serial and expiry chosen (or
// left out). It returns the serial it published.
func (m *market) publishWith(o indexOpts, pricing catalog.Pricing, versions ...catalog.Version) int64 {
	idx := catalog.Index{SchemaVersion: 1, Plugins: []catalog.Plugin{{
		ID: pluginID, Name: "Cloudflare R2 Storage", Description: "Offload results to R2.", Kind: "storage-provider",
		Pricing: pricing, CheckoutURL: m.srv.URL + "/checkout/" + pluginID, Versions: versions,
	}}}
	raw, err := json.Marshal(idx)
	if err != nil {
		m.t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		m.t.Fatal(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if o.serial == 0 {
		o.serial = m.serial + 1
	}
	m.serial = max(m.serial, o.serial)
	if o.expires.IsZero() {
		o.expires = time.Now().Add(time.Hour)
	}
	doc["serial"], doc["expires"] = o.serial, o.expires.UTC().Format(time.RFC3339)
	if o.omitSerial {
		delete(doc, "serial")
	}
	if o.omitExpires {
		delete(doc, "expires")
	}
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		m.t.Fatal(err)
	}
	m.files["index.json"] = data
	sig, err := catalog.SignIndex(m.priv, data)
	if err != nil {
		m.t.Fatal(err)
	}
	m.files["index.json.sig"] = sig
	return o.serial
}

func version(v string, a catalog.Archive) catalog.Version {
	return catalog.Version{Version: v, MinHostVersion: "1.0.0", ProtocolVersions: []int{1}, Archives: map[string]catalog.Archive{platform: a}}
}

var (
	freeForExtended = catalog.Pricing{Model: "paid", Price: &catalog.Price{Amount: "29.00", Currency: "USD"}, FreeForExtendedLicense: true}
	free            = catalog.Pricing{Model: "free"}
)

// host is a host with a marketplace pointed at m.
type host struct {
	t       testing.TB
	app     *app.App
	dataDir string
	db      *testdb.DB
	// m, license, key and prevKeys are what restart starts the host with again.
	m        *market
	license  string
	key      string
	prevKeys string
	// nodeID is the node's --node-id ("" for the one in its data dir);
	// cfg, when set, adjusts the app's configuration before it starts.
	nodeID string
	cfg    func(*app.Config)
}

func newHost(t testing.TB, d dbmigrate.Dialect, m *market, license string) *host {
	t.Helper()
	return startHost(t, testdb.Open(t, d), t.TempDir(), m, license)
}

// testAppKey is the APP_KEY of every test host, so a host restarted on the
// same database, or a second node on it, reads what the first one wrote.
var testAppKey = newAppKey()

func newAppKey() string { return "base64:" + base64.StdEncoding.EncodeToString(randBytes(32)) }

// startHost starts a host on db and dataDir (a restart, or another node,
// when they are shared) with a marketplace pointed at m.
func startHost(t testing.TB, db *testdb.DB, dataDir string, m *market, license string) *host {
	t.Helper()
	h := &host{t: t, dataDir: dataDir, db: db, m: m, license: license, key: testAppKey}
	h.open()
	return h
}

// open starts the host on its data dir and database.
func (h *host) open() {
	h.t.Helper()
	cfg := app.Config{
		DataDir: h.dataDir, NodeID: h.nodeID, DB: h.db.DSN, AppKey: h.key, PreviousAppKeys: h.prevKeys,
		Logger: slog.New(slog.DiscardHandler), CatalogURL: h.m.indexURL(), License: h.license, AdminToken: adminToken,
		// Not stdout: a generated password printed there broke the
		// benchmark lines scripts/bench parses.
		AdminPasswordOut: io.Discard,
		Marketplace:      marketplace.Config{TrustedKeys: []ed25519.PublicKey{h.m.pub}, CanaryTimeout: 3 * time.Second},
		Runtime:          pluginrt.Options{HealthInterval: 500 * time.Millisecond},
	}
	if h.cfg != nil {
		h.cfg(&cfg)
	}
	a, err := app.New(context.Background(), cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	h.app = a
	h.t.Cleanup(func() { h.closeApp(a) })
}

// restart stops the host (its plugins too) and starts it again on the same
// data dir and database, as a host process restart would.
func (h *host) restart() {
	h.t.Helper()
	h.closeApp(h.app)
	h.open()
}

func (h *host) closeApp(a *app.App) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a.Close(ctx)
}

// close stops the host (idempotent).
func (h *host) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h.app.Close(ctx)
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func readFile(t testing.TB, p string) []byte {
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// pluginsDirEntries lists what the plugins dir holds, ignoring an empty staging dir.
func (h *host) pluginsDirEntries() []string {
	var out []string
	root := filepath.Join(h.dataDir, "plugins")
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root || (d.IsDir() && filepath.Base(p) == ".staging") {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		out = append(out, rel)
		return nil
	})
	return out
}

// childPids lists this test process's child processes.
func childPids() []string {
	var out []string
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, task := range tasks {
		data, _ := os.ReadFile("/proc/self/task/" + task.Name() + "/children")
		out = append(out, strings.Fields(string(data))...)
	}
	return out
}
