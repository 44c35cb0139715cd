package results

import (
	"context"
	"errors"
	"time"

	"github.com/magicads/r2storage/shared/storage"
)

// ProviderJobs summarises one provider's jobs and its latest outcomes on
// this node, for the admin.
type ProviderJobs struct {
	// Pending counts the jobs waiting or running (not failed).
	Pending int `json:"pending"`
	// Failed counts the jobs parked as failed: a permanent error stopped
	// them; they run again when the admin retries them or the provider's
	// settings change.
	Failed int `json:"failed"`
	// LastError is the error of the latest failed attempt to the
	// provider, "" when the latest attempt succeeded (or none was made).
	LastError string `json:"last_error"`
	// LastCode is LastError's contract code.
	LastCode storage.ErrorCode `json:"-"`
	// LastErrorAt is when LastError happened (zero without one).
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// LastSuccessAt is when an attempt to the provider last succeeded.
	LastSuccessAt time.Time `json:"last_success_at,omitzero"`
}

// JobStats returns, per provider id, its jobs and latest outcomes.
// SKELETON: implemented by the custody change.
func (s *Service) JobStats(ctx context.Context) (map[string]ProviderJobs, error) {
	return nil, errors.ErrUnsupported
}

// RetryFailed makes every failed job of provider due now again and returns
// how many. SKELETON: implemented by the custody change.
func (s *Service) RetryFailed(ctx context.Context, provider string) (int64, error) {
	return 0, errors.ErrUnsupported
}
