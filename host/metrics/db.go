package metrics

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Locations of results (the location label of the results gauges).
const (
	// LocationLocalOnly: on the results disk only.
	LocationLocalOnly = "local_only"
	// LocationProviderWithLocalCopy: in a provider, with a copy on the results disk.
	LocationProviderWithLocalCopy = "provider_with_local_copy"
	// LocationProviderOnly: in a provider only.
	LocationProviderOnly = "provider_only"
)

// Job states of the queue gauges.
const (
	statePending = "pending"
	stateFailed  = "failed"
)

var (
	queueJobsDesc = prometheus.NewDesc(namespace+"_queue_jobs",
		"Jobs in the queue (all nodes) by kind (offload, delete, restore), provider and state: pending (waiting or running) or failed (parked until retried).",
		[]string{"kind", "provider", "state"}, nil)
	queueOldestDesc = prometheus.NewDesc(namespace+"_queue_oldest_pending_job_age_seconds",
		"Age of the oldest pending job (all nodes) by kind and provider; 0 when none is pending.",
		[]string{"kind", "provider"}, nil)
	resultsDesc = prometheus.NewDesc(namespace+"_results",
		"Live results by location (local_only, provider_with_local_copy, provider_only) and provider (local for the results disk).",
		[]string{"location", "provider"}, nil)
	resultsBytesDesc = prometheus.NewDesc(namespace+"_results_bytes",
		"Bytes of live results by location and provider.",
		[]string{"location", "provider"}, nil)
)

// dbCollector reads the job queue and the results' locations from the
// database at scrape time: a few GROUP BY queries over low-cardinality
// columns, bounded by timeout.
type dbCollector struct {
	db      *sql.DB
	timeout time.Duration
	log     *slog.Logger
}

// Describe sends the descriptors of the database metrics.
func (c *dbCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queueJobsDesc
	ch <- queueOldestDesc
	ch <- resultsDesc
	ch <- resultsBytesDesc
}

// Collect queries the database. A query that fails sends an invalid
// metric naming the error, so the scrape says it (Handler serves the
// rest).
func (c *dbCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	if err := c.collectQueue(ctx, ch); err != nil {
		ch <- prometheus.NewInvalidMetric(queueJobsDesc, err)
	}
	if err := c.collectResults(ctx, ch); err != nil {
		ch <- prometheus.NewInvalidMetric(resultsDesc, err)
	}
}

// queueKey is one series of the queue gauges.
type queueKey struct{ kind, provider string }

// queueCounts are one queueKey's jobs.
type queueCounts struct {
	pending, failed int64
	oldest          time.Time // the oldest pending job's creation; zero without one
}

