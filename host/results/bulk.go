package results

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/magicads/r2storage/shared/storage"
)

// Bulk operations: an admin offloads every local result to the Default
// Storage provider, or brings every result of a provider back to the local
// disk, and watches, pauses, resumes or cancels the operation.
//
// An operation is a bulk_runs row and, taken when it starts, one bulk_items
// row per result it covers. The work itself is done by the ordinary leased
// jobs (offload jobs, and restore jobs the other way), so it runs on every
// node sharing the database, survives restarts, and never runs one result
// on two nodes at once. Each node's feeder (runBulk, started by RunWorker)
// keeps at most bulkWindow jobs of a running operation queued, and marks
// items done, failed or skipped from what the results and jobs tables say:
// progress is always what the database holds. Choosing a Default Storage
// never starts an operation; only StartBulk does.

// Bulk directions.
const (
	// BulkOffload uploads local results to the Default Storage provider.
	BulkOffload = "offload"
	// BulkLocal brings a provider's results back to the local disk.
	BulkLocal = "local"
)

// Bulk run states.
const (
	// BulkRunning: jobs are being queued and run.
	BulkRunning = "running"
	// BulkPaused: no new jobs are queued; jobs already running finish.
	BulkPaused = "paused"
	// BulkCancelled: stopped for good; jobs already running finish.
	BulkCancelled = "cancelled"
	// BulkDone: every item was handled (done, failed or skipped).
	BulkDone = "done"
)

// Bulk item states, as in the bulk_items table.
const (
	itemPending   = "pending"
	itemQueued    = "queued"
	itemDone      = "done"
	itemFailed    = "failed"
	itemSkipped   = "skipped"
	itemCancelled = "cancelled"
)

// ErrBulkConflict means a bulk operation cannot start or change state now
// (another one is active, Default Storage does not allow it, the run is
// not in a state that allows the action); the wrapped message names the
// cause and the fix.
var ErrBulkConflict = errors.New("bulk operation conflict")

const (
	// bulkWindowPerWorker times Options.Workers is how many jobs of a
	// running operation each feeder keeps queued: enough for the workers
	// to run through between two feeder steps.
	bulkWindowPerWorker = 32
	// bulkStepGap is the least time between two feeder steps: the jobs
	// settle their own items (settleBulkItem), so the feeder only tops up
	// the window and settles what ended otherwise, a few times a second
	// however fast the jobs end.
	bulkStepGap = 100 * time.Millisecond
	// bulkBatch bounds the rows one feeder step reads.
	bulkBatch = 500
	// maxBulkFailures is how many failures BulkRun lists.
	maxBulkFailures = 50
)

// BulkRequest asks for a bulk operation.
type BulkRequest struct {
	// Direction is BulkOffload or BulkLocal.
	Direction string
	// Provider is the provider to bring results back from (BulkLocal); for
	// BulkOffload it may be "" or must name the Default Storage provider.
	Provider string
	// DeleteRemote deletes each remote object once its local copy is
	// verified and recorded (BulkLocal only).
	DeleteRemote bool
}

// BulkCount is a number of results and their bytes.
type BulkCount struct {
	// Results counts results.
	Results int64 `json:"results"`
	// Bytes is their total size.
	Bytes int64 `json:"bytes"`
}

// BulkRate is a measured throughput.
type BulkRate struct {
	// BytesPerSecond and ResultsPerSecond are the throughput.
	BytesPerSecond   float64 `json:"bytes_per_second"`
	ResultsPerSecond float64 `json:"results_per_second"`
	// MeasuredBy says how it was measured.
	MeasuredBy string `json:"measured_by"`
}

// BulkPlan is the dry run of a bulk operation: what it would move.
type BulkPlan struct {
	// Direction and Provider are the operation's.
	Direction string `json:"direction"`
	Provider  string `json:"provider"`
	// DeleteLocal is the provider's Delete local copy after upload setting
	// (BulkOffload); DeleteRemote the request's (BulkLocal).
	DeleteLocal  bool `json:"delete_local"`
	DeleteRemote bool `json:"delete_remote"`
	// Total is what the operation covers: local-only results for an
	// offload, the provider's results for a bring back.
	Total BulkCount `json:"total"`
	// Download is, for a bring back, what has no local copy and must be
	// downloaded.
	Download BulkCount `json:"download"`
	// Rate is the measured rate the estimate uses; nil when none was
	// measured yet.
	Rate *BulkRate `json:"rate"`
	// EstimatedSeconds is Total.Bytes (Download.Bytes for a bring back)
	// at Rate; nil without a rate.
	EstimatedSeconds *float64 `json:"estimated_seconds"`
	// Note explains the estimate.
	Note string `json:"note"`
}

// BulkFailure is one result an operation could not move.
type BulkFailure struct {
	// ResultID is the result.
	ResultID string `json:"result_id"`
	// Error says why, and what to do.
	Error string `json:"error"`
}

// BulkRun is a bulk operation and its progress.
type BulkRun struct {
	// ID identifies the run.
	ID int64 `json:"id"`
	// Direction, Provider and DeleteRemote are the request's.
	Direction    string `json:"direction"`
	Provider     string `json:"provider"`
	DeleteRemote bool   `json:"delete_remote"`
	// State is BulkRunning, BulkPaused, BulkCancelled or BulkDone.
	State string `json:"state"`
	// Total is what the run covers; Done, Failed, Skipped (deleted or
	// moved meanwhile), Cancelled and Remaining (not handled yet, InFlight
	// of them queued or running) split it.
	Total     BulkCount `json:"total"`
	Done      BulkCount `json:"done"`
	Failed    BulkCount `json:"failed"`
	Skipped   BulkCount `json:"skipped"`
	Cancelled BulkCount `json:"cancelled"`
	Remaining BulkCount `json:"remaining"`
	InFlight  int64     `json:"in_flight"`
	// RunningSeconds is how long the run has been running (pauses
	// excluded).
	RunningSeconds float64 `json:"running_seconds"`
	// Rate is Done over RunningSeconds; nil before anything was done.
	Rate *BulkRate `json:"rate"`
	// ETASeconds is Remaining.Bytes at Rate; nil when unknown or not
	// running.
	ETASeconds *float64 `json:"eta_seconds"`
	// Waiting says why a running run queues nothing right now (its
	// Default Storage changed or cannot take results); "" otherwise.
	Waiting string `json:"waiting"`
	// Failures lists the first failures (at most 50).
	Failures []BulkFailure `json:"failures"`
	// CreatedAt, UpdatedAt and FinishedAt (nil while not finished) are
	// the run's times.
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	FinishedAt *time.Time `json:"finished_at"`
}

