package results

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/magicads/r2storage/shared/storage"
)

// Custody: where an offloaded result really is.
//
// A provider that reports locations (storage.Capabilities.Locations) says
// in Put's ObjectInfo which bucket the object went to and its full key
// there; the result records both (results.bucket, results.object_key), and
// its delete is addressed to that location (storage.Locator), so changing
// the provider's key prefix does not lose it. A delete whose bucket is not
// the one the provider is configured for now is never sent: its job is
// parked failed, naming the bucket, the key and the fix. A result recorded
// without a bucket (a plugin built before locations, or a host before
// migration 000010) is a legacy row, addressed by the key given to Put as
// before, until AdoptLegacy records where it is.
//
// The URL a result is served from is rebuilt from its provider's current
// public base URL while its bucket is the one the provider is configured
// for, so moving the public URL moves older results too; otherwise it is
// the URL recorded at upload.

// Placement is where a provider puts new objects and what it accepts, as
// its last successful Configure (and Describe) on this node said.
type Placement struct {
	// Bucket is ConfigureResult.Bucket: the identity of the bucket new
	// objects go to; "" when the plugin does not say.
	Bucket string
	// PublicBaseURL is ConfigureResult.PublicBaseURL ("" for none).
	PublicBaseURL string
	// KeyPrefix is ConfigureResult.KeyPrefix: what the provider puts before
	// a key given to Put.
	KeyPrefix string
	// MaxObjectSize is Capabilities.MaxObjectSize (0: no stated limit).
	MaxObjectSize int64
	// Locations is Capabilities.Locations.
	Locations bool
}

// Job states, as in the jobs table.
const (
	// jobQueued: waiting for an attempt (or running one).
	jobQueued = "queued"
	// jobFailed: parked after a permanent error; workers skip it until
	// RetryFailed.
	jobFailed = "failed"
)

// retryHint is what a parked upload's local_reason ends with.
const retryHint = "it runs again when the provider's settings change or an admin retries it"

// transient reports whether a provider call's error is worth retrying as
// is: the provider is momentarily unreachable, or the call was cut (by its
// deadline, the inline bound, a drain or a lost lease).
func transient(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return true
	}
	switch storage.Code(err) {
	case storage.Unavailable, storage.Canceled:
		return true
	}
	return false
}

// judge turns the error of a call to provider into an outcome: a retry
// when it is transient, else a permanent failure with its code.
func judge(ctx context.Context, provider string, err error) outcome {
	o := outcome{state: stateFail, err: err, code: storage.Code(err), about: provider}
	if transient(ctx, err) {
		o.state = stateRetry
	}
	return o
}

// tooBig says why a result of size bytes cannot go to provider under pl,
// or "".
func tooBig(provider string, pl Placement, size int64) string {
	if pl.MaxObjectSize > 0 && size > pl.MaxObjectSize {
		return fmt.Sprintf("the result is %d bytes, over %s's limit of %d bytes", size, provider, pl.MaxObjectSize)
	}
	return ""
}

// placements caches Router.Placement per provider for one request.
type placements struct {
	s  *Service
	by map[string]*Placement
}

// get returns id's placement, nil when the router has none.
func (p *placements) get(ctx context.Context, id string) *Placement {
	if pl, ok := p.by[id]; ok {
		return pl
	}
	if p.by == nil {
		p.by = map[string]*Placement{}
	}
	var out *Placement
	if id != "" && id != Local {
		if pl, ok := p.s.router.Placement(ctx, id); ok {
			out = &pl
		}
	}
	p.by[id] = out
	return out
}

// servedURL is the URL rw is served from: rebuilt from its provider's
// current public base while rw's bucket is the provider's current one,
// else the URL recorded at upload.
func (p *placements) servedURL(ctx context.Context, rw row) string {
	if rw.storage == Local || rw.bucket == "" || rw.objectKey == "" {
		return rw.url
	}
	pl := p.get(ctx, rw.storage)
	if pl == nil || pl.Bucket != rw.bucket || pl.PublicBaseURL == "" {
		return rw.url
	}
	return storage.PublicURL(pl.PublicBaseURL, rw.objectKey)
}

// present converts rows to Results with the URLs they are served from.
func (s *Service) present(ctx context.Context, rws ...row) []Result {
	p := placements{s: s}
	out := make([]Result, len(rws))
	for i, rw := range rws {
		out[i] = rw.result()
		out[i].URL = p.servedURL(ctx, rw)
	}
	return out
}

