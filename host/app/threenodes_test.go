package app_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/internal/markettest"
	"github.com/magicads/r2storage/internal/rrproxy"
	"github.com/magicads/r2storage/internal/s3test"
	"github.com/magicads/r2storage/internal/testdb"
)

// nodeRig is several `magicads serve` processes on one PostgreSQL
// database, each with its own data dir and node id, behind a round-robin
// proxy, with a signed file:// catalog offering the R2 plugin and a
// versitygw bucket.
type nodeRig struct {
	t        *testing.T
	s3       *s3test.Server
	dsn, key string
	cat      *markettest.Catalog
	nodes    []*rigNode
	proxy    *httptest.Server
}

// rigNode is one node of a nodeRig.
type rigNode struct {
	id, dataDir, addr string
	proc              *hostProc
}

func (n *rigNode) url() string { return "http://" + n.addr }

// newNodeRig starts n nodes and the proxy in front of them.
func newNodeRig(t *testing.T, n int) *nodeRig {
	t.Helper()
	r := &nodeRig{t: t, s3: s3test.StartVersity(t), dsn: testdb.Open(t, dbmigrate.Postgres).DSN, key: appKey()}
	r.s3.CreateBucket(t, bucket)
	bin, err := os.ReadFile(pluginBin.Build(t, "./plugin/cmd/cloudflare-r2"))
	if err != nil {
		t.Fatal(err)
	}
	r.cat = markettest.NewCatalog(t)
	r.cat.Publish(t, map[string][]markettest.File{"1.0.0": markettest.Bundle(t, "1.0.0", bin, nil)})
	var urls []string
	for i := range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		node := &rigNode{id: fmt.Sprintf("node-%d", i+1), dataDir: t.TempDir(), addr: l.Addr().String()}
		l.Close()
		r.nodes = append(r.nodes, node)
		r.start(node)
		urls = append(urls, node.url())
	}
	p, err := rrproxy.New(urls...)
	if err != nil {
		t.Fatal(err)
	}
	r.proxy = httptest.NewServer(p)
	t.Cleanup(r.proxy.Close)
	return r
}

