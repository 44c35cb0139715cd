// Package metrics holds the host's Prometheus metrics: one registry owned
// by the app (never the global default one), the collectors the results
// service, the plugin runtime and the marketplace record into, and a
// collector that reads the job queue and where the results are from the
// database at scrape time. Labels are provider or plugin ids, kinds,
// states and outcomes, never result ids or object keys.
package metrics

import (
	"database/sql"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/magicads/r2storage/host/pluginrt"
)

// namespace prefixes every metric of the host.
const namespace = "magicads"

// Outcomes of a job attempt (the outcome label of the offload and delete
// counters).
const (
	// OutcomeOK: the job is done.
	OutcomeOK = "ok"
	// OutcomeRetry: the attempt failed for now; the job is tried again later.
	OutcomeRetry = "retry"
	// OutcomeFailed: a permanent error parked the job until it is retried.
	OutcomeFailed = "failed"
	// OutcomeDropped: the job was removed without being done (its result
	// was deleted meanwhile, Default Storage changed, …).
	OutcomeDropped = "dropped"
)

// Job kinds, as the results service names them.
const (
	kindOffload = "offload"
	kindDelete  = "delete"
)

// localProvider is the provider id of the results disk.
const localProvider = "local"

// DefaultScrapeTimeout bounds the database queries of one scrape.
const DefaultScrapeTimeout = 5 * time.Second

// Options configure the metrics.
type Options struct {
	// DB is the host database (SQLite or PostgreSQL) whose jobs and
	// results are counted at scrape time; nil leaves those metrics out.
	DB *sql.DB
	// ScrapeTimeout bounds the database queries of one scrape
	// (DefaultScrapeTimeout when zero).
	ScrapeTimeout time.Duration
	// Logger receives the errors of a scrape (nil discards them).
	Logger *slog.Logger
}

// Metrics is the host's registry with its collectors. It is safe for
// concurrent use.
type Metrics struct {
	reg *prometheus.Registry
	log *slog.Logger

	offloads        *prometheus.CounterVec
	deletes         *prometheus.CounterVec
	offloadedBytes  *prometheus.CounterVec
	offloadDuration *prometheus.HistogramVec
	pluginState     *prometheus.GaugeVec
	pluginRestarts  *prometheus.CounterVec
	rpcDuration     *prometheus.HistogramVec
	marketplaceOps  *prometheus.CounterVec

	// restartsMu guards restartsSeen: per plugin, the restart count of
	// the last status seen (pluginrt counts since Start; the counter adds
	// the increase).
	restartsMu   sync.Mutex
	restartsSeen map[string]int
}

// pluginStates are the states the plugin state gauge has a series for.
var pluginStates = []pluginrt.State{pluginrt.StateStarting, pluginrt.StateRunning, pluginrt.StateRestarting, pluginrt.StateFailed, pluginrt.StateStopped}

