package results

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"time"
)

// Idempotency keys: a caller that sends one with a new result gets, for a
// repeated key, the result the first request created instead of a second
// one. Keys are per caller, kept in the idempotency_keys table (host
// migration 000007) for IdempotencyTTL, and held by the request creating
// the result: a duplicate that arrives meanwhile gets ErrKeyInProgress.
//
// A holder renews its hold (locked_until) every third of
// Options.LeaseDuration while it reads the upload, binds the staged result's
// id to the key just before recording it (Claim.Bind), and marks the key
// done after (Claim.Complete). A hold that lapses (the holder crashed or
// gave up) lets the next request with the key resolve it: the bound result
// when it was recorded, otherwise a fresh start.

const (
	// MaxIdempotencyKey is the longest Idempotency-Key accepted, in bytes.
	MaxIdempotencyKey = 255
	// IdempotencyTTL is how long a key is remembered after its first use.
	IdempotencyTTL = 24 * time.Hour
	// pruneOneIn is how rarely (1 in n completed keys) a completion also
	// removes every expired key.
	pruneOneIn = 32
)

// ErrKeyInProgress means another request with the same Idempotency-Key is
// still creating its result: retry once it has finished.
var ErrKeyInProgress = errors.New("a request with this Idempotency-Key is still in progress")

// ErrKeyResultGone means the result an Idempotency-Key created was deleted
// since.
var ErrKeyResultGone = errors.New("the result created with this Idempotency-Key was deleted")

// CheckIdempotencyKey refuses a key that is empty, longer than
// MaxIdempotencyKey bytes or not printable ASCII (ErrInvalid).
func CheckIdempotencyKey(key string) error {
	if key == "" || len(key) > MaxIdempotencyKey {
		return fmt.Errorf("%w: the Idempotency-Key must be 1 to %d characters (a UUID is a good key)", ErrInvalid, MaxIdempotencyKey)
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return fmt.Errorf("%w: the Idempotency-Key must be printable ASCII (a UUID is a good key)", ErrInvalid)
		}
	}
	return nil
}

// DBTimeout is how long one database step of a request may wait
// (Options.DBTimeout): callers bound their own database calls with it.
func (s *Service) DBTimeout() time.Duration { return s.opts.DBTimeout }

// Claim is a request's hold on an Idempotency-Key while it creates the
// result. Complete or Abandon must end it (the first call wins). A nil
// *Claim (no key sent) does nothing.
type Claim struct {
	s           *Service
	caller, key string
	token       string
	stop        chan struct{}
	stopped     sync.WaitGroup
	once        sync.Once
}

// ClaimKey looks up caller's Idempotency-Key. When an earlier request with
// the key created a result, it returns that result (claim nil), or
// ErrKeyResultGone if it was deleted. When another request holds the key,
// it returns ErrKeyInProgress. Otherwise the key is this request's: it
// returns a Claim, renewed until Complete or Abandon.
func (s *Service) ClaimKey(ctx context.Context, caller, key string) (*Claim, *Result, error) {
	if err := CheckIdempotencyKey(key); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.DBTimeout)
	defer cancel()
	token, err := keyToken()
	if err != nil {
		return nil, nil, err
	}
	claimed, resultID, err := s.takeKey(ctx, caller, key, token)
	if err != nil {
		return nil, nil, fmt.Errorf("results: Idempotency-Key: %w", err)
	}
	if claimed {
		c := &Claim{s: s, caller: caller, key: key, token: token, stop: make(chan struct{})}
		c.stopped.Add(1)
		go c.renew()
		return c, nil, nil
	}
	res, err := s.Get(ctx, resultID)
	if errors.Is(err, ErrNotFound) {
		return nil, nil, fmt.Errorf("%w (result %s); send a new key to create another result", ErrKeyResultGone, resultID)
	}
	if err != nil {
		return nil, nil, err
	}
	return nil, &res, nil
}

// takeKey takes the key for token in one transaction. It returns
// claimed=true, or the id of the result the key created, or
// ErrKeyInProgress.
func (s *Service) takeKey(ctx context.Context, caller, key, token string) (claimed bool, resultID string, err error) {
	now := s.now()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, "", err
	}
	defer rollback(tx)
	if _, err := tx.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE caller = $1 AND idem_key = $2 AND expires_at < $3`,
		caller, key, dbTime(now)); err != nil {
		return false, "", err
	}
	lease := dbTime(now.Add(s.opts.LeaseDuration))
	res, err := tx.ExecContext(ctx, `INSERT INTO idempotency_keys (caller, idem_key, token, locked_until, expires_at, created_at)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (caller, idem_key) DO NOTHING`,
		caller, key, token, lease, dbTime(now.Add(IdempotencyTTL)), dbTime(now))
	if err != nil {
		return false, "", err
	}
	if n, err := res.RowsAffected(); err != nil {
		return false, "", err
	} else if n == 1 {
		return true, "", tx.Commit()
	}
	var old, bound string
	var done dbBool
	var held int
	if err := tx.QueryRowContext(ctx, `SELECT token, result_id, done, CASE WHEN locked_until > $3 THEN 1 ELSE 0 END
		FROM idempotency_keys WHERE caller = $1 AND idem_key = $2`, caller, key, dbTime(now)).Scan(&old, &bound, &done, &held); err != nil {
		return false, "", err
	}
	switch {
	case bool(done):
		return false, bound, tx.Commit()
	case held == 1:
		return false, "", ErrKeyInProgress
	}
	// The holder is gone. If it recorded its result, the key is done.
	if bound != "" {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM results WHERE id = $1`, bound).Scan(&n); err != nil {
			return false, "", err
		}
		if n > 0 {
			if _, err := tx.ExecContext(ctx, `UPDATE idempotency_keys SET done = $1, locked_until = NULL WHERE caller = $2 AND idem_key = $3 AND token = $4`,
				true, caller, key, old); err != nil {
				return false, "", err
			}
			return false, bound, tx.Commit()
		}
	}
	// Otherwise start afresh; a concurrent taker changed the token first.
	res, err = tx.ExecContext(ctx, `UPDATE idempotency_keys SET token = $1, result_id = '', locked_until = $2 WHERE caller = $3 AND idem_key = $4 AND token = $5 AND done = $6`,
		token, lease, caller, key, old, false)
	if err != nil {
		return false, "", err
	}
	if n, err := res.RowsAffected(); err != nil {
		return false, "", err
	} else if n == 0 {
		return false, "", ErrKeyInProgress
	}
	return true, "", tx.Commit()
}