// start starts node's host process and waits until it answers /healthz.
func (r *nodeRig) start(node *rigNode) {
	t := r.t
	t.Helper()
	p := runHost(t, node.id, node.url(), []string{"serve", "--addr", node.addr, "--data-dir", node.dataDir, "--db", r.dsn,
		"--node-id", node.id, "--advertise-url", node.url(), "--trusted-proxies", "127.0.0.1",
		"--catalog", r.cat.IndexURL(), "--trusted-key", r.cat.PublicKeyFile()}, "APP_KEY="+r.key)
	node.proc = p
	cmd := p.cmd
	waitFor(t, 30*time.Second, node.id+" to answer /healthz", func() bool {
		select {
		case <-p.exited:
			t.Fatalf("%s exited: %v\n%s", node.id, cmd.ProcessState, p.logs)
		default:
		}
		resp, err := http.Get(node.url() + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// call sends an admin API call to base (the proxy or one node) and
// decodes a JSON answer into out; it returns the status and the node
// that answered (through the proxy).
func (r *nodeRig) call(base, method, path string, body, out any) (int, string) {
	r.t.Helper()
	var rd io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, base+path, rd)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := noRedirect.Do(req)
	if err != nil {
		r.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			r.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, data, err)
		}
	}
	if resp.StatusCode >= 300 && out != nil {
		r.t.Logf("%s %s: %d %s", method, path, resp.StatusCode, data)
	}
	return resp.StatusCode, resp.Header.Get(rrproxy.BackendHeader)
}

// cluster is GET /api/v1/admin/cluster through the proxy.
func (r *nodeRig) cluster() clusterJSON {
	var v clusterJSON
	if code, _ := r.call(r.proxy.URL, "GET", "/api/v1/admin/cluster", nil, &v); code != 200 {
		r.t.Fatalf("GET /api/v1/admin/cluster: %d", code)
	}
	return v
}

// waitPluginEverywhere waits until the cluster view shows every node
// live and running the plugin's 1.0.0.
func (r *nodeRig) waitPluginEverywhere() { r.waitVersionEverywhere("1.0.0") }

// waitVersionEverywhere waits until the cluster view shows every node
// live and running the plugin's version.
func (r *nodeRig) waitVersionEverywhere(version string) {
	r.t.Helper()
	waitFor(r.t, 60*time.Second, "every node to run the plugin's "+version, func() bool {
		v := r.cluster()
		if len(v.Nodes) != len(r.nodes) {
			return false
		}
		for _, n := range v.Nodes {
			if !n.Live || len(n.Plugins) != 1 || n.Plugins[0].Version != version || n.Plugins[0].State != "running" {
				return false
			}
		}
		return true
	})
}

// installR2 installs the plugin through the proxy and saves settings
// keeping local copies, and waits until every node offers R2.
func (r *nodeRig) installR2() {
	t := r.t
	t.Helper()
	if code, _ := r.call(r.proxy.URL, "POST", "/api/v1/admin/plugins/"+pluginID+"/install", nil, nil); code != 200 {
		t.Fatalf("install: %d", code)
	}
	r.waitPluginEverywhere()
	if code, _ := r.call(r.proxy.URL, "PUT", "/api/v1/admin/plugins/"+pluginID+"/settings", map[string]any{"values": r.r2Settings("delete_local", false)}, nil); code != 200 {
		t.Fatalf("settings: %d", code)
	}
	waitFor(t, 30*time.Second, "every node to offer R2", func() bool {
		for _, n := range r.nodes {
			if !r.offers(n) {
				return false
			}
		}
		return true
	})
}

// useR2 makes R2 the Default Storage through the proxy.
func (r *nodeRig) useR2() {
	r.t.Helper()
	if code, _ := r.call(r.proxy.URL, "PUT", "/api/v1/admin/storage", map[string]string{"default": pluginID}, nil); code != 200 {
		r.t.Errorf("Default Storage: %d", code)
	}
}

// offers reports whether node offers R2 as Default Storage: enabled,
// fully configured and running there with the settings it was given.
func (r *nodeRig) offers(node *rigNode) bool {
	var st struct{ Options []struct{ ID string } }
	if code, _ := r.call(node.url(), "GET", "/api/v1/admin/storage", nil, &st); code != 200 {
		return false
	}
	for _, o := range st.Options {
		if o.ID == pluginID {
			return true
		}
	}
	return false
}

// r2Settings are complete R2 settings for the rig's versitygw, with
// Delete local copy on.
func (r *nodeRig) r2Settings(extra ...any) map[string]any {
	return r2SettingsFor(r.s3, append([]any{"delete_local", true}, extra...)...)
}

// postResult finalizes a result through base with the studios' token.
func postResult(base string, data []byte) (resultBody, int, error) {
	form, contentType := resultForm(data, "r.png")
	req, _ := http.NewRequest("POST", base+"/api/v1/results", form)
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+serviceToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return resultBody{}, 0, err
	}
	defer resp.Body.Close()
	var rb resultBody
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusCreated {
		err = json.Unmarshal(body, &rb)
	}
	return rb, resp.StatusCode, err
}

