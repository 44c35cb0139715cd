package r2

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
const deleteFix = "Give the token Object Read & Write permission."

// TestConnection uploads a small probe object under the key prefix, reads it
// back, compares it and deletes it. The probe is deleted whatever happened
// after the upload. A failure names its step and cause.
func (p *Provider) TestConnection(ctx context.Context) (storage.TestResult, error) {
	c, err := p.current()
	if err != nil {
		return storage.TestResult{Step: storage.StepConfig, Message: "Connection failed: the settings are incomplete. Fill in the access key, secret, bucket and account id (or a custom endpoint), then save."}, nil
	}
	return c.objects.TestConnection(ctx, s3kit.ProbeWording{
		Cause:     func(err error) string { return p.cause(c.settings, err) },
		DeleteFix: deleteFix,
	})
}

// cause names what went wrong and what to check, never echoing a secret.
func (p *Provider) cause(s Settings, err error) string {
	c, code := classify(err)
	switch c {
	case causeBadCredentials:
		return "bad credentials — the Access Key ID or Secret Access Key was rejected (" + code + "). Re-check the R2 API token"
	case causeBucketNotFound:
		return fmt.Sprintf("bucket %q not found — check the bucket name and the Account ID", s.Bucket)
	case causePermission:
		return fmt.Sprintf("permission denied on bucket %q (%s) — the token needs Object Read & Write on this bucket", s.Bucket, code)
	case causeUnreachable:
		return fmt.Sprintf("endpoint unreachable — could not connect to %s (%s)", s.ResolvedEndpoint(), s3kit.RootCause(err))
	case causeTransient:
		return "the storage service is temporarily unavailable (" + code + "); try again"
	case causeCanceled:
		return "the test timed out or was cancelled"
	}
	if code != "" {
		return "the storage service answered " + code
	}
	return s3kit.RootCause(err).Error()
}
