package results

import (
	"context"
	"fmt"
	"time"

	"github.com/magicads/r2storage/shared/storage"
)

// ProviderJobs summarises one provider's jobs and its latest outcomes on
// this node, for the admin.
type ProviderJobs struct {
	// Pending counts the jobs waiting or running (not failed).
	Pending int `json:"pending"`
	// Failed counts the jobs parked as failed: a permanent error stopped
	// them; they run again when the admin retries them or the provider's
	// settings change.
	Failed int `json:"failed"`
	// LastError is the error of the latest failed attempt to the
	// provider, "" when the latest attempt succeeded (or none was made).
	LastError string `json:"last_error"`
	// LastCode is LastError's contract code.
	LastCode storage.ErrorCode `json:"-"`
	// LastErrorAt is when LastError happened (zero without one).
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// LastSuccessAt is when an attempt to the provider last succeeded.
	LastSuccessAt time.Time `json:"last_success_at,omitzero"`
}

// seenStats are the latest outcomes of this node's attempts to one
// provider.
type seenStats struct {
	lastError   string
	lastCode    storage.ErrorCode
	lastErrorAt time.Time
	lastSuccess time.Time
}

// noteOutcome records an attempt's outcome in the node's statistics: a
// success clears the last error; a retry or a failure sets it. Outcomes
// that reached no provider (a local file, a dropped job) are not counted.
func (s *Service) noteOutcome(j *job, out outcome) {
	id := out.about
	if id == "" || id == Local {
		return
	}
	now := s.now()
	s.seenMu.Lock()
	defer s.seenMu.Unlock()
	st := s.seen[id]
	if st == nil {
		st = &seenStats{}
		s.seen[id] = st
	}
	switch {
	case out.state == stateDone:
		st.lastSuccess = now
		st.lastError, st.lastCode, st.lastErrorAt = "", storage.Unknown, time.Time{}
	case (out.state == stateRetry || out.state == stateFail) && out.err != nil && !out.handoff:
		st.lastError = fmt.Sprintf("%s of result %s: %s", j.kind, j.resultID, short(out.err))
		st.lastCode, st.lastErrorAt = out.code, now
	}
}

// JobStats returns, per provider id, its jobs (from the database, for
// every node) and the latest outcomes of this node's attempts to it
// (since this process started). Local deletes are under "local"; offloads
// queued for whatever Default Storage names when they run are under "".
func (s *Service) JobStats(ctx context.Context) (map[string]ProviderJobs, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT provider, state, COUNT(*) FROM jobs GROUP BY provider, state`)
	if err != nil {
		return nil, fmt.Errorf("results: counting the jobs per provider: %w", err)
	}
	defer rows.Close()
	out := map[string]ProviderJobs{}
	for rows.Next() {
		var provider, state string
		var n int
		if err := rows.Scan(&provider, &state, &n); err != nil {
			return nil, fmt.Errorf("results: counting the jobs per provider: %w", err)
		}
		pj := out[provider]
		if state == jobFailed {
			pj.Failed += n
		} else {
			pj.Pending += n
		}
		out[provider] = pj
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("results: counting the jobs per provider: %w", err)
	}
	s.seenMu.Lock()
	defer s.seenMu.Unlock()
	for id, st := range s.seen {
		pj := out[id]
		pj.LastError, pj.LastCode, pj.LastErrorAt, pj.LastSuccessAt = st.lastError, st.lastCode, st.lastErrorAt, st.lastSuccess
		out[id] = pj
	}
	return out, nil
}

// RetryFailed makes every failed job of provider due now again and returns
// how many. The providers manager calls it when the provider's settings
// were saved and applied; an admin's retry calls it too.
func (s *Service) RetryFailed(ctx context.Context, provider string) (int64, error) {
	fail := func(err error) (int64, error) {
		return 0, fmt.Errorf("results: retrying the failed jobs of %s: %w", provider, err)
	}
	now := s.now()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fail(err)
	}
	defer rollback(tx)
	if _, err := tx.ExecContext(ctx, `UPDATE results SET local_reason = $1
		WHERE storage = $2 AND id IN (SELECT result_id FROM jobs WHERE kind = $3 AND provider = $4 AND state = $5)`,
		short(fmt.Errorf("queued for %s: trying again after its upload failed", provider)), Local, kindOffload, provider, jobFailed); err != nil {
		return fail(err)
	}
	res, err := tx.ExecContext(ctx, `UPDATE jobs SET state = $1, next_attempt_at = $2 WHERE provider = $3 AND state = $4`,
		jobQueued, dbTime(now), provider, jobFailed)
	if err != nil {
		return fail(err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fail(err)
	}
	if err := tx.Commit(); err != nil {
		return fail(err)
	}
	if n > 0 {
		s.log.Info("results: failed jobs queued again", "provider", provider, "jobs", n)
		s.nudge()
	}
	return n, nil
}