// TestThreeNodesGoLiveThroughAProxy: three host processes on one
// PostgreSQL database, each with its own data dir, behind a round-robin
// proxy: the whole go-live flow through the proxy (install, settings,
// test, Default Storage, results with Delete local copy, uninstall);
// every node runs the plugin; a settings change is live on all three
// within 2 s; a session made on one node works on the others.
func TestThreeNodesGoLiveThroughAProxy(t *testing.T) {
	r := newNodeRig(t, 3)
	px := r.proxy.URL

	// Install through the proxy: every node runs it.
	var inst struct {
		InstalledVersion string `json:"installed_version"`
	}
	if code, node := r.call(px, "POST", "/api/v1/admin/plugins/"+pluginID+"/install", nil, &inst); code != 200 || inst.InstalledVersion != "1.0.0" {
		t.Fatalf("install through the proxy (node %s): %d %+v", node, code, inst)
	}
	r.waitPluginEverywhere()

	// Settings and the connection test through the proxy: live on every
	// node within 2 s (each node offers R2 only once its own plugin
	// accepted the settings).
	saved := time.Now()
	var tr struct {
		OK      bool
		Message string
	}
	if code, node := r.call(px, "POST", "/api/v1/admin/plugins/"+pluginID+"/test", map[string]any{"values": r.r2Settings()}, &tr); code != 200 || !tr.OK {
		t.Fatalf("test connection through the proxy (node %s): %d %+v", node, code, tr)
	}
	for !(r.offers(r.nodes[0]) && r.offers(r.nodes[1]) && r.offers(r.nodes[2])) {
		if time.Since(saved) > 2*time.Second {
			t.Fatalf("the settings saved through the proxy are not live on every node 2 s later: %v %v %v", r.offers(r.nodes[0]), r.offers(r.nodes[1]), r.offers(r.nodes[2]))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("settings live on all three nodes %v after the save", time.Since(saved).Round(time.Millisecond))
	if code, node := r.call(px, "PUT", "/api/v1/admin/storage", map[string]string{"default": pluginID}, nil); code != 200 {
		t.Fatalf("Default Storage through the proxy (node %s): %d", node, code)
	}

	// Results through the proxy, on every node: offloaded, local copy
	// removed, served from the public URL, the object's bytes right.
	type posted struct {
		rb   resultBody
		data []byte
	}
	var all []posted
	for i := range 12 {
		data := pngBytes(4096 + i)
		rb, code, err := postResult(px, data)
		if err != nil || code != http.StatusCreated {
			t.Fatalf("result %d through the proxy: %d %v", i, code, err)
		}
		all = append(all, posted{rb, data})
	}
	h := &host{t: t, srv: &httptest.Server{URL: px}, s3: r.s3}
	for _, p := range all {
		waitFor(t, 30*time.Second, "result "+p.rb.ID+" offloaded", func() bool {
			var got struct {
				Storage      string
				LocalPresent bool `json:"local_present"`
			}
			code, _ := r.call(px, "GET", "/api/v1/results/"+p.rb.ID, nil, &got)
			return code == 200 && got.Storage == pluginID && !got.LocalPresent
		})
		code, _, loc := h.content(p.rb.ID)
		if code != http.StatusFound || !strings.HasPrefix(loc, publicURL+"/magicads/") {
			t.Fatalf("content of %s through the proxy: %d %q", p.rb.ID, code, loc)
		}
		obj := r.s3.GetObject(t, bucket, strings.TrimPrefix(loc, publicURL+"/"))
		want := sha256.Sum256(p.data)
		if got := sha256.Sum256(obj); hex.EncodeToString(got[:]) != hex.EncodeToString(want[:]) {
			t.Fatalf("the object of %s does not hold the result's bytes", p.rb.ID)
		}
	}
	for _, n := range r.nodes {
		if left := countFiles(t, filepath.Join(n.dataDir, "results")); left != 0 {
			t.Errorf("%s still holds %d result files after Delete local copy", n.id, left)
		}
	}

	// A settings change through the proxy reaches every node.
	if code, _ := r.call(px, "PUT", "/api/v1/admin/plugins/"+pluginID+"/settings", map[string]any{"values": r.r2Settings("key_prefix", "moved")}, nil); code != 200 {
		t.Fatalf("saving settings through the proxy: %d", code)
	}
	waitFor(t, 10*time.Second, "every node to report the new settings applied", func() bool {
		for _, n := range r.cluster().Nodes {
			if len(n.Plugins) != 1 || n.Plugins[0].SettingsApplied == nil || !*n.Plugins[0].SettingsApplied {
				return false
			}
		}
		return true
	})
	for _, n := range r.nodes { // straight to each node
		rb, code, err := postResult(n.url(), pngBytes(5000))
		if err != nil || code != http.StatusCreated {
			t.Fatalf("result on %s: %d %v", n.id, code, err)
		}
		waitFor(t, 30*time.Second, "the result on "+n.id+" offloaded under the new prefix", func() bool {
			var got struct{ Storage, URL string }
			code, _ := r.call(n.url(), "GET", "/api/v1/results/"+rb.ID, nil, &got)
			return code == 200 && got.Storage == pluginID && strings.HasPrefix(got.URL, publicURL+"/moved/")
		})
	}

	// A console session made through the proxy works on every node.
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.PostForm(px+"/login", url.Values{"username": {"admin"}, "password": {consolePassword}, "next": {"/app/admin/general"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in through the proxy: %d", resp.StatusCode)
	}
	served := map[string]bool{}
	for i := range 9 {
		resp, err := c.Get(px + "/app/admin/general")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("console page %d with the session, on %s: %d", i, resp.Header.Get(rrproxy.BackendHeader), resp.StatusCode)
		}
		served[resp.Header.Get(rrproxy.BackendHeader)] = true
	}
	if len(served) != 3 {
		t.Fatalf("the session's pages were served by %v, want all three nodes", served)
	}

	// Uninstall through the proxy: gone from every node; the results
	// keep serving from the public URL.
	if code, node := r.call(px, "POST", "/api/v1/admin/plugins/"+pluginID+"/uninstall", nil, nil); code != 200 && code != 204 {
		t.Fatalf("uninstall through the proxy (node %s): %d", node, code)
	}
	waitFor(t, 30*time.Second, "every node to drop the plugin", func() bool {
		for _, n := range r.cluster().Nodes {
			if len(n.Plugins) != 0 {
				return false
			}
		}
		return true
	})
	for _, p := range all {
		if code, _, loc := h.content(p.rb.ID); code != http.StatusFound || !strings.HasPrefix(loc, publicURL+"/") {
			t.Fatalf("content of %s after the uninstall: %d %q", p.rb.ID, code, loc)
		}
	}
}

// countFiles counts the regular files under dir.
func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return err
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return n
}

// burstResult is a result the burst got a 201 for, with its bytes' sha256.
type burstResult struct {
	id, sum string
}

// TestThreeNodesBurstWithANodeKilled: 500 results through the proxy, the
// first ones while Default Storage is local (they stay on the node that
// made them), the rest offloaded to R2; one node is SIGKILLed halfway.
// Every result that got a 201 ends in exactly one recorded place with the
// right sha256; while the killed node is down its local results answer
// 503 with Retry-After (never 404, never wrong bytes) from any node, and
// they are served again once it is back; no object recorded before the
// kill is uploaded again.
func TestThreeNodesBurstWithANodeKilled(t *testing.T) {
	const total, clients, localFirst, killAt = 500, 12, 90, 250
	r := newNodeRig(t, 3)
	px := r.proxy.URL
	r.installR2()
	db, _, err := dbmigrate.Open(t.Context(), r.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	victim := r.nodes[1]
	var mu sync.Mutex
	var got []burstResult
	var next atomic.Int64
	var wg sync.WaitGroup
	var switchOnce, killOnce sync.Once
	var recordedAtKill map[string]bool
	var objectsAtKill map[string]time.Time
	for range clients {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > total {
					return
				}
				data := pngBytes(8192 + int(i))
				rb, code, err := postResult(px, data)
				if err != nil || code != http.StatusCreated {
					continue // a request the killed node had: no 201
				}
				sum := sha256.Sum256(data)
				mu.Lock()
				got = append(got, burstResult{id: rb.ID, sum: hex.EncodeToString(sum[:])})
				n := len(got)
				mu.Unlock()
				switch n {
				case localFirst:
					switchOnce.Do(r.useR2)
				case killAt:
					killOnce.Do(func() {
						victim.proc.cmd.Process.Signal(syscall.SIGKILL)
						<-victim.proc.exited
						// What was recorded in the bucket at the kill.
						recordedAtKill = map[string]bool{}
						rows, err := db.Query(`SELECT object_key FROM results WHERE storage = $1`, pluginID)
						if err != nil {
							t.Errorf("reading the recorded offloads: %v", err)
							return
						}
						for rows.Next() {
							var k string
							rows.Scan(&k)
							recordedAtKill[k] = true
						}
						rows.Close()
						objectsAtKill = objectTimes(t, r.s3)
					})
				}
			}
		})
	}
	wg.Wait()
	if recordedAtKill == nil {
		t.Fatalf("the burst never reached the kill (%d results got a 201)", len(got))
	}
	t.Logf("burst: %d of %d results got a 201; %s killed with %d offloads recorded", len(got), total, victim.id, len(recordedAtKill))
	if len(got) < total*9/10 {
		t.Fatalf("only %d of %d results got a 201", len(got), total)
	}

	// While the victim is down: never 404, never wrong bytes; its local
	// results answer 503 with Retry-After.
	content := func(g burstResult) (int, string) {
		resp, err := noRedirect.Get(px + "/api/v1/results/" + g.id + "/content")
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			if s := sha256.Sum256(data); hex.EncodeToString(s[:]) != g.sum {
				t.Fatalf("result %s served with the wrong bytes", g.id)
			}
		}
		if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
			t.Fatalf("result %s: 503 without Retry-After", g.id)
		}
		return resp.StatusCode, resp.Header.Get("Location")
	}
	waiting := map[string]bool{}
	for _, g := range got {
		switch code, _ := content(g); code {
		case http.StatusOK, http.StatusFound:
		case http.StatusServiceUnavailable:
			waiting[g.id] = true
		default:
			t.Fatalf("result %s while %s is down: %d", g.id, victim.id, code)
		}
	}
	t.Logf("%d results answered 503 with Retry-After while %s was down", len(waiting), victim.id)
	if len(waiting) == 0 {
		t.Fatalf("no result waited for %s: the burst left no local result on it", victim.id)
	}

	// The victim comes back: its local results serve again, and every
	// result ends in exactly one recorded place with the right bytes.
	r.start(victim)
	waitFor(t, 2*time.Minute, "the killed node's results to serve again", func() bool {
		for id := range waiting {
			for _, g := range got {
				if g.id == id {
					if code, _ := content(g); code != http.StatusOK && code != http.StatusFound {
						return false
					}
				}
			}
		}
		return true
	})
	waitFor(t, 2*time.Minute, "the queue to settle", func() bool {
		var n int
		db.QueryRow(`SELECT COUNT(*) FROM jobs WHERE kind = 'offload'`).Scan(&n)
		return n == 0
	})
	keys := map[string]string{}
	local, remote := 0, 0
	for _, g := range got {
		var res struct {
			Storage, URL, Path string
		}
		if code, _ := r.call(px, "GET", "/api/v1/results/"+g.id, nil, &res); code != 200 {
			t.Fatalf("GET result %s: %d", g.id, code)
		}
		code, loc := content(g)
		switch res.Storage {
		case "local":
			local++
			if code != http.StatusOK {
				t.Fatalf("local result %s: content %d", g.id, code)
			}
		case pluginID:
			remote++
			key := strings.TrimPrefix(res.URL, publicURL+"/")
			if prev, ok := keys[key]; ok {
				t.Fatalf("results %s and %s share the object %s", prev, g.id, key)
			}
			keys[key] = g.id
			if s := sha256.Sum256(r.s3.GetObject(t, bucket, key)); hex.EncodeToString(s[:]) != g.sum {
				t.Fatalf("the object of %s does not hold its bytes", g.id)
			}
			if code != http.StatusFound || loc != res.URL {
				t.Fatalf("content of %s: %d %q, want a redirect to %s", g.id, code, loc, res.URL)
			}
		default:
			t.Fatalf("result %s is recorded in %q", g.id, res.Storage)
		}
	}
	t.Logf("%d results local, %d in R2", local, remote)
	final := objectTimes(t, r.s3)
	for key := range recordedAtKill {
		if at, ok := objectsAtKill[key]; ok && !final[key].Equal(at) {
			t.Errorf("object %s, recorded before the kill, was uploaded again (%v, then %v)", key, at, final[key])
		}
	}
}

