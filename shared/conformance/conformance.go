// Package conformance is the conformance suite every storage provider runs.
//
// It checks a configured storage.Provider against the rules of the contract
// in package storage: whole-or-nothing puts, typed errors, exact key
// round-trips, refused keys, large streamed objects and so on. A provider
// author runs it from a test:
//
//	func TestConformance(t *testing.T) {
//		p := myprovider.New()
//		res, err := p.Configure(t.Context(), settings)
//		if err != nil {
//			t.Fatal(err)
//		}
//		conformance.Run(t, p, conformance.Configured(res))
//	}
//
// Configured is optional: with it, the locations and public-url cases
// check Put's ObjectInfo.StoredKey and Bucket and the public URL against
// what Configure reported; without it, only that they are consistent.
//
// RunPlugin runs it over the plugin protocol, against the author's plugin
// binary or their test binary acting as the plugin (see
// sdk.ServeIfPlugin), from their own go test:
//
//	conformance.RunPlugin(t, pathToBinary, settings)
//
// Knowing the settings, RunPlugin also checks the rules about the first
// Configure (ConfigureFresh, subtest "before-configure") and about a
// bucket that does not exist (CheckMissingBucket, subtest
// "missing-bucket"); an in-process test can call both itself.
//
// Every run goes through storage.Guard, as sdk.Serve does, so a provider
// gets the same verdict in-process and over the plugin.
//
// Anyone can run it against a plugin binary with
//
//	go run ./shared/cmd/conformance --plugin PATH --settings SETTINGS.json
//
// Every case writes only under a namespace unique to the run
// (conformance/<random>/<case>), so runs against a shared bucket never clash,
// and every case deletes what it wrote. Large objects are streamed from a
// deterministic generator and checked by sha256, so memory stays bounded.
package conformance

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/magicads/r2storage/shared/storage"
)

// NamespaceRoot is the first segment of every key the suite writes.
const NamespaceRoot = "conformance"

// Case is one conformance check.
type Case struct {
	// Name identifies the case; it is a valid key segment and a valid
	// subtest name.
	Name string
	// Run performs the check against a configured provider, writing only
	// keys under ns, and returns nil, a *SkipError when the case does not
	// apply to the provider, or an error saying what was expected and what
	// came back.
	Run func(ctx context.Context, p storage.Provider, ns string) error
}

// SkipError is returned by a case that does not apply to the provider (for
// example range reads when Describe reports none). It counts as a pass.
type SkipError struct {
	// Reason says why the case does not apply.
	Reason string
}

// Error returns the reason prefixed with "skipped: ".
func (e *SkipError) Error() string { return "skipped: " + e.Reason }

// IsSkip reports whether err says the case did not apply.
func IsSkip(err error) bool {
	var s *SkipError
	return errors.As(err, &s)
}

// skipf returns a *SkipError with a formatted reason.
func skipf(format string, args ...any) error {
	return &SkipError{Reason: fmt.Sprintf(format, args...)}
}

// Cases returns the suite, in a stable order.
func Cases() []Case {
	return []Case{
		{Name: "describe", Run: caseDescribe},
		{Name: "health", Run: caseHealth},
		{Name: "test-connection", Run: caseTestConnection},
		{Name: "empty-object", Run: caseEmptyObject},
		{Name: "one-byte", Run: caseOneByte},
		{Name: "stat-size", Run: caseStatSize},
		{Name: "content-type", Run: caseContentType},
		{Name: "overwrite", Run: caseOverwrite},
		{Name: "etag", Run: caseETag},
		{Name: "object-5mib-plus-1", Run: caseObject5MiB},
		{Name: "object-64mib-plus-1", Run: caseObject64MiB},
		{Name: "unknown-size", Run: caseUnknownSize},
		{Name: "range-read", Run: caseRangeRead},
		{Name: "read-at-end", Run: caseReadAtEnd},
		{Name: "not-found", Run: caseNotFound},
		{Name: "delete-missing", Run: caseDeleteMissing},
		{Name: "delete-then-stat", Run: caseDeleteThenStat},
		{Name: "special-keys", Run: caseSpecialKeys},
		{Name: "long-keys", Run: caseLongKeys},
		{Name: "invalid-keys", Run: caseInvalidKeys},
		{Name: "concurrent-puts", Run: caseConcurrentPuts},
		{Name: "cancelled-put", Run: caseCancelledPut},
		{Name: "reader-error", Run: caseReaderError},
		{Name: "short-reader", Run: caseShortReader},
		{Name: "long-reader", Run: caseLongReader},
		{Name: "failed-overwrite", Run: caseFailedOverwrite},
		{Name: "put-sha256", Run: casePutSHA256},
		{Name: "put-from-file", Run: casePutFromFile},
		{Name: "public-url", Run: casePublicURL},
		{Name: "abort-uploads", Run: caseAbortUploads},
		{Name: "locations", Run: caseLocations},
	}
}

