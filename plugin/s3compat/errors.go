package s3compat

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"

	"github.com/magicads/r2storage/plugin/s3kit"
	"github.com/magicads/r2storage/shared/storage"
)

// wrongRegion matches the message S3 servers give for a request signed for
// another region: "the region 'eu-west-1' is wrong; expecting 'us-east-1'"
// (Amazon S3 quotes with ', versitygw and MinIO with ").
var wrongRegion = regexp.MustCompile(`region ['"]?[^'"\s]*['"]? is wrong; expecting ['"]?([a-z0-9-]+)['"]?`)

// isWrongRegion reports whether err says the request was signed for
// another region than the bucket's: Amazon S3 answers
// AuthorizationHeaderMalformed naming the expected region, or
// PermanentRedirect (HTTP 301) when the bucket lives in another region.
// s3kit.Classify would call the first bad credentials.
func isWrongRegion(err error) bool {
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.ErrorCode() {
	case "AuthorizationHeaderMalformed":
		return wrongRegion.MatchString(apiErr.ErrorMessage())
	case "PermanentRedirect", "IllegalLocationConstraintException":
		return true
	}
	var respErr *awshttp.ResponseError
	return errors.As(err, &respErr) && respErr.HTTPStatusCode() == http.StatusMovedPermanently
}

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

// errorCode is the S3 error code in err, or "".
func errorCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}

// toStorageError turns an S3 client error into the contract's typed error:
// s3kit.ToStorageError, with a wrong region reported as FailedPrecondition
// naming the region to set.
func toStorageError(op, key string, err error) error {
	if err == nil || !isWrongRegion(err) {
		return s3kit.ToStorageError(op, key, err)
	}
	what := op
	if key != "" {
		what = op + " " + key
	}
	text := "wrong region: the bucket's server refused the configured region"
	if r := expectedRegion(err); r != "" {
		text += "; it expects region " + r
	}
	return &storage.Error{Code: storage.FailedPrecondition, Message: fmt.Sprintf("%s: %s, so set Region to the bucket's region (%s)", what, text, errorCode(err)), Err: err}
}