// presentOne is present for one row.
func (s *Service) presentOne(ctx context.Context, rw row) Result { return s.present(ctx, rw)[0] }

// location returns where Put's answer says the object went: its bucket and
// full key when the provider can address objects by location (locs), else
// ("", key given to Put): a legacy row.
func location(rw row, info storage.ObjectInfo, locs bool) (bucket, key string) {
	if locs && info.Bucket != "" && info.StoredKey != "" {
		return info.Bucket, info.StoredKey
	}
	return "", rw.path
}

// locates reports whether objects stored through p (provider id) are
// recorded by location: its placement says it has locations and it can
// be addressed by them (storage.Locator).
func (s *Service) locates(ctx context.Context, id string, p storage.Provider) bool {
	if _, ok := p.(storage.Locator); !ok {
		return false
	}
	pl, ok := s.router.Placement(ctx, id)
	return ok && pl.Locations
}

// errNoLocator is the error of an addressed call to a provider that cannot
// address objects by location.
func errNoLocator(provider string) error {
	return storage.Errorf(storage.Unimplemented, "%s cannot address an object by its bucket and full key (its plugin predates locations); update the plugin", provider)
}

// deleteAt deletes the object at (bucket, key) through p: by location when
// bucket is set, else by the key given to Put (a legacy row).
func deleteAt(ctx context.Context, providerID string, p storage.Provider, bucket, key string) error {
	_, err := call(ctx, "delete", func(ctx context.Context) (struct{}, error) {
		if bucket == "" {
			return struct{}{}, p.Delete(ctx, key)
		}
		loc, ok := p.(storage.Locator)
		if !ok {
			return struct{}{}, errNoLocator(providerID)
		}
		return struct{}{}, loc.DeleteAt(ctx, storage.Location{Bucket: bucket, Key: key})
	})
	return err
}

// Bounds of the custody pass (Configured).
const (
	// adoptBatch is how many legacy results AdoptLegacy checks, and
	// rebaseBatch how many URLs RebaseURLs rewrites, per database step.
	adoptBatch  = 100
	rebaseBatch = 200
)

// Adoption is what AdoptLegacy did.
type Adoption struct {
	// Adopted counts the results now recorded with their bucket and full key.
	Adopted int64
	// Unverified counts the legacy results left as they are: no object of
	// their size at the placement's bucket and prefixed key, or a recorded
	// URL of another key. They keep being addressed by their relative key.
	Unverified int64
	// Unchecked counts the legacy results the provider could not be asked
	// about (unreachable); a later pass checks them.
	Unchecked int64
}

// AdoptLegacy records where provider's legacy results (recorded without a
// bucket) are, when that can be verified: the provider reports locations
// (pl.Locations, and it implements storage.Locator), an object of the
// result's size is at pl.Bucket under pl.KeyPrefix + its key, and the
// result's recorded URL, if any, ends with that key. Such a result gets
// the bucket and full key, as does its delete job. The others stay legacy
// (an earlier prefix or bucket may hold them) and are counted and logged.
// It works in batches of adoptBatch, asking the provider outside any
// transaction, until every legacy result was looked at or ctx ends.
func (s *Service) AdoptLegacy(ctx context.Context, provider string, pl Placement) (Adoption, error) {
	var a Adoption
	if pl.Bucket == "" || !pl.Locations || provider == "" || provider == Local {
		return a, nil
	}
	fail := func(err error) (Adoption, error) {
		return a, fmt.Errorf("results: recording where the results uploaded to %s before it reported its bucket are (%d adopted so far; the rest are checked at its next configure): %w", provider, a.Adopted, err)
	}
	p, ok := s.router.Provider(ctx, provider)
	if !ok {
		return a, nil
	}
	loc, ok := p.(storage.Locator)
	if !ok {
		return a, nil
	}
	after := ""
	for {
		batch, err := s.legacyBatch(ctx, provider, after)
		if err != nil {
			return fail(err)
		}
		if len(batch) == 0 {
			break
		}
		after = batch[len(batch)-1].id
		var verified []legacyRow
		for _, rw := range batch {
			switch ok, err := verifyLegacy(ctx, loc, pl, rw); {
			case ctx.Err() != nil:
				return fail(ctx.Err())
			case err != nil:
				a.Unchecked++
				s.log.Warn("results: a result uploaded before its provider reported its bucket could not be checked; it stays addressed by its relative key", "provider", provider, "result", rw.id, "err", short(err))
			case ok:
				verified = append(verified, rw)
			default:
				a.Unverified++
			}
		}
		n, err := s.adoptRows(ctx, provider, pl, verified)
		if err != nil {
			return fail(err)
		}
		a.Adopted += n
	}
	if a.Adopted > 0 {
		s.log.Info("results: recorded where the results uploaded before the provider reported its bucket are", "provider", provider, "bucket", pl.Bucket, "key_prefix", pl.KeyPrefix, "results", a.Adopted)
	}
	if a.Unverified > 0 {
		s.log.Warn("results: results uploaded before the provider reported its bucket are not where its current settings put them (the key prefix or bucket may have changed since); they keep their URLs and are addressed by their relative key, and their deletes wait for the admin. Restoring the settings they were uploaded with lets the next configure adopt them",
			"provider", provider, "bucket", pl.Bucket, "key_prefix", pl.KeyPrefix, "results", a.Unverified)
	}
	return a, nil
}

