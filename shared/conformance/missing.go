package conformance

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"

	"github.com/magicads/r2storage/shared/storage"
)

// MissingBucketCaseName is the name under which RunPlugin and the
// conformance command report CheckMissingBucket's checks.
const MissingBucketCaseName = "missing-bucket"

// MissingBucketPrefix starts the name of the bucket MissingBucketSettings
// makes up; the rest is 16 random hex digits, so the name is a valid S3
// bucket name that no one has created.
const MissingBucketPrefix = "conformance-missing-"

// MissingBucketSettings returns a copy of settings whose "bucket" field
// names a bucket that does not exist (MissingBucketPrefix and random hex
// digits), and that name. ok is false when settings have no string
// "bucket" field: give the run MissingBucket instead.
func MissingBucketSettings(settings storage.Settings) (missing storage.Settings, bucket string, ok bool, err error) {
	if b, isString := settings["bucket"].(string); !isString || b == "" {
		return nil, "", false, nil
	}
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		return nil, "", false, fmt.Errorf("conformance: making a bucket name: %w", err)
	}
	bucket = MissingBucketPrefix + hex.EncodeToString(r[:])
	missing = maps.Clone(settings)
	missing["bucket"] = bucket
	return missing, bucket, true, nil
}

// MissingBucket gives CheckMissingBucket (through RunPlugin or the
// command) settings that point at a bucket that does not exist, named
// bucket, for a provider whose settings name the bucket other than with a
// "bucket" field.
func MissingBucket(settings storage.Settings, bucket string) Option {
	return func(c *runConfig) {
		c.missingSettings, c.missingBucket = settings, bucket
	}
}

// CheckMissingBucket checks the rule for a bucket that does not exist:
// p, configured with settings that point at one (from MissingBucket in
// opts, else MissingBucketSettings of settings), either refuses Configure
// with FailedPrecondition, or accepts it and then answers TestConnection
// with OK = false, and Put, Get, Stat, Delete (and GetAt, StatAt,
// DeleteAt and AbortUploads when declared) with FailedPrecondition, every
// message naming the bucket. It is never NotFound (the objects are out of
// reach, not gone) and Delete never succeeds. Describe's capabilities
// other than PublicURLs stay as they were. It then configures p with
// settings again. It returns a *SkipError when it has no settings for a
// missing bucket.
//
// A plugin built before these rules were settled (Describe's Contract below
// 2, see storage.ContractRevision) is held to the rule of its time: a
// missing bucket never looks like success — Configure may refuse it with
// any error, TestConnection says OK = false, and every object call fails
// (with any code, NotFound included).
func CheckMissingBucket(ctx context.Context, p storage.Provider, settings storage.Settings, opts ...Option) (err error) {
	cfg := newRunConfig(opts)
	missing, bucket := cfg.missingSettings, cfg.missingBucket
	if missing == nil {
		var ok bool
		missing, bucket, ok, err = MissingBucketSettings(settings)
		if err != nil {
			return err
		}
		if !ok {
			return skipf("the settings have no \"bucket\" field to point at a missing bucket; give the run conformance.MissingBucket")
		}
	}
	p = storage.Guard(p)
	ns, err := NewNamespace()
	if err != nil {
		return err
	}
	before, derr := p.Describe(ctx)
	if derr != nil {
		return fmt.Errorf("describe: %w", derr)
	}
	var errs []error
	old := before.Contract < 2
	res, cerr := p.Configure(ctx, missing)
	if cerr == nil {
		errs = append(errs, checkMissingBucketCalls(ctx, p, before, res, bucket, ns+"/"+MissingBucketCaseName+"/object.txt")...)
	} else if e := expectMissingBucket(fmt.Sprintf("configure with bucket %q, which does not exist", bucket), cerr, bucket, old); e != nil {
		errs = append(errs, fmt.Errorf("%w (Configure may accept the settings without checking the bucket, or refuse them with code %q)", e, storage.FailedPrecondition))
	}
	if _, rerr := p.Configure(ctx, settings); rerr != nil {
		errs = append(errs, fmt.Errorf("configure again with the original settings after the missing-bucket checks: %w", rerr))
	}
	return errors.Join(errs...)
}

