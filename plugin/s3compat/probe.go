package s3compat

import (
	"context"
	"fmt"

	"github.com/magicads/r2storage/plugin/s3kit"
	"github.com/magicads/r2storage/shared/storage"
)

// Messages the admin sees after Test connection. The read-back failure is
// worded exactly as the product's troubleshooting table has it.
const (
	MsgReadBack = s3kit.MsgReadBack
	MsgMismatch = s3kit.MsgMismatch
)

// ProbeDir is the folder, under the key prefix, that probe objects use.
const ProbeDir = s3kit.ProbeDir

// deleteFix ends the message when the probe could not be deleted.
const deleteFix = "Allow the access key to delete objects in the bucket (s3:DeleteObject)."

// TestConnection uploads a small probe object under the key prefix, reads it
// back, compares it and deletes it. The probe is deleted whatever happened
// after the upload. A failure names its step and cause.
func (p *Provider) TestConnection(ctx context.Context) (storage.TestResult, error) {
	c, err := p.current()
	if err != nil {
		return storage.TestResult{Step: storage.StepConfig, Message: "Connection failed: the settings are incomplete. Fill in the access key, secret, region and bucket, then save."}, nil
	}
	return c.objects.TestConnection(ctx, s3kit.ProbeWording{
		Cause:     func(err error) string { return p.cause(c.settings, err) },
		DeleteFix: deleteFix,
	})
}

// cause names what went wrong and what to check, never echoing a secret.
func (p *Provider) cause(s Settings, err error) string {
	if isWrongRegion(err) {
		code := errorCode(err)
		if r := expectedRegion(err); r != "" {
			return fmt.Sprintf("wrong region — requests were signed for region %q, but the bucket's server expects %q (%s). Set Region to %q", s.Region, r, code, r)
		}
		return fmt.Sprintf("wrong region — requests were signed for region %q, but bucket %q is in another region (%s). Set Region to the bucket's region", s.Region, s.Bucket, code)
	}
	c, code := s3kit.Classify(err)
	switch c {
	case s3kit.CauseBadCredentials:
		return "bad credentials — the Access Key ID or Secret Access Key was rejected (" + code + "). Re-check the access key pair"
	case s3kit.CauseBucketNotFound:
		return fmt.Sprintf("bucket %q not found — check the bucket name, the region and the endpoint", s.Bucket)
	case s3kit.CausePermission:
		return fmt.Sprintf("permission denied on bucket %q (%s) — the access key needs to read, write and delete objects in this bucket (s3:PutObject, s3:GetObject, s3:DeleteObject)", s.Bucket, code)
	case s3kit.CauseUnreachable:
		return fmt.Sprintf("endpoint unreachable — could not connect to %s (%s)", s.ResolvedEndpoint(), s3kit.RootCause(err))
	case s3kit.CauseTransient:
		return "the storage service is temporarily unavailable (" + code + "); try again"
	case s3kit.CauseCanceled:
		return "the test timed out or was cancelled"
	}
	if code != "" {
		return "the storage service answered " + code
	}
	return s3kit.RootCause(err).Error()
}
