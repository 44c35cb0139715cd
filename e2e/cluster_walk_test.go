package e2e_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/magicads/r2storage/host/app"
	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/internal/rrproxy"
	"github.com/magicads/r2storage/internal/testdb"
)

// backendLog records which node answered each console page through the
// proxy.
type backendLog struct {
	mu    sync.Mutex
	pages map[string]int
}

func (l *backendLog) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r)
		if strings.HasPrefix(r.URL.Path, "/app/") && r.Method == http.MethodGet {
			l.mu.Lock()
			l.pages[w.Header().Get(rrproxy.BackendHeader)]++
			l.mu.Unlock()
		}
	})
}

func (l *backendLog) nodes() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]int, len(l.pages))
	for k, v := range l.pages {
		out[k] = v
	}
	return out
}

// newClusterStack is newStack with n host nodes (in-process, each its own
// data dir, one PostgreSQL database) behind a round-robin proxy: s.host
// is the proxy.
func newClusterStack(t *testing.T, n int) (*stack, *backendLog) {
	t.Helper()
	s, catalogURL, keyFile := newSupport(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the nodes' logs:\n%s", s.logs)
		}
	})
	dsn, key := testdb.Open(t, dbmigrate.Postgres).DSN, "base64:"+b64(randBytes(32))
	var urls []string
	for i := range n {
		srv := httptest.NewUnstartedServer(nil)
		a, err := app.New(context.Background(), app.Config{
			DataDir: t.TempDir(), DB: dsn, AppKey: key, AdminPassword: s.password,
			NodeID: fmt.Sprintf("node-%d", i+1), AdvertiseURL: "http://" + srv.Listener.Addr().String(),
			TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
			Logger:         slog.New(slog.NewTextHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
			CatalogURL:     catalogURL, TrustedKeyFiles: []string{keyFile}, License: "extended",
		})
		if err != nil {
			t.Fatal(err)
		}
		srv.Config.Handler = a.Handler()
		srv.Start()
		t.Cleanup(func() {
			srv.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			a.Close(ctx)
		})
		urls = append(urls, srv.URL)
	}
	p, err := rrproxy.New(urls...)
	if err != nil {
		t.Fatal(err)
	}
	log := &backendLog{pages: map[string]int{}}
	s.host = httptest.NewServer(log.wrap(p))
	t.Cleanup(s.host.Close)
	return s, log
}

// TestClusterWalkThroughTheProxy: three nodes behind a round-robin proxy;
// the admin signs in through the proxy, installs the plugin from its card
// and walks the console: every page, whichever node serves it, is the
// signed-in console (never the sign-in page), and the Cluster page shows
// the three nodes live, each running the plugin.
func TestClusterWalkThroughTheProxy(t *testing.T) {
	s, log := newClusterStack(t, 3)
	ctx := browser(t)
	sh := newShots(t)
	base := s.host.URL
	signInAndInstall(t, ctx, sh, s)
	logs := watchConsole(t, ctx)

	for round := range 2 {
		for _, path := range []string{"/app/admin/general", "/app/admin/general/plugins", "/app/admin/general/plugins/cloudflare-r2", "/app/admin/general/cluster"} {
			must(t, ctx, sh, "page "+path, chromedp.Navigate(base+path), chromedp.WaitReady("body"))
			url := evalString(t, ctx, `location.href`)
			if strings.Contains(url, "/login") || evalBool(t, ctx, `!!document.querySelector('input[name="password"]')`) {
				t.Fatalf("round %d: %s went to the sign-in page (%s): the session did not hold on the node that served it (%v)", round, path, url, log.nodes())
			}
		}
	}
	if served := log.nodes(); len(served) != 3 {
		t.Fatalf("the console pages were served by %v, want all three nodes", served)
	}

	// The Cluster page, reloaded until the heartbeats show the plugin on
	// every node.
	deadline := time.Now().Add(30 * time.Second)
	for {
		must(t, ctx, sh, "cluster page", chromedp.Navigate(base+"/app/admin/general/cluster"), chromedp.WaitVisible(chromedp.ID("nodes-count")))
		count := evalString(t, ctx, `document.getElementById('nodes-count').textContent.trim()`)
		running := 0
		for i := 1; i <= 3; i++ {
			if evalBool(t, ctx, fmt.Sprintf(`(document.getElementById('node-node-%d-cloudflare-r2')||{textContent:''}).textContent.includes('running')`, i)) {
				running++
			}
		}
		if count == "3 of 3 nodes live" && running == 3 {
			break
		}
		if time.Now().After(deadline) {
			sh.take(ctx, "cluster-page")
			t.Fatalf("the Cluster page says %q with the plugin running on %d of 3 nodes", count, running)
		}
		time.Sleep(500 * time.Millisecond)
	}
	sh.take(ctx, "cluster-page")
	noConsoleErrors(t, logs, "walking the console through the proxy")
}