// bulkRunRow is a bulk_runs row.
type bulkRunRow struct {
	id                         int64
	direction, provider, state string
	deleteRemote               bool
	totalResults, totalBytes   int64
	activeMS                   int64
	resumedAt                  *time.Time
	createdAt, updatedAt       time.Time
	finishedAt                 *time.Time
}

// bulkRunColumns are the columns scanBulkRun reads.
const bulkRunColumns = "id, direction, provider, delete_remote, state, total_results, total_bytes, active_ms, resumed_at, created_at, updated_at, finished_at"

// scanBulkRun reads bulkRunColumns.
func scanBulkRun(sc scanner) (bulkRunRow, error) {
	var r bulkRunRow
	var del dbBool
	var resumed, finished, created, updated any
	if err := sc.Scan(&r.id, &r.direction, &r.provider, &del, &r.state, &r.totalResults, &r.totalBytes, &r.activeMS, &resumed, &created, &updated, &finished); err != nil {
		return r, err
	}
	r.deleteRemote = bool(del)
	var err error
	if r.resumedAt, err = optTime(resumed); err != nil {
		return r, err
	}
	if r.finishedAt, err = optTime(finished); err != nil {
		return r, err
	}
	var t dbTimeValue
	if err := t.Scan(created); err != nil {
		return r, err
	}
	r.createdAt = time.Time(t)
	if err := t.Scan(updated); err != nil {
		return r, err
	}
	r.updatedAt = time.Time(t)
	return r, nil
}

// optTime scans a nullable timestamp.
func optTime(v any) (*time.Time, error) {
	if v == nil {
		return nil, nil
	}
	var t dbTimeValue
	if err := t.Scan(v); err != nil {
		return nil, err
	}
	tt := time.Time(t)
	return &tt, nil
}

// runningFor is how long r has been running, as of now.
func (r bulkRunRow) runningFor(now time.Time) time.Duration {
	d := time.Duration(r.activeMS) * time.Millisecond
	if r.resumedAt != nil && now.After(*r.resumedAt) {
		d += now.Sub(*r.resumedAt)
	}
	return d
}

// loadBulkRun reads run id; sql.ErrNoRows when missing.
func loadBulkRun(ctx context.Context, q interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}, id int64) (bulkRunRow, error) {
	return scanBulkRun(q.QueryRowContext(ctx, "SELECT "+bulkRunColumns+" FROM bulk_runs WHERE id = $1", id))
}

// bulkNudge wakes the bulk feeder.
func (s *Service) bulkNudge() {
	select {
	case s.bulkWake <- struct{}{}:
	default:
	}
}

// bulkWindow is how many jobs of a running operation a feeder keeps queued.
func (s *Service) bulkWindow() int { return bulkWindowPerWorker * s.opts.Workers }

// resolveBulk checks a request and returns the provider it concerns and,
// for an offload, the provider's Delete local copy setting.
func (s *Service) resolveBulk(ctx context.Context, req BulkRequest, starting bool) (string, bool, error) {
	switch req.Direction {
	case BulkOffload:
		if req.DeleteRemote {
			return "", false, fmt.Errorf("%w: delete_remote applies to direction %q only; leave it false for an offload", ErrInvalid, BulkLocal)
		}
		r := s.router.Route(ctx)
		switch {
		case r.Guess:
			return "", false, fmt.Errorf("%w: the Default Storage setting cannot be read right now (%s); try again when the database answers", ErrBulkConflict, r.Reason)
		case r.Default == Local || r.Default == "":
			return "", false, fmt.Errorf("%w: Default Storage is local, so there is nowhere to offload to; choose a provider as Default Storage first (choosing it moves nothing by itself), then start the offload", ErrBulkConflict)
		case req.Provider != "" && req.Provider != r.Default:
			return "", false, fmt.Errorf("%w: results are offloaded to the Default Storage, which is %s, not %s; choose %s as Default Storage first, or leave provider empty", ErrBulkConflict, r.Default, req.Provider, req.Provider)
		}
		if starting && (r.State != RouteReady || r.Target.ID != r.Default) {
			reason := r.Reason
			if reason == "" {
				reason = "it is not ready"
			}
			return "", false, fmt.Errorf("%w: the Default Storage %s cannot take results right now: %s; fix that (see its status and settings), then start the offload", ErrBulkConflict, r.Default, reason)
		}
		return r.Default, r.State == RouteReady && r.Target.DeleteLocal, nil
	case BulkLocal:
		if req.Provider == "" || req.Provider == Local {
			return "", false, fmt.Errorf("%w: bringing results back to local needs provider: the id of the provider they are stored in", ErrInvalid)
		}
		if starting {
			if _, ok := s.router.Provider(ctx, req.Provider); !ok {
				return "", false, fmt.Errorf("%w: provider %s is not installed or not running on this host; install or enable it, then bring its results back", ErrBulkConflict, req.Provider)
			}
		}
		return req.Provider, false, nil
	default:
		return "", false, fmt.Errorf("%w: direction %q is not %q or %q", ErrInvalid, req.Direction, BulkOffload, BulkLocal)
	}
}

// bulkSelect is the WHERE clause (over results) and its arguments ($1 and
// $2) of the results a bulk operation covers.
func bulkSelect(direction, provider string) (string, []any) {
	if direction == BulkOffload {
		return "storage = $1 AND deleted = $2 AND local_present = $3", []any{Local, false, true}
	}
	return "storage = $1 AND deleted = $2", []any{provider, false}
}

