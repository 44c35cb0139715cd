package s3kit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"

	"github.com/magicads/r2storage/shared/storage"
)

// Cause is what went wrong talking to the bucket, in the admin's terms.
type Cause int

// The causes Classify tells apart.
const (
	// CauseOther is anything not below.
	CauseOther Cause = iota
	// CauseBadCredentials is a rejected access key or signature.
	CauseBadCredentials
	// CauseBucketNotFound is a missing bucket.
	CauseBucketNotFound
	// CauseNotFound is a missing object.
	CauseNotFound
	// CausePermission is a refusal of a valid key.
	CausePermission
	// CauseUnreachable is a network failure before an answer.
	CauseUnreachable
	// CauseTransient is an overloaded or failing service.
	CauseTransient
	// CauseCanceled is the caller's context ending.
	CauseCanceled
	// CauseBadRequest is a request the service refused as invalid.
	CauseBadRequest
)

// Classify finds the cause of an error from the S3 client and the S3 error
// code, if the service answered one.
func Classify(err error) (Cause, string) {
	if err == nil {
		return CauseOther, ""
	}
	// The caller's context ending, found by identity: a network time-out
	// (net/http's, or a silent connection) also matches
	// context.DeadlineExceeded under errors.Is, but it means the endpoint
	// did not answer, not that the caller gave up.
	if Holds(err, context.Canceled) || Holds(err, context.DeadlineExceeded) {
		return CauseCanceled, ""
	}
	var se *storage.Error
	if errors.As(err, &se) {
		switch se.Code {
		case storage.Canceled:
			return CauseCanceled, ""
		case storage.InvalidArgument:
			return CauseBadRequest, ""
		}
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		code := apiErr.ErrorCode()
		switch code {
		case "InvalidAccessKeyId", "XAdminUserNotFound", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "AuthorizationHeaderMalformed", "Unauthorized":
			return CauseBadCredentials, code
		case "NoSuchBucket":
			return CauseBucketNotFound, code
		case "NoSuchKey", "NotFound":
			return CauseNotFound, code
		case "AccessDenied", "Forbidden", "AllAccessDisabled":
			return CausePermission, code
		case "SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling", "TooManyRequests":
			return CauseTransient, code
		case "InvalidRange", "InvalidArgument", "KeyTooLongError", "EntityTooLarge":
			return CauseBadRequest, code
		}
		var respErr *awshttp.ResponseError
		if errors.As(err, &respErr) {
			switch status := respErr.HTTPStatusCode(); {
			case status == 401:
				return CauseBadCredentials, code
			case status == 403:
				return CausePermission, code
			case status == 404:
				return CauseNotFound, code
			case status == 416:
				return CauseBadRequest, code
			case status == 429 || status >= 500:
				return CauseTransient, code
			}
		}
		return CauseOther, code
	}
	var netErr net.Error
	var urlErr *url.Error
	var opErr *net.OpError
	if errors.As(err, &opErr) || errors.As(err, &urlErr) || errors.As(err, &netErr) {
		return CauseUnreachable, ""
	}
	return CauseOther, ""
}

// Holds reports whether target itself is in err's tree (no Is methods).
func Holds(err, target error) bool {
	if err == target {
		return true
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return u.Unwrap() != nil && Holds(u.Unwrap(), target)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if e != nil && Holds(e, target) {
				return true
			}
		}
	}
	return false
}

// ToStorageError turns an S3 client error from operation op on key (may
// be "") into the contract's typed error, naming the cause.
func ToStorageError(op, key string, err error) error {
	if err == nil {
		return nil
	}
	c, code := Classify(err)
	what := op
	if key != "" {
		what = op + " " + key
	}
	msg := func(text string) string {
		if code != "" {
			return fmt.Sprintf("%s: %s (%s)", what, text, code)
		}
		return fmt.Sprintf("%s: %s", what, text)
	}
	var se *storage.Error
	if errors.As(err, &se) && se.Code != storage.Unknown {
		return fmt.Errorf("%s: %w", what, err)
	}
	switch c {
	case CauseBadCredentials:
		return &storage.Error{Code: storage.PermissionDenied, Message: msg("bad credentials: the Access Key ID or Secret Access Key was rejected"), Err: err}
	case CausePermission:
		return &storage.Error{Code: storage.PermissionDenied, Message: msg("permission denied"), Err: err}
	case CauseBucketNotFound:
		return &storage.Error{Code: storage.FailedPrecondition, Message: msg("bucket not found"), Err: err}
	case CauseNotFound:
		return &storage.Error{Code: storage.NotFound, Message: msg("not found"), Err: err}
	case CauseUnreachable:
		return &storage.Error{Code: storage.Unavailable, Message: msg("endpoint unreachable: " + err.Error()), Err: err}
	case CauseTransient:
		return &storage.Error{Code: storage.Unavailable, Message: msg("temporarily unavailable, retry later"), Err: err}
	case CauseCanceled:
		return &storage.Error{Code: storage.Canceled, Message: msg("cancelled"), Err: err}
	case CauseBadRequest:
		return &storage.Error{Code: storage.InvalidArgument, Message: msg("refused: " + err.Error()), Err: err}
	}
	return &storage.Error{Code: storage.Unknown, Message: msg(err.Error()), Err: err}
}

// RootCause is the innermost error of a chain, for short messages.
func RootCause(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok || u.Unwrap() == nil {
			return err
		}
		err = u.Unwrap()
	}
}
