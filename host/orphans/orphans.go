// Package orphans finds and removes what a storage provider's bucket holds
// that no result refers to: objects left behind (an upload whose result was
// never recorded, a bucket shared with a host whose database was reset) and
// incomplete multipart uploads that nobody completed or aborted, which keep
// costing storage. R2's object-scoped API tokens cannot set lifecycle rules,
// so the host does this itself.
//
// A scan is a dry run: it lists the bucket under the provider's key prefix
// (storage.Lister, the optional Capabilities.Listing), compares each object
// with the database and reports the objects nothing refers to and the
// uploads older than StaleAfter. Clean, given the scan's time as the
// confirmation, lists again and deletes only objects that were already
// there and old enough at the scan, each checked against the database just
// before it is deleted, so a result recorded meanwhile is never touched;
// then it aborts the stale uploads.
//
// An object is referred to, and kept, when the database has any of: a
// result in that bucket at that full key (deleted or not; a deleted
// result's own delete job removes it); a result of the provider recorded
// before locations were (no bucket) at that key; a result whose path is the
// object's key (a result still local whose upload may be running); a job
// of the provider for that key.
package orphans

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/magicads/r2storage/host/results"
	"github.com/magicads/r2storage/shared/storage"
)

// Defaults of Options.
const (
	// DefaultStaleAfter is how old an incomplete upload must be to be
	// reported and aborted.
	DefaultStaleAfter = 24 * time.Hour
	// DefaultMinAge is how old an object must be to count as an orphan:
	// a younger one may belong to an upload whose result is being
	// recorded right now.
	DefaultMinAge = time.Hour
	// SampleSize is how many keys a scan report shows.
	SampleSize = 20
	// MaxListedKeys is how many deleted keys Clean reports.
	MaxListedKeys = 1000
	// maxProblems is how many kept or failed keys Clean reports.
	maxProblems = 100
)

// Errors of Scan and Clean; the wrapping error's message says more.
var (
	// ErrNotInstalled: no provider of that id is installed.
	ErrNotInstalled = errors.New("the provider is not installed")
	// ErrUnavailable: the provider cannot do it (no listing, no locations).
	ErrUnavailable = errors.New("orphan clean-up is unavailable for this provider")
	// ErrNotConfigured: the provider is not configured on this node.
	ErrNotConfigured = errors.New("the provider is not configured")
	// ErrConfirmation: Clean was not given the time of a scan.
	ErrConfirmation = errors.New("the clean-up needs the scanned_at of a scan report")
	// ErrBusy: a scan or clean-up of the provider is already running.
	ErrBusy = errors.New("a scan or clean-up of this provider is already running")
)

// Providers is how the scanner reaches providers (providers.Manager).
type Providers interface {
	// Provider returns the installed provider id.
	Provider(ctx context.Context, id string) (storage.Provider, bool)
	// Placement returns where provider id puts objects now, from its last
	// successful Configure on this node.
	Placement(ctx context.Context, id string) (results.Placement, bool)
}

// Options adjust a Scanner.
type Options struct {
	// Now is the time source; nil is time.Now. Tests inject one to make
	// an upload older than StaleAfter.
	Now func() time.Time
	// StaleAfter is how old an incomplete upload must be; 0 is
	// DefaultStaleAfter.
	StaleAfter time.Duration
	// MinAge is how old an object must be to be an orphan; 0 is
	// DefaultMinAge.
	MinAge time.Duration
	// Logger receives a line per clean-up; nil discards.
	Logger *slog.Logger
}

// Scanner scans and cleans providers' buckets against the host database.
type Scanner struct {
	db   *sql.DB
	prov Providers
	opts Options

	mu      sync.Mutex
	running map[string]bool
}