// PlanBulk is the dry run of req: how many results and bytes it would
// move and, at the rate measured by the latest operation of the same
// direction and provider, how long it would take. It changes nothing.
func (s *Service) PlanBulk(ctx context.Context, req BulkRequest) (BulkPlan, error) {
	provider, delLocal, err := s.resolveBulk(ctx, req, false)
	if err != nil {
		return BulkPlan{}, err
	}
	p := BulkPlan{Direction: req.Direction, Provider: provider, DeleteLocal: delLocal, DeleteRemote: req.DeleteRemote}
	where, args := bulkSelect(req.Direction, provider)
	if err := s.db.QueryRowContext(ctx, "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM results WHERE "+where, args...).Scan(&p.Total.Results, &p.Total.Bytes); err != nil {
		return BulkPlan{}, fmt.Errorf("results: counting the results of a bulk operation: %w", err)
	}
	work := p.Total.Bytes
	if req.Direction == BulkLocal {
		if err := s.db.QueryRowContext(ctx, "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM results WHERE "+where+" AND local_present = $3", append(args, false)...).
			Scan(&p.Download.Results, &p.Download.Bytes); err != nil {
			return BulkPlan{}, fmt.Errorf("results: counting the results of a bulk operation: %w", err)
		}
		work = p.Download.Bytes
	}
	rate, err := s.measuredRate(ctx, req.Direction, provider)
	if err != nil {
		return BulkPlan{}, err
	}
	if rate == nil {
		p.Note = fmt.Sprintf("no rate measured yet: no earlier bulk %s with %s moved anything; once started, the run's progress shows its measured rate and ETA", req.Direction, provider)
		return p, nil
	}
	p.Rate = rate
	secs := 0.0
	if work > 0 {
		secs = float64(work) / rate.BytesPerSecond
	}
	p.EstimatedSeconds = &secs
	p.Note = "estimate: the bytes to move at the rate " + rate.MeasuredBy
	return p, nil
}

// measuredRate is the rate of the latest operation of direction with
// provider that moved something: its bytes done over its running time.
func (s *Service) measuredRate(ctx context.Context, direction, provider string) (*BulkRate, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+bulkRunColumns+" FROM bulk_runs WHERE direction = $1 AND provider = $2 ORDER BY id DESC LIMIT 5", direction, provider)
	if err != nil {
		return nil, fmt.Errorf("results: reading earlier bulk operations: %w", err)
	}
	var runs []bulkRunRow
	for rows.Next() {
		r, err := scanBulkRun(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("results: reading earlier bulk operations: %w", err)
		}
		runs = append(runs, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("results: reading earlier bulk operations: %w", err)
	}
	now := s.now()
	for _, r := range runs {
		var done BulkCount
		if err := s.db.QueryRowContext(ctx, "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM bulk_items WHERE run_id = $1 AND state = $2", r.id, itemDone).Scan(&done.Results, &done.Bytes); err != nil {
			return nil, fmt.Errorf("results: reading earlier bulk operations: %w", err)
		}
		if rate := rateOf(r, done, now); rate != nil {
			rate.MeasuredBy = fmt.Sprintf("measured by bulk run %d: %d results (%d bytes) in %.1f s of running time", r.id, done.Results, done.Bytes, r.runningFor(now).Seconds())
			return rate, nil
		}
	}
	return nil, nil
}

// rateOf is done over r's running time, nil when nothing was done yet.
func rateOf(r bulkRunRow, done BulkCount, now time.Time) *BulkRate {
	secs := r.runningFor(now).Seconds()
	if done.Results == 0 || secs <= 0 {
		return nil
	}
	return &BulkRate{BytesPerSecond: float64(done.Bytes) / secs, ResultsPerSecond: float64(done.Results) / secs}
}

// StartBulk starts a bulk operation: it takes the results req covers now
// and returns the run, which the workers of every node then carry out. Only
// one operation is active (running or paused) at a time.
func (s *Service) StartBulk(ctx context.Context, req BulkRequest) (BulkRun, error) {
	provider, _, err := s.resolveBulk(ctx, req, true)
	if err != nil {
		return BulkRun{}, err
	}
	now := s.now()
	id, err := s.createRun(ctx, req, provider, now)
	if err != nil {
		return BulkRun{}, err
	}
	s.log.Info("results: bulk operation started", "run", id, "direction", req.Direction, "provider", provider, "delete_remote", req.DeleteRemote)
	s.bulkNudge()
	return s.BulkRun(ctx, id)
}

// activeConflict is the error of a request made while run id is active.
func activeConflict(id int64) error {
	return fmt.Errorf("%w: bulk run %d is still active; wait for it to finish, or cancel it, before starting another", ErrBulkConflict, id)
}

