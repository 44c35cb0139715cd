package results

import (
	"context"
	"errors"
	"fmt"

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
// full key, or ("", key given to Put) when the provider did not say.
func location(rw row, info storage.ObjectInfo) (bucket, key string) {
	if info.Bucket != "" && info.StoredKey != "" {
		return info.Bucket, info.StoredKey
	}
	return "", rw.path
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

// AdoptLegacy records where provider's legacy results are, now that it
// reports locations: each result of provider recorded without a bucket
// gets pl.Bucket and the full key pl.KeyPrefix + its key, and so does each
// delete job of such a result. Call it when provider accepted its stored
// settings and reported a bucket (its first configure after the host or
// its plugin was updated: the settings the results were uploaded with).
// It returns how many results it adopted; with pl.Bucket "" it does
// nothing.
func (s *Service) AdoptLegacy(ctx context.Context, provider string, pl Placement) (Adoption, error) {
	if pl.Bucket == "" || provider == "" || provider == Local {
		return Adoption{}, nil
	}
	fail := func(err error) (Adoption, error) {
		return Adoption{}, fmt.Errorf("results: recording where the results uploaded to %s before it reported its bucket are: %w", provider, err)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fail(err)
	}
	defer rollback(tx)
	res, err := tx.ExecContext(ctx, `UPDATE results SET bucket = $1, object_key = CAST($2 AS TEXT) || object_key, updated_at = $3
		WHERE storage = $4 AND bucket = '' AND object_key <> ''`, pl.Bucket, pl.KeyPrefix, dbTime(s.now()), provider)
	if err != nil {
		return fail(err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fail(err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE jobs SET bucket = $1, object_key = CAST($2 AS TEXT) || object_key
		WHERE kind = $3 AND provider = $4 AND bucket = '' AND object_key <> ''`, pl.Bucket, pl.KeyPrefix, kindDelete, provider); err != nil {
		return fail(err)
	}
	if err := tx.Commit(); err != nil {
		return fail(err)
	}
	if n > 0 {
		s.log.Info("results: recorded where the results uploaded before the provider reported its bucket are", "provider", provider, "bucket", pl.Bucket, "key_prefix", pl.KeyPrefix, "results", n)
	}
	return Adoption{Adopted: n}, nil
}

// Adoption is what AdoptLegacy did.
type Adoption struct {
	// Adopted counts the results recorded with their bucket and full key.
	Adopted int64
	// Unverified counts the legacy results left as they are.
	Unverified int64
}

// Configured is told that provider accepted its settings with placement pl.
func (s *Service) Configured(ctx context.Context, provider string, pl Placement) error {
	_, err := s.AdoptLegacy(ctx, provider, pl)
	return err
}

// DefaultChanged is told that Default Storage changed from one value to another.
func (s *Service) DefaultChanged(ctx context.Context, from, to string) error { return nil }

// errNotInstalled is the error of a job whose provider is not installed.
func errNotInstalled(provider string) error {
	return &storage.Error{Code: storage.FailedPrecondition,
		Message: provider + " is not installed; install it again, then retry its failed jobs",
		Err:     errors.New("provider not installed")}
}
