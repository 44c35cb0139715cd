package s3compat

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/magicads/r2storage/plugin/s3kit"
	"github.com/magicads/r2storage/shared/storage"
)

// Messages the admin sees after Test connection. The read-back failure is
// worded exactly as the product's troubleshooting table has it.
const (
	MsgReadBack = "Upload succeeded but the object could not be read back"
	MsgMismatch = "Upload succeeded but the object read back did not match what was uploaded"
)

// probeTimeout bounds each step of a connection test.
const probeTimeout = 20 * time.Second

// ProbeDir is the folder, under the key prefix, that probe objects use.
const ProbeDir = ".magicads-probe"

// TestConnection uploads a small probe object under the key prefix, reads it
// back, compares it and deletes it. The probe is deleted whatever happened
// after the upload. A failure names its step and cause.
func (p *Provider) TestConnection(ctx context.Context) (storage.TestResult, error) {
	c, err := p.current()
	if err != nil {
		return storage.TestResult{Step: storage.StepConfig, Message: "Connection failed: the settings are incomplete. Fill in the access key, secret, region and bucket, then save."}, nil
	}
	var rnd [12]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return storage.TestResult{}, fmt.Errorf("test connection: random probe name: %w", err)
	}
	probeKey := ProbeDir + "/" + hex.EncodeToString(rnd[:]) + ".txt"
	objectKey, err := c.settings.objectKey(probeKey)
	if err != nil {
		return storage.TestResult{Step: storage.StepConfig, Message: "Connection failed: " + err.Error()}, nil
	}
	body := []byte(fmt.Sprintf("MagicAds connection test %s %s\n", p.opts.Now().UTC().Format(time.RFC3339Nano), hex.EncodeToString(rnd[:])))
	res := storage.TestResult{ProbeKey: probeKey}

	out := c.bucket.Probe(ctx, objectKey, body, probeTimeout)
	if err := out.UploadErr; err != nil {
		res.Step = storage.StepUpload
		res.Message = p.failureMessage(c.settings, err)
		p.log.Warn("test connection failed", "step", res.Step, "bucket", c.settings.Bucket, "error", toStorageError("upload probe", "", err))
		return res, nil
	}
	readErr, mismatch, delErr := out.ReadErr, out.Mismatch, out.DeleteErr
	if delErr != nil {
		p.log.Warn("test connection could not delete its probe object", "key", objectKey, "error", toStorageError("delete probe", "", delErr))
	}
	switch {
	case readErr != nil:
		res.Step = storage.StepRead
		res.Message = MsgReadBack
		p.log.Warn("test connection failed", "step", res.Step, "bucket", c.settings.Bucket, "error", toStorageError("read probe", "", readErr))
	case mismatch:
		res.Step = storage.StepRead
		res.Message = MsgMismatch
	case delErr != nil:
		res.Step = storage.StepDelete
		res.Message = "Upload and read back succeeded but the probe object could not be deleted: " + p.cause(c.settings, delErr) + ". Allow the access key to delete objects in the bucket (s3:DeleteObject)."
	default:
		res.OK = true
		res.Step = storage.StepDelete
		res.Message = fmt.Sprintf("Connection successful: a probe object was uploaded to bucket %q, read back and deleted.", c.settings.Bucket)
	}
	return res, nil
}

// failureMessage words an upload failure for the admin's toast.
func (p *Provider) failureMessage(s Settings, err error) string {
	return "Connection failed: " + p.cause(s, err) + "."
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
