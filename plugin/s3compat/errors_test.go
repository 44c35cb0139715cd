package s3compat

import (
	"strings"
	"testing"

	"github.com/aws/smithy-go"

	"github.com/magicads/r2storage/shared/storage"
)

func TestWrongRegionErrors(t *testing.T) {
	cases := []struct {
		err      error
		wrong    bool
		expected string
		code     storage.ErrorCode
	}{
		{&smithy.GenericAPIError{Code: "AuthorizationHeaderMalformed", Message: "The authorization header is malformed; the region 'us-east-1' is wrong; expecting 'eu-west-1'"}, true, "eu-west-1", storage.FailedPrecondition},
		{&smithy.GenericAPIError{Code: "AuthorizationHeaderMalformed", Message: `The authorization header is malformed; the region "eu-west-1" is wrong; expecting "us-east-1"`}, true, "us-east-1", storage.FailedPrecondition},
		{&smithy.GenericAPIError{Code: "PermanentRedirect", Message: "The bucket you are attempting to access must be addressed using the specified endpoint."}, true, "", storage.FailedPrecondition},
		{&smithy.GenericAPIError{Code: "AuthorizationHeaderMalformed", Message: "The authorization header is malformed; missing Credential."}, false, "", storage.PermissionDenied},
		{&smithy.GenericAPIError{Code: "SignatureDoesNotMatch"}, false, "", storage.PermissionDenied},
	}
	for _, c := range cases {
		if got := isWrongRegion(c.err); got != c.wrong {
			t.Errorf("%v: wrong region %v, want %v", c.err, got, c.wrong)
		}
		if got := expectedRegion(c.err); got != c.expected {
			t.Errorf("%v: expected region %q, want %q", c.err, got, c.expected)
		}
		err := toStorageError("put", "a.png", c.err)
		if storage.Code(err) != c.code || storage.IsRetryable(err) {
			t.Errorf("%v: %v (code %v), want %v", c.err, err, storage.Code(err), c.code)
		}
		if c.wrong && !strings.Contains(err.Error(), "wrong region") {
			t.Errorf("%v: %v does not say wrong region", c.err, err)
		}
	}
}
