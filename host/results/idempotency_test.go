package results

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/internal/plugintest"
)

func keyEnv(t *testing.T, d dbmigrate.Dialect) (*env, *plugintest.Clock) {
	t.Helper()
	clk := plugintest.NewClock(time.Now())
	opts := testOptions()
	opts.Now = clk.Now
	return newEnv(t, d, false, false, opts), clk
}

// create finalizes a result under claim c, as the API does.
func (e *env) create(t *testing.T, c *Claim, data []byte) Result {
	t.Helper()
	st, err := e.svc.Stage(context.Background(), Upload{Kind: KindImages, Generator: "gemini", ContentType: "image/png"}, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Bind(context.Background(), st); err != nil {
		st.Discard()
		t.Fatalf("Bind: %v", err)
	}
	res, err := st.Commit(context.Background(), "")
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return res
}

func (e *env) mustClaim(t *testing.T, caller, key string) *Claim {
	t.Helper()
	c, prior, err := e.svc.ClaimKey(context.Background(), caller, key)
	if err != nil || c == nil || prior != nil {
		t.Fatalf("ClaimKey(%s, %s): claim %v, prior %v, %v; want a claim", caller, key, c, prior, err)
	}
	return c
}

func (e *env) wantPrior(t *testing.T, caller, key string, want Result) {
	t.Helper()
	c, prior, err := e.svc.ClaimKey(context.Background(), caller, key)
	if err != nil || c != nil || prior == nil || prior.ID != want.ID {
		t.Fatalf("ClaimKey(%s, %s): claim %v, prior %+v, %v; want the result %s", caller, key, c, prior, err, want.ID)
	}
}

func TestIdempotencyKeys(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		e, clk := keyEnv(t, d)
		ctx := context.Background()

		c := e.mustClaim(t, "service", "k1")
		if _, _, err := e.svc.ClaimKey(ctx, "service", "k1"); !errors.Is(err, ErrKeyInProgress) {
			t.Fatalf("a second claim while the first holds the key: %v", err)
		}
		other := e.mustClaim(t, "admin", "k1") // keys are per caller
		other.Abandon(ctx)
		res := e.create(t, c, payload(1))
		c.Complete(ctx)
		e.wantPrior(t, "service", "k1", res)
		if n := e.rowCount(t); n != 1 {
			t.Fatalf("%d results", n)
		}

		// A request that gave up before binding frees the key.
		c = e.mustClaim(t, "service", "k2")
		c.Abandon(ctx)
		c = e.mustClaim(t, "service", "k2")

		// A holder that died after recording its result (no Complete): once
		// its hold lapses, the key resolves to that result.
		res2 := e.create(t, c, payload(2))
		c.finish() // the process died: no more renewals, no Complete
		if _, _, err := e.svc.ClaimKey(ctx, "service", "k2"); !errors.Is(err, ErrKeyInProgress) {
			t.Fatalf("while the dead holder's hold lasts: %v", err)
		}
		clk.Advance(e.svc.opts.LeaseDuration + time.Second)
		e.wantPrior(t, "service", "k2", res2)

		// A holder that died before recording: the key starts afresh, and
		// the dead holder can no longer bind.
		dead := e.mustClaim(t, "service", "k3")
		dead.finish()
		clk.Advance(e.svc.opts.LeaseDuration + time.Second)
		fresh := e.mustClaim(t, "service", "k3")
		st, err := e.svc.Stage(ctx, Upload{Kind: KindImages, Generator: "gemini"}, bytes.NewReader(payload(3)))
		if err != nil {
			t.Fatal(err)
		}
		if err := dead.Bind(ctx, st); !errors.Is(err, ErrKeyInProgress) {
			t.Fatalf("Bind by a holder whose hold was taken: %v", err)
		}
		st.Discard()
		fresh.Abandon(ctx)

		// A bound result whose commit failed is not taken for done.
		c = e.mustClaim(t, "service", "k4")
		st, err = e.svc.Stage(ctx, Upload{Kind: KindImages, Generator: "gemini"}, bytes.NewReader(payload(4)))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Bind(ctx, st); err != nil {
			t.Fatal(err)
		}
		st.Discard()
		c.Abandon(ctx)
		e.mustClaim(t, "service", "k4").Abandon(ctx)

		// A deleted result.
		if err := e.svc.Delete(ctx, res.ID); err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.svc.ClaimKey(ctx, "service", "k1"); !errors.Is(err, ErrKeyResultGone) {
			t.Fatalf("the key of a deleted result: %v", err)
		}

		// Keys expire after IdempotencyTTL and are pruned.
		clk.Advance(IdempotencyTTL + time.Minute)
		e.mustClaim(t, "service", "k2").Abandon(ctx)
		if err := e.svc.pruneKeys(ctx); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := e.db.QueryRow(`SELECT COUNT(*) FROM idempotency_keys`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 { // k2, claimed again after expiry
			t.Fatalf("%d keys left after pruning, want 1", n)
		}
	})
}

func TestIdempotencyKeyConcurrentClaims(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		e, _ := keyEnv(t, d)
		const n = 8
		var wg sync.WaitGroup
		claims := make(chan *Claim, n)
		errs := make(chan error, n)
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, _, err := e.svc.ClaimKey(context.Background(), "service", "same")
				if err != nil {
					errs <- err
				} else {
					claims <- c
				}
			}()
		}
		wg.Wait()
		close(claims)
		close(errs)
		if len(claims) != 1 {
			t.Fatalf("%d concurrent claims of one key succeeded, want 1", len(claims))
		}
		for err := range errs {
			if !errors.Is(err, ErrKeyInProgress) {
				t.Errorf("a losing claim: %v, want ErrKeyInProgress", err)
			}
		}
		(<-claims).Abandon(context.Background())
	})
}

func TestIdempotencyKeyRenewedWhileHeld(t *testing.T) {
	opts := testOptions()
	opts.LeaseDuration = 300 * time.Millisecond
	e := newEnv(t, dbmigrate.SQLite, false, false, opts)
	c := e.mustClaim(t, "service", "long")
	time.Sleep(3 * opts.LeaseDuration) // a long upload
	if _, _, err := e.svc.ClaimKey(context.Background(), "service", "long"); !errors.Is(err, ErrKeyInProgress) {
		t.Fatalf("a duplicate during a long upload: %v, want ErrKeyInProgress", err)
	}
	c.Abandon(context.Background())
}

func TestCheckIdempotencyKey(t *testing.T) {
	for _, ok := range []string{"a", "550e8400-e29b-41d4-a716-446655440000", strings.Repeat("k", MaxIdempotencyKey), "with space ~!"} {
		if err := CheckIdempotencyKey(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", strings.Repeat("k", MaxIdempotencyKey+1), "tab\there", "ключ", "nul\x00"} {
		if err := CheckIdempotencyKey(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q accepted: %v", bad, err)
		}
	}
}
