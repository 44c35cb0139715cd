package s3compat

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"

	"github.com/magicads/r2storage/shared/storage"
)

// cause is what went wrong talking to the bucket, in the admin's terms.
type cause int

const (
	causeOther cause = iota
	causeBadCredentials
	causeBucketNotFound
	causeNotFound
	causePermission
	causeUnreachable
	causeTransient
	causeCanceled
	causeBadRequest
	causeWrongRegion
)

// wrongRegion matches the message S3 servers give for a request signed for
// another region: "the region 'eu-west-1' is wrong; expecting 'us-east-1'"
// (Amazon S3 quotes with ', versitygw and MinIO with ").
var wrongRegion = regexp.MustCompile(`region ['"]?[^'"\s]*['"]? is wrong; expecting ['"]?([a-z0-9-]+)['"]?`)

// expectedRegion is the region a wrong-region error says the bucket's
// server expects, or "" when it does not say.
func expectedRegion(err error) string {
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) {
		return ""
	}
	if m := wrongRegion.FindStringSubmatch(apiErr.ErrorMessage()); m != nil {
		return m[1]
	}
	return ""
}

// classify finds the cause of an error from the S3 client.
func classify(err error) (cause, string) {
	if err == nil {
		return causeOther, ""
	}
	// The caller's context ending, found by identity: a network time-out
	// (net/http's, or a silent connection) also matches
	// context.DeadlineExceeded under errors.Is, but it means the endpoint
	// did not answer, not that the caller gave up.
	if holds(err, context.Canceled) || holds(err, context.DeadlineExceeded) {
		return causeCanceled, ""
	}
	var se *storage.Error
	if errors.As(err, &se) {
		switch se.Code {
		case storage.Canceled:
			return causeCanceled, ""
		case storage.InvalidArgument:
			return causeBadRequest, ""
		}
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		code := apiErr.ErrorCode()
		// Signed for another region: Amazon S3 answers
		// AuthorizationHeaderMalformed (naming the expected region), or
		// PermanentRedirect / 301 when the bucket lives in another region.
		switch {
		case code == "AuthorizationHeaderMalformed" && wrongRegion.MatchString(apiErr.ErrorMessage()),
			code == "PermanentRedirect", code == "IllegalLocationConstraintException":
			return causeWrongRegion, code
		}
		switch code {
		case "InvalidAccessKeyId", "XAdminUserNotFound", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "AuthorizationHeaderMalformed", "Unauthorized":
			return causeBadCredentials, code
		case "NoSuchBucket":
			return causeBucketNotFound, code
		case "NoSuchKey", "NotFound":
			return causeNotFound, code
		case "AccessDenied", "Forbidden", "AllAccessDisabled":
			return causePermission, code
		case "SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling", "TooManyRequests":
			return causeTransient, code
		case "InvalidRange", "InvalidArgument", "KeyTooLongError", "EntityTooLarge":
			return causeBadRequest, code
		}
		var respErr *awshttp.ResponseError
		if errors.As(err, &respErr) {
			switch status := respErr.HTTPStatusCode(); {
			case status == 301:
				return causeWrongRegion, code
			case status == 401:
				return causeBadCredentials, code
			case status == 403:
				return causePermission, code
			case status == 404:
				return causeNotFound, code
			case status == 416:
				return causeBadRequest, code
			case status == 429 || status >= 500:
				return causeTransient, code
			}
		}
		return causeOther, code
	}
	var netErr net.Error
	var urlErr *url.Error
	var opErr *net.OpError
	if errors.As(err, &opErr) || errors.As(err, &urlErr) || errors.As(err, &netErr) {
		return causeUnreachable, ""
	}
	return causeOther, ""
}

// holds reports whether target itself is in err's tree (no Is methods).
func holds(err, target error) bool {
	if err == target {
		return true
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return u.Unwrap() != nil && holds(u.Unwrap(), target)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if e != nil && holds(e, target) {
				return true
			}
		}
	}
	return false
}

// toStorageError turns an S3 client error into the contract's typed error.
func toStorageError(op, key string, err error) error {
	if err == nil {
		return nil
	}
	c, code := classify(err)
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
	case causeBadCredentials:
		return &storage.Error{Code: storage.PermissionDenied, Message: msg("bad credentials: the Access Key ID or Secret Access Key was rejected"), Err: err}
	case causePermission:
		return &storage.Error{Code: storage.PermissionDenied, Message: msg("permission denied"), Err: err}
	case causeBucketNotFound:
		return &storage.Error{Code: storage.FailedPrecondition, Message: msg("bucket not found"), Err: err}
	case causeNotFound:
		return &storage.Error{Code: storage.NotFound, Message: msg("not found"), Err: err}
	case causeUnreachable:
		return &storage.Error{Code: storage.Unavailable, Message: msg("endpoint unreachable: " + err.Error()), Err: err}
	case causeTransient:
		return &storage.Error{Code: storage.Unavailable, Message: msg("temporarily unavailable, retry later"), Err: err}
	case causeCanceled:
		return &storage.Error{Code: storage.Canceled, Message: msg("cancelled"), Err: err}
	case causeWrongRegion:
		text := "wrong region: the bucket's server refused the configured region"
		if r := expectedRegion(err); r != "" {
			text += "; it expects region " + r
		}
		return &storage.Error{Code: storage.FailedPrecondition, Message: msg(text + ", so set Region to the bucket's region"), Err: err}
	case causeBadRequest:
		return &storage.Error{Code: storage.InvalidArgument, Message: msg("refused: " + err.Error()), Err: err}
	}
	return &storage.Error{Code: storage.Unknown, Message: msg(err.Error()), Err: err}
}