// New returns the metrics on a fresh registry, with the Go and process
// collectors and, when opts.DB is set, the database collector.
func New(opts Options) *Metrics {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ScrapeTimeout <= 0 {
		opts.ScrapeTimeout = DefaultScrapeTimeout
	}
	m := &Metrics{reg: prometheus.NewRegistry(), log: opts.Logger, restartsSeen: map[string]int{}}
	m.offloads = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "offloads_total",
		Help: "Offload job attempts by provider and outcome (ok, retry, failed, dropped)."}, []string{"provider", "outcome"})
	m.deletes = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "deletes_total",
		Help: "Delete job attempts by provider (local for the results disk) and outcome (ok, retry, failed, dropped)."}, []string{"provider", "outcome"})
	m.offloadedBytes = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "offloaded_bytes_total",
		Help: "Bytes of results uploaded to a provider by successful uploads."}, []string{"provider"})
	m.offloadDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "offload_duration_seconds",
		Help:    "Duration of upload attempts to a provider, successful or not.",
		Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800}}, []string{"provider"})
	m.pluginState = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "plugin_state",
		Help: "1 for the state a plugin is in (starting, running, restarting, failed, stopped), 0 for the others."}, []string{"plugin", "state"})
	m.pluginRestarts = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "plugin_restarts_total",
		Help: "Relaunches of a plugin after it crashed or failed to start."}, []string{"plugin"})
	m.rpcDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "plugin_rpc_duration_seconds",
		Help:    "Duration of the host's calls to a running plugin, by method.",
		Buckets: []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800}}, []string{"plugin", "method"})
	m.marketplaceOps = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "marketplace_operations_total",
		Help: "Marketplace installs, updates and uninstalls by outcome (ok, unchanged, payment_required, failed)."}, []string{"operation", "outcome"})
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.offloads, m.deletes, m.offloadedBytes, m.offloadDuration,
		m.pluginState, m.pluginRestarts, m.rpcDuration, m.marketplaceOps,
	)
	if opts.DB != nil {
		m.reg.MustRegister(&dbCollector{db: opts.DB, timeout: opts.ScrapeTimeout, log: opts.Logger})
	}
	return m
}

// Registry returns the registry the metrics are on.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus exposition formats. A
// collector that fails (the database did not answer) leaves its metrics
// out and is logged; the others are still served.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:            errorLog{m.log},
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             30 * time.Second,
	})
}

// errorLog is promhttp's error log on slog.
type errorLog struct{ log *slog.Logger }

// Println logs v as a warning.
func (e errorLog) Println(v ...any) {
	e.log.Warn("metrics: a scrape was incomplete", "error", errors.New(sprint(v...)))
}

// JobFinished counts an attempt of a results job of kind ("offload" or
// "delete") to provider that ended with outcome (OutcomeOK, …). Other
// kinds are not counted.
func (m *Metrics) JobFinished(kind, provider, outcome string) {
	switch kind {
	case kindOffload:
		m.offloads.WithLabelValues(provider, outcome).Inc()
	case kindDelete:
		m.deletes.WithLabelValues(provider, outcome).Inc()
	}
}

// Uploaded records an upload attempt of size bytes to provider that took
// d; err is its error (nil when it succeeded, which counts the bytes).
func (m *Metrics) Uploaded(provider string, size int64, d time.Duration, err error) {
	m.offloadDuration.WithLabelValues(provider).Observe(d.Seconds())
	if err == nil && size > 0 {
		m.offloadedBytes.WithLabelValues(provider).Add(float64(size))
	}
}

// PluginState records plugin id's status (pluginrt.Options.OnState): its
// state gauge, and its relaunches since the last status seen.
func (m *Metrics) PluginState(id string, st pluginrt.Status) {
	for _, s := range pluginStates {
		v := 0.0
		if s == st.State {
			v = 1
		}
		m.pluginState.WithLabelValues(id, string(s)).Set(v)
	}
	m.restartsMu.Lock()
	prev, seen := m.restartsSeen[id]
	m.restartsSeen[id] = st.Restarts
	m.restartsMu.Unlock()
	c := m.pluginRestarts.WithLabelValues(id)
	if seen && st.Restarts > prev {
		c.Add(float64(st.Restarts - prev))
	} else if !seen && st.Restarts > 0 {
		c.Add(float64(st.Restarts))
	}
}

// PluginCall records a call of method to plugin id that took d
// (pluginrt.Options.OnCall).
func (m *Metrics) PluginCall(id, method string, d time.Duration) {
	m.rpcDuration.WithLabelValues(id, method).Observe(d.Seconds())
}

// MarketplaceOperation counts a marketplace operation ("install",
// "update" or "uninstall") that ended with outcome ("ok", "unchanged",
// "payment_required" or "failed").
func (m *Metrics) MarketplaceOperation(operation, outcome string) {
	m.marketplaceOps.WithLabelValues(operation, outcome).Inc()
}