// collectQueue sends the queue gauges: a series for every kind and
// provider with jobs, and zeros for the installed plugins' offloads and
// deletes and the results disk's deletes, so that a queue that empties
// reads 0 rather than vanishing.
func (c *dbCollector) collectQueue(ctx context.Context, ch chan<- prometheus.Metric) error {
	counts := map[queueKey]*queueCounts{{kindDelete, localProvider}: {}}
	ids, err := c.strings(ctx, "SELECT id FROM plugins")
	if err != nil {
		return fmt.Errorf("metrics: reading the installed plugins: %w", err)
	}
	for _, id := range ids {
		counts[queueKey{kindOffload, id}] = &queueCounts{}
		counts[queueKey{kindDelete, id}] = &queueCounts{}
	}
	rows, err := c.db.QueryContext(ctx, `SELECT kind, provider, state, COUNT(*), MIN(created_at) FROM jobs GROUP BY kind, provider, state`)
	if err != nil {
		return fmt.Errorf("metrics: counting the queued jobs: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k queueKey
		var state string
		var n int64
		var oldest any
		if err := rows.Scan(&k.kind, &k.provider, &state, &n, &oldest); err != nil {
			return fmt.Errorf("metrics: counting the queued jobs: %w", err)
		}
		qc := counts[k]
		if qc == nil {
			qc = &queueCounts{}
			counts[k] = qc
		}
		if state == stateFailed {
			qc.failed += n
			continue
		}
		qc.pending += n
		t, err := parseTime(oldest)
		if err != nil {
			return fmt.Errorf("metrics: reading the oldest job's creation time: %w", err)
		}
		if qc.oldest.IsZero() || t.Before(qc.oldest) {
			qc.oldest = t
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("metrics: counting the queued jobs: %w", err)
	}
	now := time.Now()
	for k, qc := range counts {
		ch <- prometheus.MustNewConstMetric(queueJobsDesc, prometheus.GaugeValue, float64(qc.pending), k.kind, k.provider, statePending)
		ch <- prometheus.MustNewConstMetric(queueJobsDesc, prometheus.GaugeValue, float64(qc.failed), k.kind, k.provider, stateFailed)
		age := 0.0
		if !qc.oldest.IsZero() {
			age = max(now.Sub(qc.oldest).Seconds(), 0)
		}
		ch <- prometheus.MustNewConstMetric(queueOldestDesc, prometheus.GaugeValue, age, k.kind, k.provider)
	}
	return nil
}

// resultKey is one series of the results gauges.
type resultKey struct{ location, provider string }

// collectResults sends the live results' count and bytes by location,
// with a series for the results disk always.
func (c *dbCollector) collectResults(ctx context.Context, ch chan<- prometheus.Metric) error {
	type sums struct{ n, bytes int64 }
	out := map[resultKey]*sums{{LocationLocalOnly, localProvider}: {}}
	rows, err := c.db.QueryContext(ctx, `SELECT storage, local_present, COUNT(*), COALESCE(SUM(size), 0) FROM results WHERE deleted = $1 GROUP BY storage, local_present`, false)
	if err != nil {
		return fmt.Errorf("metrics: counting the results by location: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var storage string
		var local any
		var n, size int64
		if err := rows.Scan(&storage, &local, &n, &size); err != nil {
			return fmt.Errorf("metrics: counting the results by location: %w", err)
		}
		present, err := parseBool(local)
		if err != nil {
			return fmt.Errorf("metrics: counting the results by location: %w", err)
		}
		k := resultKey{LocationProviderOnly, storage}
		switch {
		case storage == localProvider:
			k.location = LocationLocalOnly
		case present:
			k.location = LocationProviderWithLocalCopy
		}
		s := out[k]
		if s == nil {
			s = &sums{}
			out[k] = s
		}
		s.n += n
		s.bytes += size
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("metrics: counting the results by location: %w", err)
	}
	for k, s := range out {
		ch <- prometheus.MustNewConstMetric(resultsDesc, prometheus.GaugeValue, float64(s.n), k.location, k.provider)
		ch <- prometheus.MustNewConstMetric(resultsBytesDesc, prometheus.GaugeValue, float64(s.bytes), k.location, k.provider)
	}
	return nil
}

// strings runs a query of one text column.
func (c *dbCollector) strings(ctx context.Context, query string) ([]string, error) {
	rows, err := c.db.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// parseTime reads a timestamp as the drivers return it: time.Time
// (PostgreSQL) or text (SQLite, where the results service writes UTC
// "2006-01-02 15:04:05.000000+00:00").
func parseTime(v any) (time.Time, error) {
	switch x := v.(type) {
	case time.Time:
		return x, nil
	case []byte:
		return parseTime(string(x))
	case string:
		for _, layout := range []string{"2006-01-02 15:04:05.999999999-07:00", time.RFC3339Nano, "2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999"} {
			if t, err := time.Parse(layout, x); err == nil {
				return t, nil
			}
		}
		return time.Time{}, fmt.Errorf("%q is not a timestamp", x)
	}
	return time.Time{}, fmt.Errorf("cannot read %T as a timestamp", v)
}

// parseBool reads a boolean column: BOOLEAN on PostgreSQL, INTEGER on
// SQLite.
func parseBool(v any) (bool, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case int64:
		return x != 0, nil
	case []byte:
		return parseBool(string(x))
	case string:
		switch strings.ToLower(x) {
		case "1", "t", "true":
			return true, nil
		case "0", "f", "false":
			return false, nil
		}
		return false, fmt.Errorf("%q is not a boolean", x)
	}
	return false, fmt.Errorf("cannot read %T as a boolean", v)
}

// sprint joins v as fmt.Sprintln does, without the newline.
func sprint(v ...any) string { return strings.TrimSuffix(fmt.Sprintln(v...), "\n") }
