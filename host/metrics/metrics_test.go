package metrics_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/magicads/r2storage/host/metrics"
	"github.com/magicads/r2storage/host/pluginrt"
	"github.com/magicads/r2storage/internal/testdb"
)

// dbTime is how the results service writes timestamps.
func dbTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000000+00:00") }

// seed fills db with results and jobs of known counts and ages.
func seed(t *testing.T, db *testdb.DB) {
	t.Helper()
	ctx := context.Background()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec(`INSERT INTO plugins (id, version, dir, binary_path, sha256) VALUES ($1, '1.0.0', '/p', '/p/bin', $2)`, "cloudflare-r2", strings.Repeat("a", 64))
	exec(`INSERT INTO plugins (id, version, dir, binary_path, sha256) VALUES ($1, '1.0.0', '/q', '/q/bin', $2)`, "idle-provider", strings.Repeat("b", 64))
	results := []struct {
		id, storage   string
		size          int64
		local, delete bool
	}{
		{"r1", "local", 10, true, false},
		{"r2", "local", 20, true, false},
		{"r3", "cloudflare-r2", 100, true, false},
		{"r4", "cloudflare-r2", 1000, false, false},
		{"r5", "cloudflare-r2", 2000, false, false},
		{"r6", "cloudflare-r2", 5000, false, true}, // deleted: not counted
	}
	for _, r := range results {
		exec(`INSERT INTO results (id, path, content_type, size, sha256, storage, local_present, deleted) VALUES ($1, $2, 'image/png', $3, '', $4, $5, $6)`,
			r.id, "images/x/"+r.id+".png", r.size, r.storage, r.local, r.delete)
	}
	now := time.Now()
	jobs := []struct {
		kind, result, provider, state string
		age                           time.Duration
	}{
		{"offload", "r1", "cloudflare-r2", "queued", time.Hour},
		{"offload", "r2", "cloudflare-r2", "queued", time.Minute},
		{"offload", "r7", "cloudflare-r2", "failed", 3 * time.Hour},
		{"delete", "r6", "cloudflare-r2", "queued", 10 * time.Minute},
		{"delete", "r8", "local", "failed", time.Hour},
	}
	for _, j := range jobs {
		exec(`INSERT INTO jobs (kind, result_id, provider, state, next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $5)`,
			j.kind, j.result, j.provider, j.state, dbTime(now.Add(-j.age)))
	}
}

// TestDatabaseCollector: the queue and the results' locations are read
// from the database at scrape time, on both dialects.
func TestDatabaseCollector(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			db := testdb.Open(t, d)
			seed(t, db)
			m := metrics.New(metrics.Options{DB: db.DB})
			want := `
# HELP magicads_queue_jobs Jobs in the queue (all nodes) by kind (offload, delete, restore), provider and state: pending (waiting or running) or failed (parked until retried).
# TYPE magicads_queue_jobs gauge
magicads_queue_jobs{kind="delete",provider="cloudflare-r2",state="failed"} 0
magicads_queue_jobs{kind="delete",provider="cloudflare-r2",state="pending"} 1
magicads_queue_jobs{kind="delete",provider="idle-provider",state="failed"} 0
magicads_queue_jobs{kind="delete",provider="idle-provider",state="pending"} 0
magicads_queue_jobs{kind="delete",provider="local",state="failed"} 1
magicads_queue_jobs{kind="delete",provider="local",state="pending"} 0
magicads_queue_jobs{kind="offload",provider="cloudflare-r2",state="failed"} 1
magicads_queue_jobs{kind="offload",provider="cloudflare-r2",state="pending"} 2
magicads_queue_jobs{kind="offload",provider="idle-provider",state="failed"} 0
magicads_queue_jobs{kind="offload",provider="idle-provider",state="pending"} 0
# HELP magicads_results Live results by location (local_only, provider_with_local_copy, provider_only) and provider (local for the results disk).
# TYPE magicads_results gauge
magicads_results{location="local_only",provider="local"} 2
magicads_results{location="provider_only",provider="cloudflare-r2"} 2
magicads_results{location="provider_with_local_copy",provider="cloudflare-r2"} 1
# HELP magicads_results_bytes Bytes of live results by location and provider.
# TYPE magicads_results_bytes gauge
magicads_results_bytes{location="local_only",provider="local"} 30
magicads_results_bytes{location="provider_only",provider="cloudflare-r2"} 3000
magicads_results_bytes{location="provider_with_local_copy",provider="cloudflare-r2"} 100
`
			if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "magicads_queue_jobs", "magicads_results", "magicads_results_bytes"); err != nil {
				t.Fatal(err)
			}
			// The oldest pending job's age, per kind and provider: within
			// the time this test takes of what was seeded.
			ages := map[string]float64{}
			mfs, err := m.Registry().Gather()
			if err != nil {
				t.Fatal(err)
			}
			for _, mf := range mfs {
				if mf.GetName() != "magicads_queue_oldest_pending_job_age_seconds" {
					continue
				}
				for _, s := range mf.GetMetric() {
					var key []string
					for _, l := range s.GetLabel() {
						key = append(key, l.GetValue())
					}
					ages[strings.Join(key, "/")] = s.GetGauge().GetValue()
				}
			}
			for series, want := range map[string]float64{"offload/cloudflare-r2": 3600, "delete/cloudflare-r2": 600, "delete/local": 0, "offload/idle-provider": 0} {
				got, ok := ages[series]
				if !ok || got < want || got > want+120 {
					t.Errorf("oldest pending age of %s = %v (present %v), want about %v", series, got, ok, want)
				}
			}
		})
	}
}

