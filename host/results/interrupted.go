package results

import (
	"context"
	"time"

	"github.com/magicads/r2storage/shared/storage"
)

// abortTimeout bounds the whole abort of interrupted uploads at start, so
// the interrupted jobs resume within seconds even when a provider is slow.
const abortTimeout = 15 * time.Second

// AbortInterrupted asks each provider to abort the incomplete uploads (R2
// multipart uploads) that the offload jobs leased by this node's earlier
// process had started: that process was killed mid-upload. It runs before
// those leases are released (RunWorker calls it first), so no new attempt
// of the same key is running yet. Providers that do not offer the optional
// call (storage.UploadAborter, declared in Capabilities) are skipped. It
// returns how many uploads were aborted; failures are logged, never fatal.
func (s *Service) AbortInterrupted(ctx context.Context) int {
	ctx, cancel := context.WithTimeout(ctx, abortTimeout)
	defer cancel()
	keys, err := s.interruptedKeys(ctx)
	if err != nil {
		s.log.Warn("results: listing the uploads this node's earlier process left; incomplete uploads may remain", "err", err)
		return 0
	}
	total := 0
	for id, ks := range keys {
		p, ok := s.router.Provider(ctx, id)
		if !ok {
			continue
		}
		ab, ok := p.(storage.UploadAborter)
		if !ok {
			continue
		}
		for len(ks) > 0 {
			batch := ks[:min(len(ks), storage.MaxAbortKeys)]
			ks = ks[len(batch):]
			n, err := call(ctx, "abort uploads", func(ctx context.Context) (int, error) { return ab.AbortUploads(ctx, batch) })
			// A plugin still starting answers Unavailable: ask again while
			// the bound lasts.
			for storage.Code(err) == storage.Unavailable && sleepCtx(ctx, 250*time.Millisecond) {
				n, err = call(ctx, "abort uploads", func(ctx context.Context) (int, error) { return ab.AbortUploads(ctx, batch) })
			}
			switch {
			case storage.Code(err) == storage.Unimplemented:
				s.log.Debug("results: the provider cannot abort incomplete uploads (a plugin built with an older SDK)", "provider", id)
				ks = nil
			case err != nil:
				s.log.Warn("results: aborting the incomplete uploads of interrupted jobs", "provider", id, "keys", len(batch), "err", short(err))
			default:
				total += n
			}
		}
	}
	if total > 0 {
		s.log.Info("results: aborted the incomplete uploads this node's earlier process left", "uploads", total)
	}
	return total
}

// interruptedKeys lists, per provider, the keys of the offload jobs that
// earlier processes of this node held.
func (s *Service) interruptedKeys(ctx context.Context) (map[string][]string, error) {
	node, own := s.opts.NodeID+"/", s.owner+"/"
	rows, err := s.db.QueryContext(ctx, `SELECT provider, object_key FROM jobs
		WHERE kind = $1 AND substr(locked_by, 1, $2) = $3 AND substr(locked_by, 1, $4) <> $5 AND provider <> '' AND provider <> $6`,
		kindOffload, len(node), node, len(own), own, Local)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	keys := map[string][]string{}
	for rows.Next() {
		var p, k string
		if err := rows.Scan(&p, &k); err != nil {
			return nil, err
		}
		keys[p] = append(keys[p], k)
	}
	return keys, rows.Err()
}

// sleepCtx sleeps d; false if ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
