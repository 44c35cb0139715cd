package results

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
)

// The storage overview an admin watches: where the live results are, what
// offloading has reclaimed on the local disk, the jobs waiting or parked as
// failed, and the active bulk operation. Everything here reads the
// database, except RetryJob, the overview's Retry of one failed job.

// ProviderLocations are one provider's live results.
type ProviderLocations struct {
	// Provider is the provider id.
	Provider string `json:"provider"`
	// WithLocalCopy are the results stored in the provider that keep a
	// copy on the local disk.
	WithLocalCopy BulkCount `json:"with_local_copy"`
	// ProviderOnly are the results stored in the provider only (their
	// local copy was removed after the offload).
	ProviderOnly BulkCount `json:"provider_only"`
}

// Locations are the live results by where they are.
type Locations struct {
	// LocalOnly are the results on the local disk only.
	LocalOnly BulkCount `json:"local_only"`
	// Providers are the results stored in each provider, by provider id.
	Providers []ProviderLocations `json:"providers"`
	// ReclaimedBytes is the local disk reclaimed so far: the bytes of the
	// live results whose local copy was removed after their offload.
	ReclaimedBytes int64 `json:"reclaimed_bytes"`
}

// FailedJob is a job parked as failed, waiting for a retry.
type FailedJob struct {
	// ID identifies the job (POST /api/v1/admin/storage/jobs/{id}/retry).
	ID int64 `json:"id"`
	// ResultID is the result the job is about.
	ResultID string `json:"result_id"`
	// Provider is the provider the job goes to ("local" for the local
	// disk's deletes, "" for an offload to whatever Default Storage names).
	Provider string `json:"provider"`
	// Kind is offload, delete or restore.
	Kind string `json:"kind"`
	// Attempts counts the attempts made.
	Attempts int64 `json:"attempts"`
	// LastError is the error of its last attempt.
	LastError string `json:"last_error"`
}

// JobCounts are the queue's jobs (all nodes).
type JobCounts struct {
	// Pending counts the jobs waiting or running.
	Pending int64 `json:"pending"`
	// Failed counts the jobs parked as failed.
	Failed int64 `json:"failed"`
	// Failures are the latest failed jobs, newest first.
	Failures []FailedJob `json:"failures"`
}

// Locations returns the live results by location and the local disk
// reclaimed by offloading.
func (s *Service) Locations(ctx context.Context) (Locations, error) {
	out := Locations{Providers: []ProviderLocations{}}
	rows, err := s.db.QueryContext(ctx, `SELECT storage, local_present, COUNT(*), COALESCE(SUM(size), 0) FROM results WHERE deleted = $1 GROUP BY storage, local_present`, false)
	if err != nil {
		return out, fmt.Errorf("results: counting the results by location: %w", err)
	}
	defer rows.Close()
	byProvider := map[string]*ProviderLocations{}
	for rows.Next() {
		var storage string
		var present dbBool
		var c BulkCount
		if err := rows.Scan(&storage, &present, &c.Results, &c.Bytes); err != nil {
			return out, fmt.Errorf("results: counting the results by location: %w", err)
		}
		if storage == Local {
			out.LocalOnly.Results += c.Results
			out.LocalOnly.Bytes += c.Bytes
			continue
		}
		p := byProvider[storage]
		if p == nil {
			p = &ProviderLocations{Provider: storage}
			byProvider[storage] = p
		}
		if present {
			p.WithLocalCopy.Results += c.Results
			p.WithLocalCopy.Bytes += c.Bytes
		} else {
			p.ProviderOnly.Results += c.Results
			p.ProviderOnly.Bytes += c.Bytes
			out.ReclaimedBytes += c.Bytes
		}
	}
	if err := rows.Err(); err != nil {
		return out, fmt.Errorf("results: counting the results by location: %w", err)
	}
	for _, p := range byProvider {
		out.Providers = append(out.Providers, *p)
	}
	sort.Slice(out.Providers, func(i, j int) bool { return out.Providers[i].Provider < out.Providers[j].Provider })
	return out, nil
}

// Jobs returns the queue's pending and failed job counts and the latest
// limit failed jobs with their errors.
func (s *Service) Jobs(ctx context.Context, limit int) (JobCounts, error) {
	out := JobCounts{Failures: []FailedJob{}}
	fail := func(err error) (JobCounts, error) {
		return out, fmt.Errorf("results: reading the failed jobs: %w", err)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT state, COUNT(*) FROM jobs GROUP BY state`)
	if err != nil {
		return fail(err)
	}
	defer rows.Close()
	for rows.Next() {
		var state string
		var n int64
		if err := rows.Scan(&state, &n); err != nil {
			return fail(err)
		}
		if state == jobFailed {
			out.Failed += n
		} else {
			out.Pending += n
		}
	}
	if err := rows.Err(); err != nil {
		return fail(err)
	}
	rows.Close()
	frows, err := s.db.QueryContext(ctx, `SELECT id, result_id, provider, kind, attempts, last_error FROM jobs WHERE state = $1 ORDER BY id DESC LIMIT $2`, jobFailed, limit)
	if err != nil {
		return fail(err)
	}
	defer frows.Close()
	for frows.Next() {
		var j FailedJob
		if err := frows.Scan(&j.ID, &j.ResultID, &j.Provider, &j.Kind, &j.Attempts, &j.LastError); err != nil {
			return fail(err)
		}
		out.Failures = append(out.Failures, j)
	}
	if err := frows.Err(); err != nil {
		return fail(err)
	}
	return out, nil
}

// ActiveBulk returns the running or paused bulk operation; nil when there
// is none.
func (s *Service) ActiveBulk(ctx context.Context) (*BulkRun, error) {
	var id int64
	err := s.db.QueryRowContext(ctx, `SELECT id FROM bulk_runs WHERE active = $1`, "active").Scan(&id)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("results: reading the active bulk operation: %w", err)
	}
	run, err := s.BulkRun(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &run, nil
}

// ErrJobNotFailed means the job asked to be retried is not parked as
// failed (it ran meanwhile, or never existed).
var ErrJobNotFailed = errors.New("no failed job with that id")

// RetryJob makes one failed job due now, as RetryFailed does for all of a
// provider's; ErrJobNotFailed when id is not a failed job.
func (s *Service) RetryJob(ctx context.Context, id int64) error {
	fail := func(err error) error {
		return fmt.Errorf("results: retrying failed job %d: %w", id, err)
	}
	now := s.now()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fail(err)
	}
	defer rollback(tx)
	var kind, resultID, provider string
	err = tx.QueryRowContext(ctx, `SELECT kind, result_id, provider FROM jobs WHERE id = $1 AND state = $2`, id, jobFailed).Scan(&kind, &resultID, &provider)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("job %d: %w; it may have been retried or finished meanwhile, reload the overview", id, ErrJobNotFailed)
	}
	if err != nil {
		return fail(err)
	}
	if kind == kindOffload {
		target := provider
		if target == "" {
			target = "the Default Storage"
		}
		if _, err := tx.ExecContext(ctx, `UPDATE results SET local_reason = $1 WHERE storage = $2 AND id = $3`,
			short(fmt.Errorf("queued for %s: trying again after its upload failed", target)), Local, resultID); err != nil {
			return fail(err)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE jobs SET state = $1, next_attempt_at = $2 WHERE id = $3 AND state = $4`,
		jobQueued, dbTime(now), id, jobFailed); err != nil {
		return fail(err)
	}
	if err := tx.Commit(); err != nil {
		return fail(err)
	}
	s.log.Info("results: failed job queued again", "job", id, "kind", kind, "provider", provider)
	s.nudge()
	return nil
}