// legacyRow is a legacy result, as AdoptLegacy checks it.
type legacyRow struct {
	id, key, url string
	size         int64
}

// legacyBatch reads up to adoptBatch legacy results of provider after id.
func (s *Service) legacyBatch(ctx context.Context, provider, after string) ([]legacyRow, error) {
	rows, err := s.db.QueryContext(ctx, fmt.Sprintf(`SELECT id, object_key, url, size FROM results
		WHERE storage = $1 AND bucket = '' AND object_key <> '' AND id > $2 ORDER BY id LIMIT %d`, adoptBatch), provider, after)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []legacyRow
	for rows.Next() {
		var rw legacyRow
		if err := rows.Scan(&rw.id, &rw.key, &rw.url, &rw.size); err != nil {
			return nil, err
		}
		out = append(out, rw)
	}
	return out, rows.Err()
}

// verifyLegacy reports whether rw's object is at pl's bucket under
// pl.KeyPrefix + its key, with its size and (when rw has a URL) a URL
// ending with that key; err when the provider could not be asked.
func verifyLegacy(ctx context.Context, loc storage.Locator, pl Placement, rw legacyRow) (bool, error) {
	full := pl.KeyPrefix + rw.key
	if rw.url != "" && !strings.HasSuffix(rw.url, "/"+escapedKey(full)) {
		return false, nil
	}
	cctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
	defer cancel()
	st, err := call(cctx, "stat", func(ctx context.Context) (storage.ObjectInfo, error) {
		return loc.StatAt(ctx, storage.Location{Bucket: pl.Bucket, Key: full})
	})
	switch {
	case err == nil:
		return st.Size == rw.size, nil
	case transient(cctx, err):
		return false, err
	default:
		// Not found, or out of reach (another bucket): not verified.
		return false, nil
	}
}

// escapedKey is key as storage.PublicURL writes it after the base.
func escapedKey(key string) string {
	const base = "x:"
	return strings.TrimPrefix(storage.PublicURL(base, key), base+"/")
}

