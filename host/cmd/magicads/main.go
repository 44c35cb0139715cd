// Command magicads is the MagicAds host.
//
//	magicads serve [--addr 127.0.0.1:8080] [--data-dir ./data] [--db postgres://…] [--trusted-proxies CIDR,…] [--max-result-bytes N] [--metrics-addr 127.0.0.1:9090] [--upload-workers 4] [--node-id web-1] [--advertise-url http://10.0.0.5:8080] [--shared-results]
//
// Every flag has an environment variable (../shared/api.md). SIGINT and
// SIGTERM shut it down cleanly and stop every plugin process.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/magicads/r2storage/host/app"
	"github.com/magicads/r2storage/host/auth"
	"github.com/magicads/r2storage/host/cluster"
	"github.com/magicads/r2storage/host/httpapi"
	"github.com/magicads/r2storage/host/results"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	os.Exit(code)
}

// flags are the serve command's settings.
type flags struct {
	addr, dataDir, db, catalog, trustedKey, license string
	// metricsAddr is where /metrics is served without credentials; "" serves it on addr only, to admins.
	metricsAddr    string
	maxResultBytes int64
	trustedProxies []netip.Prefix
	// uploadWorkers is how many queued jobs this node runs at once.
	uploadWorkers int
	// nodeID names this node ("" keeps the id in data/node.id).
	nodeID string
	// advertiseURL is where the other nodes reach this one.
	advertiseURL string
	// advertiseUnreachable is true when advertiseURL defaulted to an --addr
	// that binds every interface (0.0.0.0, ::): no other node reaches that.
	advertiseUnreachable bool
	// sharedResults says every node mounts the same results folder.
	sharedResults bool
}