// TestThreeNodesUpdateWhileFinalizing: an update from 1.0.0 to 1.1.0
// through the proxy while results are being finalized through it: every
// result gets its 201 and ends in R2 with the right bytes (none fails or
// stays local because of the update), and the cluster view shows each
// node's plugin version at every moment, ending with 1.1.0 everywhere.
func TestThreeNodesUpdateWhileFinalizing(t *testing.T) {
	r := newNodeRig(t, 3)
	px := r.proxy.URL
	r.installR2()
	r.useR2()
	bin100, err := os.ReadFile(pluginBin.Build(t, "./plugin/cmd/cloudflare-r2"))
	if err != nil {
		t.Fatal(err)
	}
	bin110, err := os.ReadFile(pluginBin110.Build(t, "./plugin/cmd/cloudflare-r2"))
	if err != nil {
		t.Fatal(err)
	}
	r.cat.Publish(t, map[string][]markettest.File{
		"1.0.0": markettest.Bundle(t, "1.0.0", bin100, nil),
		"1.1.0": markettest.Bundle(t, "1.1.0", bin110, nil),
	})

	stop := make(chan struct{})
	var mu sync.Mutex
	var got []burstResult
	var failures []string
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				data := pngBytes(6000 + i)
				rb, code, err := postResult(px, data)
				mu.Lock()
				if err != nil || code != http.StatusCreated {
					failures = append(failures, fmt.Sprintf("%d %v", code, err))
				} else {
					sum := sha256.Sum256(data)
					got = append(got, burstResult{id: rb.ID, sum: hex.EncodeToString(sum[:])})
				}
				mu.Unlock()
			}
		})
	}
	// The cluster view, throughout: every node, each with its version.
	views := 0
	var viewErr string
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			var v clusterJSON
			if code, _ := r.call(px, "GET", "/api/v1/admin/cluster", nil, &v); code != 200 {
				viewErr = fmt.Sprintf("GET /api/v1/admin/cluster during the update: %d", code)
				return
			}
			views++
			for _, n := range v.Nodes {
				if !n.Live || len(n.Plugins) != 1 || (n.Plugins[0].Version != "1.0.0" && n.Plugins[0].Version != "1.1.0") {
					viewErr = fmt.Sprintf("during the update the cluster view showed %s as %+v", n.ID, n)
					return
				}
			}
		}
	})
	time.Sleep(time.Second) // results on their way before the update
	var inst struct {
		InstalledVersion string `json:"installed_version"`
	}
	if code, node := r.call(px, "POST", "/api/v1/admin/plugins/"+pluginID+"/install", nil, &inst); code != 200 || inst.InstalledVersion != "1.1.0" {
		close(stop)
		wg.Wait()
		t.Fatalf("update through the proxy (node %s): %d %+v", node, code, inst)
	}
	r.waitVersionEverywhere("1.1.0")
	time.Sleep(time.Second) // and some after
	close(stop)
	wg.Wait()
	if viewErr != "" {
		t.Fatal(viewErr)
	}
	if len(failures) > 0 {
		t.Fatalf("%d of %d results failed during the update: %v", len(failures), len(failures)+len(got), failures[:min(5, len(failures))])
	}
	t.Logf("%d results finalized during the update; %d cluster views read", len(got), views)
	waitFor(t, 2*time.Minute, "every result of the update to reach R2", func() bool {
		for _, g := range got {
			var res struct{ Storage string }
			if code, _ := r.call(px, "GET", "/api/v1/results/"+g.id, nil, &res); code != 200 || res.Storage != pluginID {
				return false
			}
		}
		return true
	})
	for _, g := range got {
		var res struct{ URL string }
		r.call(px, "GET", "/api/v1/results/"+g.id, nil, &res)
		if s := sha256.Sum256(r.s3.GetObject(t, bucket, strings.TrimPrefix(res.URL, publicURL+"/"))); hex.EncodeToString(s[:]) != g.sum {
			t.Fatalf("the object of %s does not hold its bytes", g.id)
		}
	}
}