// adoptRows records the verified rows (and their delete jobs) at pl's
// bucket and prefixed key, in one short transaction; a row changed
// meanwhile (adopted by another node) is left alone.
func (s *Service) adoptRows(ctx context.Context, provider string, pl Placement, rws []legacyRow) (int64, error) {
	if len(rws) == 0 {
		return 0, nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer rollback(tx)
	var n int64
	for _, rw := range rws {
		full := pl.KeyPrefix + rw.key
		res, err := tx.ExecContext(ctx, `UPDATE results SET bucket = $1, object_key = $2, updated_at = $3
			WHERE id = $4 AND storage = $5 AND bucket = '' AND object_key = $6`, pl.Bucket, full, dbTime(s.now()), rw.id, provider, rw.key)
		if err != nil {
			return 0, err
		}
		m, err := res.RowsAffected()
		if err != nil {
			return 0, err
		}
		if m == 0 {
			continue
		}
		n += m
		if _, err := tx.ExecContext(ctx, `UPDATE jobs SET bucket = $1, object_key = $2
			WHERE kind = $3 AND result_id = $4 AND provider = $5 AND bucket = '' AND object_key = $6`, pl.Bucket, full, kindDelete, rw.id, provider, rw.key); err != nil {
			return 0, err
		}
	}
	return n, tx.Commit()
}

// RebaseURLs records the URL each live result of provider in pl's bucket
// is served from under pl's public base, so it keeps that URL where the
// placement is not known (another node, a plugin not configured here, an
// uninstalled provider). Results whose URL is under the base already are
// left alone. It works in batches of rebaseBatch until done or ctx ends,
// and returns how many URLs it rewrote.
func (s *Service) RebaseURLs(ctx context.Context, provider string, pl Placement) (int64, error) {
	if pl.Bucket == "" || pl.PublicBaseURL == "" || provider == "" || provider == Local {
		return 0, nil
	}
	var n int64
	fail := func(err error) (int64, error) {
		return n, fmt.Errorf("results: recording the moved public URL of the results of %s (%d rewritten; the rest at its next configure): %w", provider, n, err)
	}
	under := strings.TrimRight(pl.PublicBaseURL, "/") + "/"
	after := ""
	for {
		batch, err := s.urlBatch(ctx, provider, pl.Bucket, under, after)
		if err != nil {
			return fail(err)
		}
		if len(batch) == 0 {
			break
		}
		after = batch[len(batch)-1].id
		m, err := s.rewriteURLs(ctx, provider, pl, batch)
		n += m
		if err != nil {
			return fail(err)
		}
	}
	if n > 0 {
		s.log.Info("results: recorded the moved public URL of older results", "provider", provider, "bucket", pl.Bucket, "public_url", pl.PublicBaseURL, "results", n)
	}
	return n, nil
}

// urlRow is a result whose recorded URL is not under the public base.
type urlRow struct{ id, key, url string }

// urlBatch reads up to rebaseBatch live results of provider in bucket,
// after id, whose URL does not start with under.
func (s *Service) urlBatch(ctx context.Context, provider, bucket, under, after string) ([]urlRow, error) {
	rows, err := s.db.QueryContext(ctx, fmt.Sprintf(`SELECT id, object_key, url FROM results
		WHERE storage = $1 AND bucket = $2 AND deleted = $3 AND object_key <> '' AND substr(url, 1, $4) <> $5 AND id > $6
		ORDER BY id LIMIT %d`, rebaseBatch), provider, bucket, false, len(under), under, after)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []urlRow
	for rows.Next() {
		var o urlRow
		if err := rows.Scan(&o.id, &o.key, &o.url); err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// rewriteURLs records, in one short transaction, the URL under pl's base
// of each row still as read.
func (s *Service) rewriteURLs(ctx context.Context, provider string, pl Placement, batch []urlRow) (int64, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer rollback(tx)
	var n int64
	for _, o := range batch {
		res, err := tx.ExecContext(ctx, `UPDATE results SET url = $1 WHERE id = $2 AND storage = $3 AND bucket = $4 AND object_key = $5 AND url = $6`,
			storage.PublicURL(pl.PublicBaseURL, o.key), o.id, provider, pl.Bucket, o.key, o.url)
		if err != nil {
			return 0, err
		}
		m, err := res.RowsAffected()
		if err != nil {
			return 0, err
		}
		n += m
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	return n, nil
}

// Configured runs the custody pass for provider after it accepted its
// settings with placement pl: AdoptLegacy, then RebaseURLs. A pass that
// completed for the same placement is not run again in this process, and
// passes run one at a time, so a burst of configures (restarts, several
// saves) costs one pass; a pass whose placement is no longer the
// provider's current one is skipped. Call it in the background, with a deadline: it
// looks at every legacy result and every URL of the bucket.
func (s *Service) Configured(ctx context.Context, provider string, pl Placement) error {
	if provider == "" || provider == Local || pl.Bucket == "" {
		return nil
	}
	s.passMu.Lock()
	defer s.passMu.Unlock()
	if last, ok := s.passed[provider]; ok && last == pl {
		return nil
	}
	if now, ok := s.router.Placement(ctx, provider); ok && now != pl {
		return nil // configured again since: that configure's pass runs
	}
	a, err := s.AdoptLegacy(ctx, provider, pl)
	if err != nil {
		return err
	}
	if _, err := s.RebaseURLs(ctx, provider, pl); err != nil {
		return err
	}
	if a.Unchecked == 0 {
		s.passed[provider] = pl
	}
	return nil
}

// DefaultChanged drops the uploads parked failed for from, the Default
// Storage the admin just moved away from (to to): no retry would send
// them there. Their results say they are kept local and why.
func (s *Service) DefaultChanged(ctx context.Context, from, to string) error {
	n, err := DropParkedAfterDefaultChange(ctx, s.db.DB, from, to)
	if n > 0 {
		s.log.Info("results: dropped the failed uploads to a provider no longer the Default Storage; their results stay local", "provider", from, "default", to, "results", n)
	}
	return err
}

// DropParkedAfterDefaultChange is Service.DefaultChanged over a host
// database, for the code that changes Default Storage: it drops the
// uploads parked failed for from and records on their results "kept
// local: Default Storage was changed from <from> to <to>". It returns how
// many it dropped.
func DropParkedAfterDefaultChange(ctx context.Context, db *sql.DB, from, to string) (int64, error) {
	if from == "" || from == Local || from == to {
		return 0, nil
	}
	return dropParked(ctx, db, from, fmt.Sprintf("Default Storage was changed from %s to %s", from, to))
}

// DropParkedOffloads removes the offload jobs to provider that a permanent
// error parked, and records on their results (still local) "kept local: "
// and reason; it returns how many it dropped.
func (s *Service) DropParkedOffloads(ctx context.Context, provider, reason string) (int64, error) {
	n, err := dropParked(ctx, s.db.DB, provider, reason)
	if n > 0 {
		s.log.Info("results: dropped the failed uploads to a provider; their results stay local", "provider", provider, "reason", reason, "results", n)
	}
	return n, err
}

// dropParked is DropParkedOffloads over db.
func dropParked(ctx context.Context, db *sql.DB, provider, reason string) (int64, error) {
	fail := func(err error) (int64, error) {
		return 0, fmt.Errorf("results: dropping the failed uploads to %s (%s); they stay parked, retry them from the admin console: %w", provider, reason, err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fail(err)
	}
	defer rollback(tx)
	if _, err := tx.ExecContext(ctx, `UPDATE results SET local_reason = $1 WHERE storage = $2 AND id IN
		(SELECT result_id FROM jobs WHERE kind = $3 AND provider = $4 AND state = $5)`,
		short(errors.New("kept local: "+reason)), Local, kindOffload, provider, jobFailed); err != nil {
		return fail(err)
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM jobs WHERE kind = $1 AND provider = $2 AND state = $3`, kindOffload, provider, jobFailed)
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
	return n, nil
}

// errNotInstalled is the error of a job whose provider no node has
// installed (the plugins table has no record of it).
func errNotInstalled(provider string) error {
	return &storage.Error{Code: storage.FailedPrecondition,
		Message: provider + " is not installed; install it again, then retry its failed jobs",
		Err:     errors.New("provider not installed")}
}

// errNotInstalledHere is the error of a job whose provider is installed
// (another node recorded it) but not on this node yet.
func errNotInstalledHere(provider string) error {
	return storage.Errorf(storage.Unavailable, "%s is not installed on this node yet; the job is retried until it is (or runs on a node that has it)", provider)
}

// installedAnywhere reports whether some node installed provider: the
// plugins table, shared by the nodes, has its record.
func (s *Service) installedAnywhere(ctx context.Context, provider string) (bool, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM plugins WHERE id = $1", provider).Scan(&n); err != nil {
		return false, err
	}
	return n > 0, nil
}

// checkLegacy checks, before a legacy row's delete (bucket "", addressed
// by the key given to Put under the provider's current settings), that
// the object there is the result's: an object of its size (size < 0:
// any). It returns nil when it is; a permanent error naming the key, the
// cause and the fix when it is not (the key prefix or bucket changed
// since the upload: deleting there would drop the row and leave the
// object); the provider's error when it could not be asked.
func checkLegacy(ctx context.Context, providerID string, p storage.Provider, pl *Placement, key string, size int64) error {
	st, err := call(ctx, "stat", func(ctx context.Context) (storage.ObjectInfo, error) { return p.Stat(ctx, key) })
	var cause string
	switch {
	case storage.IsNotFound(err):
		cause = "no object is there"
	case err != nil:
		return err
	case size >= 0 && st.Size != size:
		cause = fmt.Sprintf("the object there is %d bytes, not the result's %d", st.Size, size)
	default:
		return nil
	}
	where := fmt.Sprintf("key %s under %s's current key prefix", key, providerID)
	if pl != nil && pl.KeyPrefix != "" {
		where += fmt.Sprintf(" (%s)", pl.KeyPrefix+key)
	}
	if pl != nil && pl.Bucket != "" {
		where += " in bucket " + pl.Bucket
	}
	return storage.Errorf(storage.FailedPrecondition,
		"the result's object cannot be verified at %s: %s. It was uploaded before the host recorded locations, and the key prefix or bucket may have changed since; the result stays until this is solved. Restore the key prefix and bucket it was uploaded with and retry the job, or delete the object by hand where it is",
		where, cause)
}