// checkMissingBucketCalls makes the calls of CheckMissingBucket on p,
// configured for the missing bucket (res), with key.
func checkMissingBucketCalls(ctx context.Context, p storage.Provider, before storage.Info, res storage.ConfigureResult, bucket, key string) []error {
	var errs []error
	old := before.Contract < 2
	check := func(op string, err error) {
		if e := expectMissingBucket(op+" in bucket "+fmt.Sprintf("%q", bucket)+", which does not exist", err, bucket, old); e != nil {
			errs = append(errs, e)
		}
	}
	after, err := p.Describe(ctx)
	if err != nil {
		errs = append(errs, fmt.Errorf("describe after configuring a missing bucket: %w", err))
	} else {
		b, a := before.Capabilities, after.Capabilities
		b.PublicURLs, a.PublicURLs = false, false
		if a != b {
			errs = append(errs, fmt.Errorf("describe: capabilities %+v before configuring again, %+v after; only PublicURLs may change with the settings", before.Capabilities, after.Capabilities))
		}
	}
	if _, err := p.Health(ctx); err != nil {
		errs = append(errs, fmt.Errorf("health with a missing bucket: %w; Health answers without touching the network", err))
	}
	tr, err := p.TestConnection(ctx)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("test connection with bucket %q, which does not exist: %w; want OK = false and the cause in the result", bucket, err))
	case tr.OK:
		errs = append(errs, fmt.Errorf("test connection with bucket %q, which does not exist: OK = true, want false", bucket))
	case !old && !strings.Contains(tr.Message, bucket):
		errs = append(errs, fmt.Errorf("test connection with bucket %q, which does not exist: message %q does not name the bucket", bucket, tr.Message))
	}
	_, err = p.Put(ctx, key, strings.NewReader("x"), storage.PutOptions{ContentType: "text/plain", Size: 1})
	check("put", err)
	_, err = p.Stat(ctx, key)
	check("stat", err)
	rc, _, err := p.Get(ctx, key, storage.GetOptions{Length: -1})
	closeIf(rc)
	check("get", err)
	check("delete", p.Delete(ctx, key))
	info := after
	if l, ok := p.(storage.Locator); ok && info.Capabilities.Locations && res.Bucket != "" {
		loc := storage.Location{Bucket: res.Bucket, Key: res.KeyPrefix + key}
		_, err = l.StatAt(ctx, loc)
		check("stat at", err)
		rc, _, err := l.GetAt(ctx, loc, storage.GetOptions{Length: -1})
		closeIf(rc)
		check("get at", err)
		check("delete at", l.DeleteAt(ctx, loc))
	}
	if a, ok := p.(storage.UploadAborter); ok && info.Capabilities.AbortUploads {
		_, err = a.AbortUploads(ctx, []string{key})
		check("abort uploads", err)
	}
	// A provider that wrongly stored the object removes it while it is
	// still configured for where it went.
	var cerr error
	cleanup(ctx, p, &cerr, key)
	return errs
}

// expectMissingBucket checks that err is a FailedPrecondition naming
// bucket; for a plugin of an older contract (old), only that it is an error.
func expectMissingBucket(op string, err error, bucket string, old bool) error {
	if err == nil {
		return fmt.Errorf("%s: succeeded, want an error with code %q naming the bucket", op, storage.FailedPrecondition)
	}
	if old {
		return nil
	}
	if c := storage.Code(err); c != storage.FailedPrecondition {
		return fmt.Errorf("%s: error with code %q (%w), want code %q naming the bucket (never %q: the objects are out of reach, not gone)", op, c, err, storage.FailedPrecondition, storage.NotFound)
	}
	if !strings.Contains(err.Error(), bucket) {
		return fmt.Errorf("%s: error %q does not name the bucket", op, err)
	}
	return nil
}

// closeIf closes rc when it is not nil.
func closeIf(rc io.ReadCloser) {
	if rc != nil {
		rc.Close()
	}
}