// New returns a scanner of the providers prov reaches, against db (the
// host database, SQLite or PostgreSQL).
func New(db *sql.DB, prov Providers, opts Options) *Scanner {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.StaleAfter <= 0 {
		opts.StaleAfter = DefaultStaleAfter
	}
	if opts.MinAge <= 0 {
		opts.MinAge = DefaultMinAge
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Scanner{db: db, prov: prov, opts: opts, running: map[string]bool{}}
}

// Objects counts objects and names some of them (full keys in the bucket).
type Objects struct {
	// Count is how many objects.
	Count int `json:"count"`
	// Bytes is their total size.
	Bytes int64 `json:"bytes"`
	// Keys are their full keys in the bucket, at most SampleSize in a
	// scan report, MaxListedKeys in a clean-up.
	Keys []string `json:"keys"`
	// Truncated says Keys does not name them all.
	Truncated bool `json:"truncated"`
}

// add counts an object, naming it while fewer than limit are named.
func (o *Objects) add(key string, size int64, limit int) {
	o.Count++
	o.Bytes += size
	if len(o.Keys) < limit {
		o.Keys = append(o.Keys, key)
	} else {
		o.Truncated = true
	}
}

// Upload is an incomplete upload.
type Upload struct {
	// Key is its full key in the bucket.
	Key string `json:"key"`
	// Initiated is when it started.
	Initiated time.Time `json:"initiated"`
}

// Uploads are the stale incomplete uploads a scan found.
type Uploads struct {
	// Count is how many.
	Count int `json:"count"`
	// Sample names at most SampleSize of them.
	Sample []Upload `json:"sample"`
	// Abortable says the clean-up can abort them (the provider declares
	// Capabilities.AbortUploads); Note says why not.
	Abortable bool `json:"abortable"`
	// Note explains what the clean-up will not do, if anything.
	Note string `json:"note,omitempty"`
}

// Report is the dry run of a clean-up.
type Report struct {
	// Provider is the provider's id.
	Provider string `json:"provider"`
	// Bucket is the identity of the bucket scanned.
	Bucket string `json:"bucket"`
	// KeyPrefix is the key prefix listed under ("" for the whole bucket).
	KeyPrefix string `json:"key_prefix"`
	// ScannedAt is the scan's time: give it to Clean to confirm.
	ScannedAt time.Time `json:"scanned_at"`
	// Listed is how many objects the bucket holds under the key prefix.
	Listed int `json:"objects_listed"`
	// Orphans are the objects nothing in the database refers to.
	Orphans Objects `json:"orphans"`
	// Recent counts unreferenced objects younger than the minimum age,
	// left alone (their result may be being recorded).
	Recent int `json:"recent_skipped"`
	// StaleUploads are the incomplete uploads older than StaleAfter.
	StaleUploads Uploads `json:"stale_uploads"`
	// StaleAfterHours is StaleAfter in hours.
	StaleAfterHours float64 `json:"stale_after_hours"`
}

// Kept is an object a clean-up did not delete, and why.
type Kept struct {
	// Key is its full key in the bucket.
	Key string `json:"key"`
	// Reason says why it was kept or what failed.
	Reason string `json:"reason"`
}

// Cleanup is what Clean removed.
type Cleanup struct {
	// Provider is the provider's id.
	Provider string `json:"provider"`
	// Bucket is the identity of the bucket cleaned.
	Bucket string `json:"bucket"`
	// ScannedAt is the scan this clean-up confirmed.
	ScannedAt time.Time `json:"scanned_at"`
	// Deleted are the objects removed.
	Deleted Objects `json:"deleted"`
	// Kept are orphans of the scan that something refers to now (a result
	// recorded meanwhile), left alone.
	Kept []Kept `json:"kept"`
	// Failed are the objects whose delete failed; they stay.
	Failed []Kept `json:"failed"`
	// AbortedUploads counts the incomplete uploads aborted.
	AbortedUploads int `json:"aborted_uploads"`
	// AbortedKeys are the full keys whose stale uploads were aborted.
	AbortedKeys []string `json:"aborted_keys"`
	// UploadsNote says why stale uploads were not aborted, if any were not.
	UploadsNote string `json:"uploads_note,omitempty"`
}

// target is a provider ready to be scanned.
type target struct {
	id      string
	p       storage.Provider
	lister  storage.Lister
	locator storage.Locator // nil without Capabilities.Locations
	aborter storage.UploadAborter
	pl      results.Placement
}

// unavailable is the error of a provider that cannot be scanned or cleaned.
func unavailable(id, why string) error {
	return fmt.Errorf("%w: %s %s", ErrUnavailable, id, why)
}

// target checks that provider id can be scanned: installed, declaring
// Capabilities.Listing (and Locations), configured on this node.
func (s *Scanner) target(ctx context.Context, id string) (*target, error) {
	p, ok := s.prov.Provider(ctx, id)
	if !ok || p == nil {
		return nil, fmt.Errorf("%w: %s; install it first", ErrNotInstalled, id)
	}
	info, err := p.Describe(ctx)
	if err != nil {
		return nil, fmt.Errorf("orphans: asking %s what it supports: %w", id, err)
	}
	l, lists := p.(storage.Lister)
	switch {
	case !info.Capabilities.Listing:
		return nil, unavailable(id, "cannot list its bucket: the plugin does not declare the optional listing call (Capabilities.Listing), so the host cannot tell which objects are orphaned; a plugin built with a newer SDK may support it")
	case !lists:
		return nil, unavailable(id, "cannot list its bucket: the plugin declares Capabilities.Listing, but the host's connection to it does not offer the listing calls; this is a host defect, report it")
	}
	loc, locates := p.(storage.Locator)
	if !info.Capabilities.Locations || !locates {
		return nil, unavailable(id, "does not report where it stores objects (Capabilities.Locations), so an object cannot be matched with the results that refer to it; a plugin built with a newer SDK may support it")
	}
	pl, ok := s.prov.Placement(ctx, id)
	if !ok {
		return nil, fmt.Errorf("%w: %s is not configured on this node; save its settings and try again", ErrNotConfigured, id)
	}
	if pl.Bucket == "" {
		return nil, unavailable(id, "did not name its bucket when configured (ConfigureResult.Bucket), so the host cannot tell which results are in it")
	}
	t := &target{id: id, p: p, lister: l, locator: loc, pl: pl}
	if a, ok := p.(storage.UploadAborter); ok && info.Capabilities.AbortUploads {
		t.aborter = a
	}
	return t, nil
}

// lock marks provider id as being scanned, or gives ErrBusy.
func (s *Scanner) lock(id string) (func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running[id] {
		return nil, fmt.Errorf("%w: %s; wait for it to finish", ErrBusy, id)
	}
	s.running[id] = true
	return func() {
		s.mu.Lock()
		delete(s.running, id)
		s.mu.Unlock()
	}, nil
}

// walk lists the bucket under the key prefix, page by page, and calls
// orphan for each object that nothing in the database refers to and that
// was written at or before objectsBy, and recent for one written after.
// It returns how many objects it listed.
func (s *Scanner) walk(ctx context.Context, t *target, objectsBy time.Time, orphan func(storage.ObjectInfo), recent func()) (int, error) {
	listed := 0
	opts := storage.ListOptions{Limit: storage.MaxListLimit}
	for pages := 0; ; pages++ {
		page, err := t.lister.List(ctx, opts)
		if err != nil {
			return listed, fmt.Errorf("orphans: listing bucket %s of %s: %w", t.pl.Bucket, t.id, err)
		}
		listed += len(page.Objects)
		var objs []storage.ObjectInfo
		for _, o := range page.Objects {
			if o.StoredKey == "" || (o.Bucket != "" && o.Bucket != t.pl.Bucket) {
				continue // not in the bucket the host knows: never touched
			}
			objs = append(objs, o)
		}
		refs, err := s.references(ctx, t, objs)
		if err != nil {
			return listed, err
		}
		for _, o := range objs {
			if refs[o.StoredKey] {
				continue
			}
			if o.ModTime.After(objectsBy) {
				recent()
				continue
			}
			orphan(o)
		}
		if page.Next == "" {
			return listed, nil
		}
		if page.Next == opts.Cursor {
			return listed, fmt.Errorf("orphans: listing bucket %s of %s: the provider gave the same cursor twice; the listing would never end", t.pl.Bucket, t.id)
		}
		opts.Cursor = page.Next
	}
}

// staleUploads lists the incomplete uploads under the key prefix and
// returns those started at or before by, by key, and the keys that also
// have a newer upload (never aborted: AbortUploads aborts every upload of
// a key).
func (s *Scanner) staleUploads(ctx context.Context, t *target, by time.Time) (stale map[string][]storage.UploadInfo, fresh map[string]bool, err error) {
	stale, fresh = map[string][]storage.UploadInfo{}, map[string]bool{}
	cursor := ""
	for {
		page, err := t.lister.ListUploads(ctx, cursor)
		if err != nil {
			return nil, nil, fmt.Errorf("orphans: listing the incomplete uploads of bucket %s of %s: %w", t.pl.Bucket, t.id, err)
		}
		for _, u := range page.Uploads {
			if u.Bucket != "" && u.Bucket != t.pl.Bucket {
				continue
			}
			if u.Initiated.IsZero() || u.Initiated.After(by) {
				fresh[u.Key] = true
				continue
			}
			stale[u.Key] = append(stale[u.Key], u)
		}
		if page.Next == "" || page.Next == cursor {
			break
		}
		cursor = page.Next
	}
	for k := range fresh {
		delete(stale, k)
	}
	return stale, fresh, nil
}

// Scan is the dry run: it reports the orphaned objects and the stale
// incomplete uploads of provider id's bucket, and deletes nothing.
func (s *Scanner) Scan(ctx context.Context, id string) (Report, error) {
	unlock, err := s.lock(id)
	if err != nil {
		return Report{}, err
	}
	defer unlock()
	t, err := s.target(ctx, id)
	if err != nil {
		return Report{}, err
	}
	now := s.opts.Now().UTC()
	r := Report{Provider: id, Bucket: t.pl.Bucket, KeyPrefix: t.pl.KeyPrefix, ScannedAt: now,
		Orphans: Objects{Keys: []string{}}, StaleUploads: Uploads{Sample: []Upload{}}, StaleAfterHours: s.opts.StaleAfter.Hours()}
	r.Listed, err = s.walk(ctx, t, now.Add(-s.opts.MinAge),
		func(o storage.ObjectInfo) { r.Orphans.add(o.StoredKey, o.Size, SampleSize) },
		func() { r.Recent++ })
	if err != nil {
		return Report{}, err
	}
	stale, _, err := s.staleUploads(ctx, t, now.Add(-s.opts.StaleAfter))
	if err != nil {
		return Report{}, err
	}
	for _, k := range sortedKeys(stale) {
		for _, u := range stale[k] {
			r.StaleUploads.Count++
			if len(r.StaleUploads.Sample) < SampleSize {
				r.StaleUploads.Sample = append(r.StaleUploads.Sample, Upload{Key: u.StoredKey, Initiated: u.Initiated.UTC()})
			}
		}
	}
	r.StaleUploads.Abortable = t.aborter != nil
	if t.aborter == nil && r.StaleUploads.Count > 0 {
		r.StaleUploads.Note = noAbort(id)
	}
	return r, nil
}

// noAbort says why stale uploads of provider id cannot be aborted.
func noAbort(id string) string {
	return id + " does not declare the optional AbortUploads call, so its stale uploads cannot be aborted from the host; abort them in the bucket's console, or update the plugin"
}

// Clean deletes the orphans a scan made at scannedAt reported, and aborts
// its stale uploads. It lists the bucket again and deletes only objects
// written at or before scannedAt less the minimum age (so nothing written
// since the scan), each re-checked against the database just before its
// delete: one a result refers to now is kept and reported. Uploads started
// at or before scannedAt less StaleAfter are aborted, by key, unless the
// key also has a newer upload. A delete that fails is reported and the
// clean-up goes on.
func (s *Scanner) Clean(ctx context.Context, id string, scannedAt time.Time) (Cleanup, error) {
	now := s.opts.Now().UTC()
	if scannedAt.IsZero() || scannedAt.After(now.Add(time.Minute)) {
		return Cleanup{}, fmt.Errorf("%w: scan first (POST .../orphans/scan) and send its scanned_at back", ErrConfirmation)
	}
	unlock, err := s.lock(id)
	if err != nil {
		return Cleanup{}, err
	}
	defer unlock()
	t, err := s.target(ctx, id)
	if err != nil {
		return Cleanup{}, err
	}
	c := Cleanup{Provider: id, Bucket: t.pl.Bucket, ScannedAt: scannedAt.UTC(), Deleted: Objects{Keys: []string{}}, Kept: []Kept{}, Failed: []Kept{}, AbortedKeys: []string{}}
	var found []storage.ObjectInfo
	if _, err := s.walk(ctx, t, scannedAt.Add(-s.opts.MinAge), func(o storage.ObjectInfo) { found = append(found, o) }, func() {}); err != nil {
		return Cleanup{}, err
	}
	for _, o := range found {
		if err := ctx.Err(); err != nil {
			return c, fmt.Errorf("orphans: clean-up of %s stopped after %d deletes: %w", id, c.Deleted.Count, err)
		}
		refs, err := s.references(ctx, t, []storage.ObjectInfo{o})
		if err != nil {
			return c, fmt.Errorf("orphans: clean-up of %s stopped after %d deletes: %w", id, c.Deleted.Count, err)
		}
		if refs[o.StoredKey] {
			if len(c.Kept) < maxProblems {
				c.Kept = append(c.Kept, Kept{Key: o.StoredKey, Reason: "a result or job refers to it now (recorded since it was listed)"})
			}
			continue
		}
		if err := t.locator.DeleteAt(ctx, storage.Location{Bucket: t.pl.Bucket, Key: o.StoredKey}); err != nil {
			if len(c.Failed) < maxProblems {
				c.Failed = append(c.Failed, Kept{Key: o.StoredKey, Reason: err.Error()})
			}
			continue
		}
		c.Deleted.add(o.StoredKey, o.Size, MaxListedKeys)
	}
	stale, _, err := s.staleUploads(ctx, t, scannedAt.Add(-s.opts.StaleAfter))
	if err != nil {
		return c, err
	}
	if len(stale) > 0 && t.aborter == nil {
		c.UploadsNote = noAbort(id)
	}
	if t.aborter != nil {
		keys := sortedKeys(stale)
		for len(keys) > 0 {
			batch := keys[:min(len(keys), storage.MaxAbortKeys)]
			keys = keys[len(batch):]
			n, err := t.aborter.AbortUploads(ctx, batch)
			c.AbortedUploads += n
			if err != nil {
				c.UploadsNote = "aborting stale uploads failed: " + err.Error()
				break
			}
			for _, k := range batch {
				c.AbortedKeys = append(c.AbortedKeys, stale[k][0].StoredKey)
			}
		}
	}
	s.opts.Logger.Info("orphans: clean-up done", "provider", id, "bucket", t.pl.Bucket, "deleted", c.Deleted.Count, "bytes", c.Deleted.Bytes,
		"kept", len(c.Kept), "failed", len(c.Failed), "aborted_uploads", c.AbortedUploads)
	return c, nil
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// references returns the stored keys of objs that something in the
// database refers to (see the package doc), in one query per table.
func (s *Scanner) references(ctx context.Context, t *target, objs []storage.ObjectInfo) (map[string]bool, error) {
	refs := map[string]bool{}
	if len(objs) == 0 {
		return refs, nil
	}
	// Every value an object may be recorded under: its full key and its
	// key as given to Put.
	byValue := map[string][]storage.ObjectInfo{}
	for _, o := range objs {
		byValue[o.StoredKey] = append(byValue[o.StoredKey], o)
		if o.Key != "" && o.Key != o.StoredKey {
			byValue[o.Key] = append(byValue[o.Key], o)
		}
	}
	values := sortedKeys(byValue)
	args := make([]any, 0, len(values)+1)
	var ph strings.Builder
	for i, v := range values {
		if i > 0 {
			ph.WriteString(", ")
		}
		ph.WriteString("$" + strconv.Itoa(i+1))
		args = append(args, v)
	}
	in := ph.String()
	rows, err := s.db.QueryContext(ctx, "SELECT bucket, storage, object_key, path FROM results WHERE object_key IN ("+in+") OR path IN ("+in+")", args...)
	if err != nil {
		return nil, fmt.Errorf("orphans: reading the results that refer to objects of %s: %w", t.id, err)
	}
	for rows.Next() {
		var bucket, storageID, objectKey, path string
		if err := rows.Scan(&bucket, &storageID, &objectKey, &path); err != nil {
			rows.Close()
			return nil, fmt.Errorf("orphans: reading the results that refer to objects of %s: %w", t.id, err)
		}
		for _, o := range byValue[objectKey] {
			if (bucket == t.pl.Bucket && objectKey == o.StoredKey) || (bucket == "" && storageID == t.id && objectKey == o.Key) {
				refs[o.StoredKey] = true
			}
		}
		for _, o := range byValue[path] {
			if path == o.Key {
				refs[o.StoredKey] = true
			}
		}
	}
	if err := rows.Close(); err != nil {
		return nil, fmt.Errorf("orphans: reading the results that refer to objects of %s: %w", t.id, err)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("orphans: reading the results that refer to objects of %s: %w", t.id, err)
	}
	args = append(args, t.id)
	jrows, err := s.db.QueryContext(ctx, "SELECT object_key FROM jobs WHERE provider = $"+strconv.Itoa(len(args))+" AND object_key IN ("+in+")", args...)
	if err != nil {
		return nil, fmt.Errorf("orphans: reading the jobs that refer to objects of %s: %w", t.id, err)
	}
	defer jrows.Close()
	for jrows.Next() {
		var objectKey string
		if err := jrows.Scan(&objectKey); err != nil {
			return nil, fmt.Errorf("orphans: reading the jobs that refer to objects of %s: %w", t.id, err)
		}
		for _, o := range byValue[objectKey] {
			refs[o.StoredKey] = true
		}
	}
	if err := jrows.Err(); err != nil {
		return nil, fmt.Errorf("orphans: reading the jobs that refer to objects of %s: %w", t.id, err)
	}
	return refs, nil
}
