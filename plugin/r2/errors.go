package r2

import "github.com/magicads/r2storage/plugin/s3kit"

// cause is what went wrong talking to the bucket (s3kit.Cause).
type cause = s3kit.Cause

// The causes classify tells apart.
const (
	causeOther          = s3kit.CauseOther
	causeBadCredentials = s3kit.CauseBadCredentials
	causeBucketNotFound = s3kit.CauseBucketNotFound
	causeNotFound       = s3kit.CauseNotFound
	causePermission     = s3kit.CausePermission
	causeUnreachable    = s3kit.CauseUnreachable
	causeTransient      = s3kit.CauseTransient
	causeCanceled       = s3kit.CauseCanceled
	causeBadRequest     = s3kit.CauseBadRequest
)

// classify finds the cause of an error from the S3 client.
func classify(err error) (cause, string) { return s3kit.Classify(err) }

// holds reports whether target itself is in err's tree (no Is methods).
func holds(err, target error) bool { return s3kit.Holds(err, target) }

// toStorageError turns an S3 client error into the contract's typed error.
func toStorageError(op, key string, err error) error { return s3kit.ToStorageError(op, key, err) }