// createRun records a new run and its items in one transaction.
func (s *Service) createRun(ctx context.Context, req BulkRequest, provider string, now time.Time) (int64, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("results: starting a bulk operation: %w", err)
	}
	defer rollback(tx)
	var active int64
	switch err := tx.QueryRowContext(ctx, "SELECT id FROM bulk_runs WHERE active = 'active'").Scan(&active); {
	case err == nil:
		return 0, activeConflict(active)
	case !isNoRows(err):
		return 0, fmt.Errorf("results: starting a bulk operation: %w", err)
	}
	var id int64
	if err := tx.QueryRowContext(ctx, `INSERT INTO bulk_runs (direction, provider, delete_remote, state, active, resumed_at, created_at, updated_at)
		VALUES ($1, $2, $3, $4, 'active', $5, $5, $5) RETURNING id`, req.Direction, provider, req.DeleteRemote, BulkRunning, dbTime(now)).Scan(&id); err != nil {
		if err2 := s.db.QueryRowContext(ctx, "SELECT id FROM bulk_runs WHERE active = 'active'").Scan(&active); err2 == nil {
			return 0, activeConflict(active)
		}
		return 0, fmt.Errorf("results: starting a bulk operation: %w", err)
	}
	where, args := bulkSelect(req.Direction, provider)
	n := len(args)
	args = append(args, id, itemPending, dbTime(now))
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(`INSERT INTO bulk_items (run_id, result_id, size, state, error, updated_at)
		SELECT $%d, id, size, $%d, '', $%d FROM results WHERE %s`, n+1, n+2, n+3, where), args...); err != nil {
		return 0, fmt.Errorf("results: taking the results of a bulk operation: %w", err)
	}
	var total BulkCount
	if err := tx.QueryRowContext(ctx, "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM bulk_items WHERE run_id = $1", id).Scan(&total.Results, &total.Bytes); err != nil {
		return 0, fmt.Errorf("results: starting a bulk operation: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE bulk_runs SET total_results = $1, total_bytes = $2 WHERE id = $3", total.Results, total.Bytes, id); err != nil {
		return 0, fmt.Errorf("results: starting a bulk operation: %w", err)
	}
	if total.Results == 0 {
		if _, err := tx.ExecContext(ctx, "UPDATE bulk_runs SET state = $1, active = NULL, resumed_at = NULL, finished_at = $2 WHERE id = $3", BulkDone, dbTime(now), id); err != nil {
			return 0, fmt.Errorf("results: starting a bulk operation: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("results: starting a bulk operation: %w", err)
	}
	return id, nil
}

// BulkRun returns run id with its progress, counted from the database;
// ErrNotFound when there is no such run.
func (s *Service) BulkRun(ctx context.Context, id int64) (BulkRun, error) {
	r, err := loadBulkRun(ctx, s.db, id)
	if isNoRows(err) {
		return BulkRun{}, fmt.Errorf("bulk run %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return BulkRun{}, fmt.Errorf("results: reading bulk run %d: %w", id, err)
	}
	out := BulkRun{ID: r.id, Direction: r.direction, Provider: r.provider, DeleteRemote: r.deleteRemote, State: r.state,
		Total: BulkCount{Results: r.totalResults, Bytes: r.totalBytes}, CreatedAt: r.createdAt, UpdatedAt: r.updatedAt, FinishedAt: r.finishedAt, Failures: []BulkFailure{}}
	rows, err := s.db.QueryContext(ctx, "SELECT state, COUNT(*), COALESCE(SUM(size), 0) FROM bulk_items WHERE run_id = $1 GROUP BY state", id)
	if err != nil {
		return BulkRun{}, fmt.Errorf("results: counting the progress of bulk run %d: %w", id, err)
	}
	for rows.Next() {
		var state string
		var c BulkCount
		if err := rows.Scan(&state, &c.Results, &c.Bytes); err != nil {
			rows.Close()
			return BulkRun{}, fmt.Errorf("results: counting the progress of bulk run %d: %w", id, err)
		}
		switch state {
		case itemDone:
			out.Done = c
		case itemFailed:
			out.Failed = c
		case itemSkipped:
			out.Skipped = c
		case itemCancelled:
			out.Cancelled = c
		case itemQueued:
			out.InFlight = c.Results
			fallthrough
		default:
			out.Remaining.Results += c.Results
			out.Remaining.Bytes += c.Bytes
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return BulkRun{}, fmt.Errorf("results: counting the progress of bulk run %d: %w", id, err)
	}
	frows, err := s.db.QueryContext(ctx, fmt.Sprintf("SELECT result_id, error FROM bulk_items WHERE run_id = $1 AND state = $2 ORDER BY updated_at, result_id LIMIT %d", maxBulkFailures), id, itemFailed)
	if err != nil {
		return BulkRun{}, fmt.Errorf("results: reading the failures of bulk run %d: %w", id, err)
	}
	for frows.Next() {
		var f BulkFailure
		if err := frows.Scan(&f.ResultID, &f.Error); err != nil {
			frows.Close()
			return BulkRun{}, fmt.Errorf("results: reading the failures of bulk run %d: %w", id, err)
		}
		out.Failures = append(out.Failures, f)
	}
	frows.Close()
	if err := frows.Err(); err != nil {
		return BulkRun{}, fmt.Errorf("results: reading the failures of bulk run %d: %w", id, err)
	}
	if r.state == BulkRunning && r.direction == BulkOffload {
		out.Waiting = s.offloadBlocked(ctx, r.provider)
	}
	now := s.now()
	if r.finishedAt != nil {
		now = *r.finishedAt
	}
	out.RunningSeconds = r.runningFor(now).Seconds()
	if rate := rateOf(r, out.Done, now); rate != nil {
		rate.MeasuredBy = "this run: results and bytes done over its running time (pauses excluded)"
		out.Rate = rate
		if r.state == BulkRunning {
			eta := float64(out.Remaining.Bytes) / rate.BytesPerSecond
			out.ETASeconds = &eta
		}
	}
	return out, nil
}

// BulkRuns returns the latest bulk runs, newest first (at most limit,
// default 20).
func (s *Service) BulkRuns(ctx context.Context, limit int) ([]BulkRun, error) {
	if limit <= 0 || limit > 100 {
		limit = 20
	}
	rows, err := s.db.direct().QueryContext(ctx, fmt.Sprintf("SELECT id FROM bulk_runs ORDER BY id DESC LIMIT %d", limit))
	if err != nil {
		return nil, fmt.Errorf("results: listing bulk runs: %w", err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("results: listing bulk runs: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("results: listing bulk runs: %w", err)
	}
	out := []BulkRun{}
	for _, id := range ids {
		r, err := s.BulkRun(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// stateConflict is the error of an action refused in run r's state.
func stateConflict(r bulkRunRow, action, allowed string) error {
	return fmt.Errorf("%w: bulk run %d is %s; only a %s run can be %s", ErrBulkConflict, r.id, r.state, allowed, action)
}

// PauseBulk pauses running run id: no new jobs are queued, its queued jobs
// not yet running are taken back, and jobs already running finish.
func (s *Service) PauseBulk(ctx context.Context, id int64) (BulkRun, error) {
	return s.stopBulk(ctx, id, false)
}

// CancelBulk cancels running or paused run id: what is not done yet is
// cancelled; jobs already running finish, so every result ends in one
// recorded place.
func (s *Service) CancelBulk(ctx context.Context, id int64) (BulkRun, error) {
	return s.stopBulk(ctx, id, true)
}

// stopBulk pauses (cancel=false) or cancels run id.
func (s *Service) stopBulk(ctx context.Context, id int64, cancel bool) (BulkRun, error) {
	op := "paused"
	if cancel {
		op = "cancelled"
	}
	now := s.now()
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		r, err := loadBulkRun(ctx, tx, id)
		if isNoRows(err) {
			return fmt.Errorf("bulk run %d: %w", id, ErrNotFound)
		}
		if err != nil {
			return err
		}
		ms := r.runningFor(now).Milliseconds()
		var res sql.Result
		switch {
		case cancel && (r.state == BulkRunning || r.state == BulkPaused):
			res, err = tx.ExecContext(ctx, "UPDATE bulk_runs SET state = $1, active = NULL, active_ms = $2, resumed_at = NULL, updated_at = $3 WHERE id = $4 AND state = $5",
				BulkCancelled, ms, dbTime(now), id, r.state)
		case !cancel && r.state == BulkRunning:
			res, err = tx.ExecContext(ctx, "UPDATE bulk_runs SET state = $1, active_ms = $2, resumed_at = NULL, updated_at = $3 WHERE id = $4 AND state = $5",
				BulkPaused, ms, dbTime(now), id, r.state)
		case cancel:
			return stateConflict(r, op, "running or paused")
		default:
			return stateConflict(r, op, "running")
		}
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != 1 {
			return fmt.Errorf("%w: bulk run %d changed meanwhile; read it and try again", ErrBulkConflict, id)
		}
		// Take back the queued jobs no node is running.
		rows, err := tx.QueryContext(ctx, `DELETE FROM jobs WHERE bulk_run = $1 AND state = $2 AND (locked_until IS NULL OR locked_until < $3) RETURNING result_id`,
			id, jobQueued, dbTime(now))
		if err != nil {
			return err
		}
		var back []string
		for rows.Next() {
			var rid string
			if err := rows.Scan(&rid); err != nil {
				rows.Close()
				return err
			}
			back = append(back, rid)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		to := itemPending
		if cancel {
			to = itemCancelled
		}
		for _, rid := range back {
			if _, err := tx.ExecContext(ctx, "UPDATE bulk_items SET state = $1, updated_at = $2 WHERE run_id = $3 AND result_id = $4 AND state = $5",
				to, dbTime(now), id, rid, itemQueued); err != nil {
				return err
			}
		}
		if cancel {
			if _, err := tx.ExecContext(ctx, "UPDATE bulk_items SET state = $1, updated_at = $2 WHERE run_id = $3 AND state = $4",
				itemCancelled, dbTime(now), id, itemPending); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrBulkConflict) {
			return BulkRun{}, err
		}
		return BulkRun{}, fmt.Errorf("results: bulk run %d cannot be %s: %w", id, op, err)
	}
	s.log.Info("results: bulk operation "+op, "run", id)
	s.bulkNudge()
	return s.BulkRun(ctx, id)
}

// ResumeBulk resumes paused run id.
func (s *Service) ResumeBulk(ctx context.Context, id int64) (BulkRun, error) {
	now := s.now()
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		r, err := loadBulkRun(ctx, tx, id)
		if isNoRows(err) {
			return fmt.Errorf("bulk run %d: %w", id, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if r.state != BulkPaused {
			return stateConflict(r, "resumed", "paused")
		}
		_, err = tx.ExecContext(ctx, "UPDATE bulk_runs SET state = $1, resumed_at = $2, updated_at = $2 WHERE id = $3 AND state = $4", BulkRunning, dbTime(now), id, BulkPaused)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrBulkConflict) {
			return BulkRun{}, err
		}
		return BulkRun{}, fmt.Errorf("results: bulk run %d cannot be resumed: %w", id, err)
	}
	s.log.Info("results: bulk operation resumed", "run", id)
	s.bulkNudge()
	return s.BulkRun(ctx, id)
}

// inTx runs fn in a transaction, committed when fn returns nil.
func (s *Service) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer rollback(tx)
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// sqlSettleBulkItem is the statement of settleBulkItem.
const sqlSettleBulkItem = "UPDATE bulk_items SET state = $1, updated_at = $2 WHERE run_id = $3 AND result_id = $4 AND state = $5"

// settleBulkItem marks done, in tx, the queued item of bulk run run (0 is
// none) for result id: its job just recorded the result where the run
// takes it.
func (s *Service) settleBulkItem(ctx context.Context, tx *sql.Tx, run int64, id string) error {
	if run == 0 {
		return nil
	}
	_, err := s.db.txExec(ctx, tx, sqlSettleBulkItem, itemDone, dbTime(s.now()), run, id, itemQueued)
	return err
}

// bulkClockEvery is how often a running run's clock is written.
const bulkClockEvery = time.Second

// bulkClockGap is the longest time between two clock writes that counts
// as running time: a node's feeder steps at least every PollInterval.
func bulkClockGap(o Options) time.Duration {
	return max(2*o.PollInterval+bulkStepGap, 2*bulkClockEvery)
}

// clockRun moves running run r's clock forward: the time since resumed_at,
// at most bulkClockGap, is added to active_ms and resumed_at becomes now.
// A longer gap means no node carried the run (every node was down), and
// is not running time. It writes at most every bulkClockEvery; the update is
// conditional on active_ms, so nodes doing this at once add it once.
func (s *Service) clockRun(ctx context.Context, r *bulkRunRow) error {
	if r.state != BulkRunning || r.resumedAt == nil {
		return nil
	}
	now := s.now()
	d := now.Sub(*r.resumedAt)
	if d < bulkClockEvery {
		return nil
	}
	d = min(d, bulkClockGap(s.opts))
	active := r.activeMS + d.Milliseconds()
	res, err := s.db.ExecContext(ctx, "UPDATE bulk_runs SET active_ms = $1, resumed_at = $2 WHERE id = $3 AND state = $4 AND active_ms = $5",
		active, dbTime(now), r.id, BulkRunning, r.activeMS)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err == nil && n == 1 {
		r.activeMS, r.resumedAt = active, &now
	}
	return nil
}

// runBulk is this node's bulk feeder: until ctx ends it carries the
// unfinished runs forward (bulkStep) when woken (a bulk job ended, a run
// started, paused, resumed or was cancelled), at most every bulkStepGap,
// and at least every Options.PollInterval.
func (s *Service) runBulk(ctx context.Context) {
	var last time.Time
	for {
		if wait := bulkStepGap - time.Since(last); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		last = time.Now()
		if err := s.bulkStep(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("results: carrying bulk operations forward; trying again shortly", "err", err)
		}
		t := time.NewTimer(s.opts.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.bulkWake:
		case <-t.C:
		}
		t.Stop()
	}
}

// bulkStep reconciles every unfinished run with the database, queues more
// jobs for the running ones and finishes those with nothing left.
func (s *Service) bulkStep(ctx context.Context) error {
	rows, err := s.db.QueryContext(ctx, "SELECT "+bulkRunColumns+" FROM bulk_runs WHERE finished_at IS NULL ORDER BY id")
	if err != nil {
		return err
	}
	var runs []bulkRunRow
	for rows.Next() {
		r, err := scanBulkRun(rows)
		if err != nil {
			rows.Close()
			return err
		}
		runs = append(runs, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, r := range runs {
		if err := s.clockRun(ctx, &r); err != nil {
			return fmt.Errorf("bulk run %d: %w", r.id, err)
		}
		if err := s.reconcileBulk(ctx, r); err != nil {
			return fmt.Errorf("bulk run %d: %w", r.id, err)
		}
		if r.state == BulkRunning {
			if err := s.feedBulk(ctx, r); err != nil {
				return fmt.Errorf("bulk run %d: %w", r.id, err)
			}
		}
		if err := s.finishBulk(ctx, r); err != nil {
			return fmt.Errorf("bulk run %d: %w", r.id, err)
		}
	}
	return nil
}

// jobKind is the kind of the jobs of a run.
func (r bulkRunRow) jobKind() string {
	if r.direction == BulkLocal {
		return kindRestore
	}
	return kindOffload
}

// reconcileBulk settles the queued items of r whose job ended without
// settling them (a job that moved its result marks the item done itself,
// settleBulkItem): done when the result is where the run takes it anyway,
// skipped when it was deleted or moved elsewhere meanwhile, failed (with
// the reason) when its job failed or ended otherwise. Each decision reads
// the result and its job in one statement, and the item changes only if
// still queued, so nodes doing this at once agree.
func (s *Service) reconcileBulk(ctx context.Context, r bulkRunRow) error {
	target := r.provider
	if r.direction == BulkLocal {
		target = Local
	}
	after := ""
	for {
		rows, err := s.db.QueryContext(ctx, fmt.Sprintf(`SELECT i.result_id, i.error, rr.id, COALESCE(rr.storage, ''), rr.deleted, COALESCE(rr.local_reason, ''), j.state, COALESCE(j.last_error, '')
			FROM bulk_items i LEFT JOIN results rr ON rr.id = i.result_id LEFT JOIN jobs j ON j.kind = $1 AND j.result_id = i.result_id
			WHERE i.run_id = $2 AND i.state = $3 AND i.result_id > $4 AND (j.id IS NULL OR j.state = $5) ORDER BY i.result_id LIMIT %d`, bulkBatch), r.jobKind(), r.id, itemQueued, after, jobFailed)
		if err != nil {
			return err
		}
		type change struct{ id, state, why string }
		var changes []change
		n := 0
		for rows.Next() {
			n++
			var id, itemErr, storageAt, localReason, lastErr string
			var rid, jobState sql.NullString
			var deleted dbBool
			if err := rows.Scan(&id, &itemErr, &rid, &storageAt, &deleted, &localReason, &jobState, &lastErr); err != nil {
				rows.Close()
				return err
			}
			after = id
			switch {
			case !rid.Valid || bool(deleted):
				changes = append(changes, change{id, itemSkipped, "the result was deleted"})
			case storageAt == target:
				changes = append(changes, change{id, itemDone, itemErr})
			case storageAt != Local && storageAt != r.provider:
				changes = append(changes, change{id, itemSkipped, "the result now lives in " + storageAt})
			case r.direction == BulkOffload && storageAt != Local:
				changes = append(changes, change{id, itemSkipped, "the result now lives in " + storageAt})
			case jobState.Valid && jobState.String == jobFailed:
				changes = append(changes, change{id, itemFailed, lastErr})
			case jobState.Valid:
				// Still queued or running.
			default:
				why := itemErr
				if why == "" {
					why = localReason
				}
				if why == "" {
					why = "its job ended without moving it; start another bulk operation to try again"
				}
				changes = append(changes, change{id, itemFailed, why})
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		now := dbTime(s.now())
		for _, c := range changes {
			if _, err := s.db.ExecContext(ctx, "UPDATE bulk_items SET state = $1, error = $2, updated_at = $3 WHERE run_id = $4 AND result_id = $5 AND state = $6",
				c.state, c.why, now, r.id, c.id, itemQueued); err != nil {
				return err
			}
		}
		if n < bulkBatch {
			return nil
		}
	}
}

// feedBulk queues jobs for r's pending items until bulkWindow of them are
// queued. The run is checked to be running in the same transaction, so a
// pause or cancel never misses a job queued meanwhile.
func (s *Service) feedBulk(ctx context.Context, r bulkRunRow) error {
	var queued int
	var err error
	if s.opts.SharedVolume {
		err = s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM bulk_items WHERE run_id = $1 AND state = $2", r.id, itemQueued).Scan(&queued)
	} else {
		// This node's window: the queued jobs it may run. Jobs waiting
		// for another node (down, or gone) do not hold this node's back.
		err = s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM bulk_items i JOIN jobs j ON j.kind = $3 AND j.result_id = i.result_id
			WHERE i.run_id = $1 AND i.state = $2 AND j.node IN ('', $4)`, r.id, itemQueued, r.jobKind(), s.opts.NodeID).Scan(&queued)
	}
	if err != nil {
		return err
	}
	need := s.bulkWindow() - queued
	if need <= 0 {
		return nil
	}
	if r.direction == BulkOffload && s.offloadBlocked(ctx, r.provider) != "" {
		return nil
	}
	var rows *sql.Rows
	if s.opts.SharedVolume {
		rows, err = s.db.direct().QueryContext(ctx, fmt.Sprintf("SELECT result_id FROM bulk_items WHERE run_id = $1 AND state = $2 ORDER BY result_id LIMIT %d", need), r.id, itemPending)
	} else {
		// The items this node may run: those whose local copy (read by
		// an offload, or checked by a restore) is in its results folder
		// or any node's; each node feeds its own.
		rows, err = s.db.direct().QueryContext(ctx, fmt.Sprintf(`SELECT i.result_id FROM bulk_items i LEFT JOIN results rr ON rr.id = i.result_id
			WHERE i.run_id = $1 AND i.state = $2 AND (rr.id IS NULL OR NOT rr.local_present OR rr.local_node IN ('', $3))
			ORDER BY i.result_id LIMIT %d`, need), r.id, itemPending, s.opts.NodeID)
	}
	if err != nil {
		return err
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	now := dbTime(s.now())
	from := Local
	if r.direction == BulkLocal {
		from = r.provider
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE bulk_runs SET updated_at = $1 WHERE id = $2 AND state = $3", now, r.id, BulkRunning)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return err // paused or cancelled meanwhile: queue nothing
		}
		// One statement each for the whole batch: the jobs of the results
		// still where the run takes them from, and the items queued.
		q, args := feedJobsQuery(r.direction, ids)
		if _, err := tx.ExecContext(ctx, q, append([]any{r.jobKind(), r.provider, now, r.id, from}, args...)...); err != nil {
			return err
		}
		in, args := inList(4, ids)
		_, err = tx.ExecContext(ctx, "UPDATE bulk_items SET state = $1, updated_at = $2 WHERE run_id = $3 AND state = $4 AND result_id IN ("+in+")",
			append([]any{itemQueued, now, r.id, itemPending}, args...)...)
		return err
	})
	if err != nil {
		return err
	}
	s.nudge()
	return nil
}

// feedJobsQuery is the statement that queues the jobs of a batch of a
// run's items (ids): $1 kind, $2 provider, $3 now, $4 run, $5 where the
// results must still be, then the ids. A job whose result has a local
// copy runs on the node holding it (an offload reads it, a restore checks
// it); a restore of a result without one runs on any node. "NOT deleted" rather than
// "deleted = false": SQLite's planner would otherwise walk its
// (deleted, …) index over every result instead of looking the ids up
// (TestFeedLooksResultsUpByID).
func feedJobsQuery(direction string, ids []string) (string, []any) {
	keyColumns := "path, ''"
	if direction == BulkLocal {
		keyColumns = "object_key, bucket"
	}
	in, args := inList(5, ids)
	return `INSERT INTO jobs (kind, result_id, provider, object_key, bucket, attempts, next_attempt_at, locked_until, locked_by, last_error, created_at, bulk_run, node)
			SELECT $1, id, $2, ` + keyColumns + `, 0, $3, NULL, '', '', $3, $4, CASE WHEN local_present THEN local_node ELSE '' END FROM results WHERE id IN (` + in + `) AND storage = $5 AND NOT deleted
			ON CONFLICT (kind, result_id) DO NOTHING`, args
}

// inList is the placeholders $after+1, $after+2, … for ids, and ids as
// arguments.
func inList(after int, ids []string) (string, []any) {
	var b strings.Builder
	args := make([]any, len(ids))
	for i, id := range ids {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("$" + strconv.Itoa(after+i+1))
		args[i] = id
	}
	return b.String(), args
}

// offloadBlocked says why an offload run to provider queues nothing right
// now, or "" when the Default Storage is provider and takes results.
func (s *Service) offloadBlocked(ctx context.Context, provider string) string {
	r := s.router.Route(ctx)
	switch {
	case r.Guess:
		return fmt.Sprintf("the Default Storage setting cannot be read right now (%s); the offload continues when it can", r.Reason)
	case r.Default != provider:
		now := r.Default
		if now == "" {
			now = Local
		}
		return fmt.Sprintf("Default Storage is now %s, not %s: this offload queues nothing until %s is Default Storage again; cancel it to stop for good", now, provider, provider)
	case r.State != RouteReady:
		reason := r.Reason
		if reason == "" {
			reason = "it is not ready"
		}
		return fmt.Sprintf("%s cannot take results right now (%s); the offload continues when it can", provider, reason)
	}
	return ""
}

// finishBulk marks r finished when nothing is left: a running run with no
// pending or queued item is done; a cancelled run is finished once its
// last running job ended.
func (s *Service) finishBulk(ctx context.Context, r bulkRunRow) error {
	var left int
	if err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM bulk_items WHERE run_id = $1 AND state IN ($2, $3)", r.id, itemPending, itemQueued).Scan(&left); err != nil {
		return err
	}
	if left > 0 {
		return nil
	}
	now := s.now()
	switch r.state {
	case BulkRunning:
		res, err := s.db.ExecContext(ctx, "UPDATE bulk_runs SET state = $1, active = NULL, active_ms = $2, resumed_at = NULL, updated_at = $3, finished_at = $3 WHERE id = $4 AND state = $5 AND finished_at IS NULL",
			BulkDone, r.runningFor(now).Milliseconds(), dbTime(now), r.id, BulkRunning)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			s.log.Info("results: bulk operation done", "run", r.id, "direction", r.direction, "provider", r.provider)
		}
	case BulkCancelled:
		if _, err := s.db.ExecContext(ctx, "UPDATE bulk_runs SET finished_at = $1, updated_at = $1 WHERE id = $2 AND state = $3 AND finished_at IS NULL", dbTime(now), r.id, BulkCancelled); err != nil {
			return err
		}
	}
	return nil
}

// noteBulkItem records why j's bulk item did not move (or a remark on a
// done one), for reconcileBulk and the progress.
func (s *Service) noteBulkItem(ctx context.Context, j *job, why string) {
	if j.bulkRun == 0 {
		return
	}
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bookkeepingTimeout)
	defer cancel()
	if _, err := s.db.ExecContext(bctx, "UPDATE bulk_items SET error = $1 WHERE run_id = $2 AND result_id = $3",
		short(errors.New(why)), j.bulkRun, j.resultID); err != nil {
		s.log.Warn("results: recording why a bulk item did not move", "run", j.bulkRun, "result", j.resultID, "err", err)
	}
}

// restoreDrop drops j, recording why on its bulk item.
func (s *Service) restoreDrop(ctx context.Context, j *job, why string, err error) outcome {
	if err != nil {
		why += ": " + short(err)
	}
	s.noteBulkItem(ctx, j, why)
	return drop(why)
}

// restoreJob brings an offloaded result back to the local disk: it
// downloads the object (unless a local copy with the recorded size and
// sha256 is there), writes it to a temporary file that is checked against
// the recorded size and sha256, synced and renamed into place, and only
// then records the result local. The remote object stays, unless the
// job's bulk run asked to delete remote copies after verification.
func (s *Service) restoreJob(ctx context.Context, j *job) outcome {
	rw, err := loadRow(ctx, s.db, j.resultID)
	switch {
	case isNoRows(err):
		return s.restoreDrop(ctx, j, "the result no longer exists", nil)
	case err != nil:
		return retry(fmt.Errorf("reading the result: %w", err))
	case rw.deleted:
		return s.restoreDrop(ctx, j, "the result was deleted", nil)
	case rw.storage == Local:
		return done()
	case rw.storage != j.provider:
		return s.restoreDrop(ctx, j, "the result now lives in "+rw.storage, nil)
	}
	sum, err := hex.DecodeString(rw.sha256)
	if err != nil || len(sum) != sha256.Size {
		return s.restoreDrop(ctx, j, "the result has no valid recorded sha256 to verify a download against; it stays in "+rw.storage, nil)
	}
	p, ok := s.router.Provider(ctx, j.provider)
	if !ok {
		switch anywhere, err := s.installedAnywhere(ctx, j.provider); {
		case err != nil:
			return retry(fmt.Errorf("reading whether %s is installed: %w", j.provider, err))
		case anywhere:
			out := retry(errNotInstalledHere(j.provider))
			out.about = j.provider
			return out
		}
		return s.restoreDrop(ctx, j, errNotInstalled(j.provider).Error(), nil)
	}
	wrote := false
	if rw.localPresent && !s.holds(rw.localNode) {
		return s.rehome(ctx, j, rw.localNode)
	}
	if !rw.localPresent || !s.localMatches(rw, sum) {
		key := rw.objectKey
		if key == "" {
			key = rw.path
		}
		rc, err := call(ctx, "get", func(ctx context.Context) (io.ReadCloser, error) {
			if rw.bucket == "" {
				rc, _, err := p.Get(ctx, key, storage.GetOptions{Length: -1})
				return rc, err
			}
			loc, ok := p.(storage.Locator)
			if !ok {
				return nil, errNoLocator(j.provider)
			}
			rc, _, err := loc.GetAt(ctx, storage.Location{Bucket: rw.bucket, Key: key}, storage.GetOptions{Length: -1})
			return rc, err
		})
		if err != nil {
			if transient(ctx, err) {
				out := retry(fmt.Errorf("downloading from %s: %w", j.provider, err))
				out.about = j.provider
				return out
			}
			where := key
			if rw.bucket != "" {
				where = rw.bucket + "/" + key
			}
			return s.restoreDrop(ctx, j, fmt.Sprintf("downloading %s from %s failed; the result stays there", where, j.provider), err)
		}
		_, _, err = s.local.Write(ctx, rw.path, rc, storage.PutOptions{ContentType: rw.contentType, Size: rw.size, SHA256: sum})
		rc.Close()
		switch {
		case err == nil:
			wrote = !rw.localPresent
		case ctx.Err() != nil || storage.Code(err) == storage.Unavailable:
			return retry(fmt.Errorf("writing the downloaded result to the local disk: %w", err))
		case storage.Code(err) == storage.InvalidArgument:
			return s.restoreDrop(ctx, j, fmt.Sprintf("the object downloaded from %s does not match the recorded size (%d bytes) and sha256 (%s); nothing was written and the result stays in %s, served from there; check the object in the bucket", j.provider, rw.size, rw.sha256, j.provider), nil)
		default:
			return retry(fmt.Errorf("writing the downloaded result to the local disk: %w", err))
		}
	}
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bookkeepingTimeout)
	defer cancel()
	var n int64
	s.db.warm(bctx, sqlSettleBulkItem)
	err = s.inTx(bctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(bctx, `UPDATE results SET storage = $1, object_key = '', bucket = '', url = '', local_present = $2, local_reason = '', updated_at = $3, local_node = $9
			WHERE id = $4 AND storage = $5 AND object_key = $6 AND bucket = $7 AND deleted = $8`,
			Local, true, dbTime(s.now()), rw.id, j.provider, rw.objectKey, rw.bucket, false, s.localNode())
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil {
			return err
		}
		if _, err = tx.ExecContext(bctx, "DELETE FROM jobs WHERE kind = $1 AND result_id = $2", kindRestore, rw.id); err != nil || n != 1 {
			return err
		}
		return s.settleBulkItem(bctx, tx, j.bulkRun, rw.id)
	})
	if err != nil {
		return retry(fmt.Errorf("recording the result local: %w", err))
	}
	if n == 0 {
		if wrote {
			// Nothing refers to the file written: the result changed.
			if cur, err := loadRow(bctx, s.db, rw.id); isNoRows(err) || (err == nil && !cur.localPresent) {
				if err := s.local.Delete(bctx, rw.path); err != nil {
					s.log.Warn("results: removing a downloaded file no result refers to", "path", rw.path, "err", err)
				}
			}
		}
		return s.restoreDrop(ctx, j, "the result changed during the download (deleted or moved)", nil)
	}
	s.log.Debug("results: brought back to local", "bulk_run", j.bulkRun, "result", rw.id, "path", rw.path, "provider", j.provider, "downloaded", wrote || !rw.localPresent)
	if s.bulkDeletesRemote(bctx, j) {
		key := rw.objectKey
		if key == "" {
			key = rw.path
		}
		if err := deleteAt(bctx, j.provider, p, rw.bucket, key); err != nil && !storage.IsNotFound(err) {
			s.log.Warn("results: deleting the remote copy of a result brought back", "result", rw.id, "provider", j.provider, "err", short(err))
			s.noteBulkItem(ctx, j, fmt.Sprintf("brought back; the remote copy in %s was not deleted (%s): delete %s there by hand", j.provider, short(err), key))
		}
	}
	return doneWith(j.provider)
}

// localMatches reports whether rw's local file has its recorded size and
// sha256.
func (s *Service) localMatches(rw row, sum []byte) bool {
	f, err := s.local.Open(rw.path)
	if err != nil {
		return false
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return err == nil && n == rw.size && string(h.Sum(nil)) == string(sum)
}

// bulkDeletesRemote reports whether j's bulk run asked to delete remote
// copies after verification.
func (s *Service) bulkDeletesRemote(ctx context.Context, j *job) bool {
	if j.bulkRun == 0 {
		return false
	}
	var del dbBool
	if err := s.db.QueryRowContext(ctx, "SELECT delete_remote FROM bulk_runs WHERE id = $1", j.bulkRun).Scan(&del); err != nil {
		s.log.Warn("results: reading whether a bulk run deletes remote copies; keeping the remote copy", "run", j.bulkRun, "err", err)
		return false
	}
	return bool(del)
}