// TestDatabaseDown: a database that does not answer leaves its metrics
// out of the scrape, which still serves the others, and is logged.
func TestDatabaseDown(t *testing.T) {
	db := testdb.Open(t, "sqlite")
	var logs bytes.Buffer
	m := metrics.New(metrics.Options{DB: db.DB, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	m.JobFinished("offload", "cloudflare-r2", metrics.OutcomeOK)
	db.Close()
	if _, err := m.Registry().Gather(); err == nil || !strings.Contains(err.Error(), "metrics: ") {
		t.Fatalf("gathering with the database closed: %v, want an error naming the query", err)
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	if rec.Code != 200 || !strings.Contains(body, `magicads_offloads_total{outcome="ok",provider="cloudflare-r2"} 1`) || strings.Contains(body, "magicads_results{") {
		t.Fatalf("scrape with the database closed: %d\n%s", rec.Code, body)
	}
	if !strings.Contains(logs.String(), "metrics: counting") {
		t.Fatalf("the failed query was not logged:\n%s", logs.String())
	}
}

// TestRecorders: what the results service, the plugin runtime and the
// marketplace record shows in the series, restarts counted once.
func TestRecorders(t *testing.T) {
	m := metrics.New(metrics.Options{})
	m.JobFinished("offload", "cloudflare-r2", metrics.OutcomeOK)
	m.JobFinished("offload", "cloudflare-r2", metrics.OutcomeOK)
	m.JobFinished("offload", "cloudflare-r2", metrics.OutcomeRetry)
	m.JobFinished("delete", "local", metrics.OutcomeFailed)
	m.JobFinished("other", "local", metrics.OutcomeOK) // not counted
	m.Uploaded("cloudflare-r2", 1000, 20*time.Millisecond, nil)
	m.Uploaded("cloudflare-r2", 500, 3*time.Second, errors.New("outage")) // timed, bytes not counted
	m.PluginState("cloudflare-r2", pluginrt.Status{State: pluginrt.StateStarting})
	m.PluginState("cloudflare-r2", pluginrt.Status{State: pluginrt.StateRunning})
	m.PluginState("cloudflare-r2", pluginrt.Status{State: pluginrt.StateRestarting})
	m.PluginState("cloudflare-r2", pluginrt.Status{State: pluginrt.StateRunning, Restarts: 1})
	m.PluginState("cloudflare-r2", pluginrt.Status{State: pluginrt.StateRestarting, Restarts: 1})
	m.PluginState("cloudflare-r2", pluginrt.Status{State: pluginrt.StateFailed, Restarts: 2})
	m.PluginState("cloudflare-r2", pluginrt.Status{State: pluginrt.StateStarting}) // started again: history reset
	m.PluginState("cloudflare-r2", pluginrt.Status{State: pluginrt.StateRunning, Restarts: 1})
	m.PluginCall("cloudflare-r2", "put", 10*time.Millisecond)
	m.MarketplaceOperation("install", "ok")
	m.MarketplaceOperation("uninstall", "failed")
	want := `
# HELP magicads_deletes_total Delete job attempts by provider (local for the results disk) and outcome (ok, retry, failed, dropped).
# TYPE magicads_deletes_total counter
magicads_deletes_total{outcome="failed",provider="local"} 1
# HELP magicads_marketplace_operations_total Marketplace installs, updates and uninstalls by outcome (ok, unchanged, payment_required, failed).
# TYPE magicads_marketplace_operations_total counter
magicads_marketplace_operations_total{operation="install",outcome="ok"} 1
magicads_marketplace_operations_total{operation="uninstall",outcome="failed"} 1
# HELP magicads_offloaded_bytes_total Bytes of results uploaded to a provider by successful uploads.
# TYPE magicads_offloaded_bytes_total counter
magicads_offloaded_bytes_total{provider="cloudflare-r2"} 1000
# HELP magicads_offloads_total Offload job attempts by provider and outcome (ok, retry, failed, dropped).
# TYPE magicads_offloads_total counter
magicads_offloads_total{outcome="ok",provider="cloudflare-r2"} 2
magicads_offloads_total{outcome="retry",provider="cloudflare-r2"} 1
# HELP magicads_plugin_restarts_total Relaunches of a plugin after it crashed or failed to start.
# TYPE magicads_plugin_restarts_total counter
magicads_plugin_restarts_total{plugin="cloudflare-r2"} 3
# HELP magicads_plugin_state 1 for the state a plugin is in (starting, running, restarting, failed, stopped), 0 for the others.
# TYPE magicads_plugin_state gauge
magicads_plugin_state{plugin="cloudflare-r2",state="failed"} 0
magicads_plugin_state{plugin="cloudflare-r2",state="restarting"} 0
magicads_plugin_state{plugin="cloudflare-r2",state="running"} 1
magicads_plugin_state{plugin="cloudflare-r2",state="starting"} 0
magicads_plugin_state{plugin="cloudflare-r2",state="stopped"} 0
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "magicads_offloads_total", "magicads_deletes_total",
		"magicads_offloaded_bytes_total", "magicads_plugin_restarts_total", "magicads_plugin_state", "magicads_marketplace_operations_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(m.Registry(), "magicads_offload_duration_seconds", "magicads_plugin_rpc_duration_seconds"); n != 2 {
		t.Fatalf("histogram series: %d, want 2", n)
	}
}

// TestLint: every metric of the registry, the database's included, passes
// promtool's checks of names, units, help and types.
func TestLint(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			db := testdb.Open(t, d)
			seed(t, db)
			m := metrics.New(metrics.Options{DB: db.DB})
			m.JobFinished("offload", "cloudflare-r2", metrics.OutcomeOK)
			m.JobFinished("delete", "cloudflare-r2", metrics.OutcomeOK)
			m.Uploaded("cloudflare-r2", 1000, time.Second, nil)
			m.PluginState("cloudflare-r2", pluginrt.Status{State: pluginrt.StateRunning, Restarts: 1})
			m.PluginCall("cloudflare-r2", "put", time.Millisecond)
			m.MarketplaceOperation("install", "ok")
			problems, err := testutil.GatherAndLint(m.Registry())
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range problems {
				t.Errorf("%s: %s", p.Metric, p.Text)
			}
			mfs, err := m.Registry().Gather()
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, mf := range mfs {
				names = append(names, mf.GetName())
			}
			for _, want := range []string{"go_goroutines", "process_cpu_seconds_total", "magicads_offloads_total", "magicads_deletes_total",
				"magicads_offloaded_bytes_total", "magicads_offload_duration_seconds", "magicads_queue_jobs",
				"magicads_queue_oldest_pending_job_age_seconds", "magicads_results", "magicads_results_bytes",
				"magicads_plugin_state", "magicads_plugin_restarts_total", "magicads_plugin_rpc_duration_seconds",
				"magicads_marketplace_operations_total"} {
				if !strings.Contains(" "+strings.Join(names, " ")+" ", " "+want+" ") {
					t.Errorf("the registry lacks %s; it has %v", want, names)
				}
			}
		})
	}
}