func env(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

func parse(args []string, getenv func(string) string, stderr io.Writer) (flags, error) {
	var f flags
	fs := flag.NewFlagSet("magicads serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.addr, "addr", env(getenv, "MAGICADS_ADDR", "127.0.0.1:8080"), "HTTP listen address (MAGICADS_ADDR)")
	fs.StringVar(&f.dataDir, "data-dir", env(getenv, "MAGICADS_DATA_DIR", "./data"), "results disk, installed plugins, SQLite file (MAGICADS_DATA_DIR)")
	fs.StringVar(&f.db, "db", env(getenv, "MAGICADS_DB", ""), "postgres://… selects PostgreSQL; default SQLite in the data dir (MAGICADS_DB)")
	fs.StringVar(&f.catalog, "catalog", env(getenv, "MAGICADS_CATALOG", ""), "marketplace index URL (MAGICADS_CATALOG)")
	fs.StringVar(&f.trustedKey, "trusted-key", env(getenv, "MAGICADS_TRUSTED_KEYS", ""), "marketplace ed25519 public key file(s) (MAGICADS_TRUSTED_KEYS)")
	fs.StringVar(&f.license, "license", env(getenv, "MAGICADS_LICENSE", "regular"), "regular or extended (MAGICADS_LICENSE)")
	maxResult := env(getenv, "MAGICADS_MAX_RESULT_BYTES", strconv.FormatInt(httpapi.DefaultMaxResultBytes, 10))
	fs.StringVar(&maxResult, "max-result-bytes", maxResult, "largest result accepted, in bytes (MAGICADS_MAX_RESULT_BYTES)")
	fs.StringVar(&f.metricsAddr, "metrics-addr", env(getenv, "MAGICADS_METRICS_ADDR", ""), "listen address of a separate HTTP listener serving /metrics without credentials; default off (the API's /metrics needs admin credentials) (MAGICADS_METRICS_ADDR)")
	workers := env(getenv, "MAGICADS_UPLOAD_WORKERS", strconv.Itoa(results.DefaultWorkers))
	fs.StringVar(&workers, "upload-workers", workers, "workers for queued uploads, deletes and bring-backs on this node: each runs one at a time, or up to 4 of a bulk offload's results of at most 1 MiB; raise it when the storage provider is far away (MAGICADS_UPLOAD_WORKERS)")
	fs.StringVar(&f.nodeID, "node-id", env(getenv, "MAGICADS_NODE_ID", ""), "this node's id in job leases and the cluster view, 1 to 64 of A-Z a-z 0-9 . _ -; default the id in the data dir's node.id (MAGICADS_NODE_ID)")
	fs.StringVar(&f.advertiseURL, "advertise-url", env(getenv, "MAGICADS_ADVERTISE_URL", ""), "the URL other nodes reach this one at, shown in the cluster view; default http://<--addr>: set it when --addr binds 0.0.0.0 or :: (MAGICADS_ADVERTISE_URL)")
	shared := env(getenv, "MAGICADS_SHARED_RESULTS", "false")
	sharedDefault, sharedErr := strconv.ParseBool(shared)
	fs.BoolVar(&f.sharedResults, "shared-results", sharedDefault, "every node mounts the same results folder (e.g. NFS at <data-dir>/results): any node offloads, deletes and serves any local result; default off, each node's results folder is its own (MAGICADS_SHARED_RESULTS)")
	proxies := fs.String("trusted-proxies", env(getenv, "MAGICADS_TRUSTED_PROXIES", ""), "CIDRs or addresses of TLS-terminating reverse proxies, comma-separated: their X-Forwarded-For names the client, and cookies are Secure (MAGICADS_TRUSTED_PROXIES)")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	n, err := strconv.ParseInt(maxResult, 10, 64)
	if err != nil || n < 1 || n > httpapi.MaxMaxResultBytes {
		return f, fmt.Errorf("--max-result-bytes must be a number of bytes from 1 to %d, got %q", httpapi.MaxMaxResultBytes, maxResult)
	}
	f.maxResultBytes = n
	if f.uploadWorkers, err = strconv.Atoi(workers); err != nil || f.uploadWorkers < 1 || f.uploadWorkers > results.MaxWorkers {
		return f, fmt.Errorf("--upload-workers must be a number from 1 to %d, got %q", results.MaxWorkers, workers)
	}
	if sharedErr != nil {
		return f, fmt.Errorf("--shared-results must be true or false, got %q", shared)
	}
	if f.license != "regular" && f.license != "extended" {
		return f, fmt.Errorf("--license must be regular or extended, got %q", f.license)
	}
	if f.db != "" && !strings.HasPrefix(f.db, "postgres://") && !strings.HasPrefix(f.db, "postgresql://") {
		return f, fmt.Errorf("--db must be a postgres:// URL (leave it empty for SQLite in the data dir)")
	}
	if _, _, err := net.SplitHostPort(f.addr); err != nil {
		return f, fmt.Errorf("--addr %q: %w", f.addr, err)
	}
	if f.nodeID != "" {
		if err := cluster.CheckNodeID(f.nodeID); err != nil {
			return f, fmt.Errorf("--node-id must be 1 to %d letters, digits, '.', '_' or '-', got %q", cluster.MaxNodeIDLen, f.nodeID)
		}
	}
	if f.advertiseURL == "" {
		f.advertiseURL = "http://" + f.addr
		host, _, _ := net.SplitHostPort(f.addr)
		ip, err := netip.ParseAddr(host)
		f.advertiseUnreachable = host == "" || err == nil && ip.IsUnspecified()
	} else if u, err := url.Parse(f.advertiseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return f, fmt.Errorf("--advertise-url must be an absolute http:// or https:// URL, got %q (the URL the other nodes reach this one at, e.g. http://10.0.0.5:8080)", f.advertiseURL)
	}
	if f.metricsAddr != "" {
		if _, _, err := net.SplitHostPort(f.metricsAddr); err != nil {
			return f, fmt.Errorf("--metrics-addr %q: %w (give host:port, e.g. 127.0.0.1:9090)", f.metricsAddr, err)
		}
	}
	if f.trustedProxies, err = auth.ParseTrustedProxies(*proxies); err != nil {
		return f, fmt.Errorf("--trusted-proxies: %w", err)
	}
	return f, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	log := slog.New(slog.NewTextHandler(stderr, nil))
	if len(args) == 0 || args[0] != "serve" {
		fmt.Fprintln(stderr, "usage: magicads serve [flags]   (magicads serve -h lists the flags)")
		return 2
	}
	f, err := parse(args[1:], getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "magicads:", err)
		return 2
	}
	a, err := app.New(ctx, app.Config{
		DataDir: f.dataDir, DB: f.db, AppKey: getenv("APP_KEY"), PreviousAppKeys: getenv("APP_KEY_PREVIOUS"),
		AdminToken: getenv("MAGICADS_ADMIN_TOKEN"), ServiceToken: getenv("MAGICADS_SERVICE_TOKEN"), HTTP: httpapi.Limits{MaxResultBytes: f.maxResultBytes},
		AdminPassword: getenv("MAGICADS_ADMIN_PASSWORD"), AdminPasswordOut: stderr, Logger: log,
		CatalogURL: f.catalog, TrustedKeyFiles: splitList(f.trustedKey), License: f.license, TrustedProxies: f.trustedProxies,
		Results: results.Options{Workers: f.uploadWorkers, SharedVolume: f.sharedResults}, NodeID: f.nodeID, AdvertiseURL: f.advertiseURL,
	})
	if err != nil {
		fmt.Fprintln(stderr, "magicads:", err)
		return 1
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := a.Close(closeCtx); err != nil {
			log.Error("shutdown", "error", err)
		}
	}()
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		fmt.Fprintln(stderr, "magicads: listen:", err)
		return 1
	}
	srv := a.Server()
	if f.advertiseUnreachable {
		log.Warn("--advertise-url is not set and --addr binds every interface: the cluster view shows this node at " + f.advertiseURL + ", which other nodes cannot reach; set --advertise-url (MAGICADS_ADVERTISE_URL) to this node's own address")
	}
	log.Info("MagicAds host listening", "url", "http://"+ln.Addr().String(), "data_dir", f.dataDir, "db", string(a.Dialect))
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	if f.metricsAddr != "" {
		mln, err := net.Listen("tcp", f.metricsAddr)
		if err != nil {
			ln.Close()
			fmt.Fprintln(stderr, "magicads: --metrics-addr: listen:", err)
			return 1
		}
		msrv := &http.Server{Handler: metricsMux(a.MetricsHandler()), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
		defer msrv.Close()
		log.Info("metrics listening, without credentials", "url", "http://"+mln.Addr().String()+"/metrics")
		go func() { errc <- fmt.Errorf("metrics listener: %w", msrv.Serve(mln)) }()
	}
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-errc:
		log.Error("server stopped", "error", err)
		return 1
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		log.Error("shutdown", "error", err)
	}
	return 0
}

// metricsMux serves h at GET /metrics and 404 elsewhere.
func metricsMux(h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	return mux
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