// keyToken returns a random holder token.
func keyToken() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("results: random token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// renew extends the hold every third of the lease until the claim ends.
// A failed renewal is logged: the hold then lapses and Bind refuses.
func (c *Claim) renew() {
	defer c.stopped.Done()
	every := max(c.s.opts.LeaseDuration/3, time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), min(every, c.s.opts.DBTimeout))
		_, err := c.s.db.ExecContext(ctx, `UPDATE idempotency_keys SET locked_until = $1 WHERE caller = $2 AND idem_key = $3 AND token = $4 AND done = $5`,
			dbTime(c.s.now().Add(c.s.opts.LeaseDuration)), c.caller, c.key, c.token, false)
		cancel()
		if err != nil {
			c.s.log.Warn("results: renewing an Idempotency-Key hold", "err", short(err))
		}
	}
}

// finish stops the renewals; it reports false when the claim had already
// ended (Complete and Abandon then do nothing more).
func (c *Claim) finish() bool {
	first := false
	c.once.Do(func() {
		first = true
		close(c.stop)
		c.stopped.Wait()
	})
	return first
}

// Bind ties the staged result to the key just before it is recorded, so
// that the key resolves to it even if this request dies right after. It
// fails with ErrKeyInProgress when the hold lapsed and another request took
// the key: the staged result must then be discarded, not committed.
func (c *Claim) Bind(ctx context.Context, st *Staged) error {
	if c == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.s.opts.DBTimeout)
	defer cancel()
	res, err := c.s.db.ExecContext(ctx, `UPDATE idempotency_keys SET result_id = $1, locked_until = $2 WHERE caller = $3 AND idem_key = $4 AND token = $5 AND done = $6`,
		st.id, dbTime(c.s.now().Add(c.s.opts.LeaseDuration)), c.caller, c.key, c.token, false)
	if err != nil {
		return fmt.Errorf("results: binding the Idempotency-Key to %s: %w", st.id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("results: binding the Idempotency-Key to %s: %w", st.id, err)
	} else if n == 0 {
		return fmt.Errorf("%w (this request's hold lapsed and another one took the key)", ErrKeyInProgress)
	}
	return nil
}

// Complete marks the key done after its result was recorded. A failure is
// only logged: the bound result id still resolves the key. It does nothing
// on a nil or ended claim.
func (c *Claim) Complete(ctx context.Context) {
	if c == nil || !c.finish() {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.s.opts.DBTimeout)
	defer cancel()
	if _, err := c.s.db.ExecContext(ctx, `UPDATE idempotency_keys SET done = $1, locked_until = NULL WHERE caller = $2 AND idem_key = $3 AND token = $4`,
		true, c.caller, c.key, c.token); err != nil {
		c.s.log.Warn("results: marking an Idempotency-Key done; its next use resolves it", "err", short(err))
	}
	if mrand.IntN(pruneOneIn) == 0 {
		if err := c.s.pruneKeys(ctx); err != nil {
			c.s.log.Warn("results: pruning expired Idempotency-Keys", "err", short(err))
		}
	}
}

// pruneKeys removes every expired Idempotency-Key.
func (s *Service) pruneKeys(ctx context.Context) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE expires_at < $1`, dbTime(s.now()))
	return err
}

// Abandon releases the key after the request failed, so a retry with it
// can start again (or find the result, if it was recorded after all). A
// failure is only logged: the hold then lapses by itself. It does nothing
// on a nil claim or after Complete.
func (c *Claim) Abandon(ctx context.Context) {
	if c == nil || !c.finish() {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.s.opts.DBTimeout)
	defer cancel()
	if _, err := c.s.db.ExecContext(ctx, `UPDATE idempotency_keys SET locked_until = NULL WHERE caller = $1 AND idem_key = $2 AND token = $3 AND done = $4`,
		c.caller, c.key, c.token, false); err != nil {
		c.s.log.Warn("results: releasing an Idempotency-Key; it is free again after its hold lapses", "err", short(err))
	}
}