// Option adjusts a run of the suite.
type Option func(*runConfig)

// runConfig is what the options of a run set.
type runConfig struct {
	// configured is what the provider's Configure reported, if known.
	configured *storage.ConfigureResult
	// missingSettings point at a bucket named missingBucket that does not
	// exist (MissingBucket); nil derives them (MissingBucketSettings).
	missingSettings storage.Settings
	missingBucket   string
}

// Configured tells the suite what the provider's last Configure returned,
// so the locations case checks that Put reports StoredKey =
// res.KeyPrefix + key and Bucket = res.Bucket, and that the public URL is
// storage.PublicURL(res.PublicBaseURL, StoredKey).
func Configured(res storage.ConfigureResult) Option {
	return func(c *runConfig) { c.configured = &res }
}

// runConfigKey is the context key of a run's *runConfig.
type runConfigKey struct{}

// newRunConfig applies opts.
func newRunConfig(opts []Option) *runConfig {
	c := &runConfig{}
	for _, o := range opts {
		if o != nil {
			o(c)
		}
	}
	return c
}

// configuredResult returns what the run was told Configure returned, or nil.
func configuredResult(ctx context.Context) *storage.ConfigureResult {
	if c, ok := ctx.Value(runConfigKey{}).(*runConfig); ok {
		return c.configured
	}
	return nil
}

// NewNamespace returns a fresh key namespace for one run:
// "conformance/<16 random hex digits>".
func NewNamespace() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("conformance: making a namespace: %w", err)
	}
	return NamespaceRoot + "/" + hex.EncodeToString(b[:]), nil
}

// Run runs every case against p as a subtest of t. A case that does not
// apply to p is skipped with its reason. Like RunAll and RunCases, it runs
// p through storage.Guard, as sdk.Serve does, so p is checked as the host
// would see it over the plugin.
func Run(t *testing.T, p storage.Provider, opts ...Option) {
	t.Helper()
	p = storage.Guard(p)
	ns, err := NewNamespace()
	if err != nil {
		t.Fatal(err)
	}
	cfg := newRunConfig(opts)
	for _, c := range Cases() {
		t.Run(c.Name, func(t *testing.T) {
			err := runCase(context.WithValue(t.Context(), runConfigKey{}, cfg), p, ns, c)
			var skip *SkipError
			switch {
			case err == nil:
			case errors.As(err, &skip):
				t.Skip(skip.Reason)
			default:
				t.Error(err)
			}
		})
	}
}

// RunAll runs every case against p, one after the other, and calls report
// (if not nil) after each. It returns how many cases passed and failed; a
// skipped case counts as passed and is reported with a *SkipError (see
// IsSkip).
func RunAll(ctx context.Context, p storage.Provider, report func(name string, err error, d time.Duration), opts ...Option) (passed, failed int) {
	return RunCases(ctx, p, Cases(), report, opts...)
}

// RunCases is RunAll for a chosen subset of the cases, such as a filtered
// Cases(). It runs p through storage.Guard (a plugin client, which is
// storage.Guarded, as it is: the plugin's server guards it), so a provider
// gets the same verdict in-process and over the plugin.
func RunCases(ctx context.Context, p storage.Provider, cases []Case, report func(name string, err error, d time.Duration), opts ...Option) (passed, failed int) {
	p = storage.Guard(p)
	ctx = context.WithValue(ctx, runConfigKey{}, newRunConfig(opts))
	ns, err := NewNamespace()
	for _, c := range cases {
		start := time.Now()
		cerr := err
		if cerr == nil {
			cerr = runCase(ctx, p, ns, c)
		}
		d := time.Since(start)
		if cerr == nil || IsSkip(cerr) {
			passed++
		} else {
			failed++
		}
		if report != nil {
			report(c.Name, cerr, d)
		}
	}
	return passed, failed
}

// runCase runs c under its own namespace and turns a panic into an error.
func runCase(ctx context.Context, p storage.Provider, ns string, c Case) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	if c.Run == nil {
		return errors.New("case has no Run function")
	}
	return c.Run(ctx, p, ns+"/"+c.Name)
}
