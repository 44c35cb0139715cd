package results

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/shared/storage"
)

// legacyEnv is an env whose provider is a bucketStore behind a plugin
// that predates locations, holding one legacy result uploaded under
// bucket a and prefix "old/"; the plugin is then updated (it reports
// locations from now on).
func legacyEnv(t *testing.T, d dbmigrate.Dialect) (*env, *bucketStore, Result) {
	t.Helper()
	st := newBucketStore(bucketA, "old/", baseA)
	st.locations = false
	e := newBucketEnv(t, d, testOptions(), oldPlugin{st})
	res := e.finalize(t, payload(1))
	if res.Bucket != "" || res.ObjectKey != res.Path || res.URL != baseA+"/old/"+res.Path || !st.has(bucketA, "old/"+res.Path) {
		t.Fatalf("setup: %+v", res)
	}
	return e, st, res
}

// updatePlugin makes st report locations and routes to it directly.
func updatePlugin(e *env, st *bucketStore) {
	st.mu.Lock()
	st.locations = true
	st.mu.Unlock()
	e.router.install(remoteID, st)
	e.router.setActive(&Target{ID: remoteID, Provider: st})
}

// TestAdoptionUnderChangedSettingsKeepsLegacyRows: a legacy result
// uploaded under an earlier prefix or bucket is not adopted with the
// settings of the moment (its URL would move to nothing and its delete
// hit the wrong key); it stays legacy, is counted, and its delete is
// parked naming the key, the cause and the fix instead of dropping the
// row while the object stays. Restoring the settings lets the retry
// delete it.
func TestAdoptionUnderChangedSettingsKeepsLegacyRows(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		newBucket, newPrefix string
	}{
		{"prefix changed", bucketA, "new/"},
		{"bucket changed", bucketB, "old/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
				ctx := context.Background()
				e, st, res := legacyEnv(t, d)
				st.set(tc.newBucket, tc.newPrefix, baseA)
				updatePlugin(e, st)
				pl, _ := st.placement()
				a, err := e.svc.AdoptLegacy(ctx, remoteID, pl)
				if err != nil || a.Adopted != 0 || a.Unverified != 1 {
					t.Fatalf("AdoptLegacy = %+v, %v; want 0 adopted, 1 unverified", a, err)
				}
				if got := e.get(t, res.ID); got.URL != res.URL || got.Bucket != "" || got.ObjectKey != res.Path {
					t.Fatalf("a result that does not verify was changed: %+v", got)
				}
				worker(t, e.svc)
				if err := e.svc.Delete(ctx, res.ID); err != nil {
					t.Fatal(err)
				}
				j, ok := e.job(t, res.ID, kindDelete)
				if !ok || j.state != jobFailed || j.lastCode != storage.FailedPrecondition.String() {
					t.Fatalf("the delete of an unverified legacy result: %+v, %v", j, ok)
				}
				for _, want := range []string{res.Path, "uploaded before the host recorded locations", "key prefix or bucket", "retry"} {
					if !strings.Contains(j.lastError, want) {
						t.Fatalf("last_error %q does not say %q", j.lastError, want)
					}
				}
				if !st.has(bucketA, "old/"+res.Path) || e.rowCount(t) != 1 {
					t.Fatalf("after the parked delete: object %v, rows %d", st.keys(bucketA), e.rowCount(t))
				}
				// The admin restores the settings it was uploaded with and retries.
				st.set(bucketA, "old/", baseA)
				if n, err := e.svc.RetryFailed(ctx, remoteID); err != nil || n != 1 {
					t.Fatalf("RetryFailed = %d, %v", n, err)
				}
				waitFor(t, "the retried delete", func() bool { return e.pending(t) == 0 })
				if st.has(bucketA, "old/"+res.Path) || e.rowCount(t) != 0 {
					t.Fatalf("after the retry: object %v, rows %d", st.keys(bucketA), e.rowCount(t))
				}
			})
		})
	}
}

// TestAdoptionVerifiesEachRow: a legacy row is adopted only when the
// provider reports locations, an object of the row's size is at its
// bucket and prefixed key, and its recorded URL ends with that key.
func TestAdoptionVerifiesEachRow(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		ctx := context.Background()
		e, st, res := legacyEnv(t, d)
		updatePlugin(e, st)
		pl, _ := st.placement()

		noLoc := pl
		noLoc.Locations = false
		if a, err := e.svc.AdoptLegacy(ctx, remoteID, noLoc); err != nil || a.Adopted != 0 {
			t.Fatalf("AdoptLegacy without locations = %+v, %v", a, err)
		}
		// A recorded URL of another key.
		if _, err := e.db.Exec(`UPDATE results SET url = $1 WHERE id = $2`, baseA+"/elsewhere/"+res.Path, res.ID); err != nil {
			t.Fatal(err)
		}
		if a, err := e.svc.AdoptLegacy(ctx, remoteID, pl); err != nil || a.Adopted != 0 || a.Unverified != 1 {
			t.Fatalf("AdoptLegacy with a URL of another key = %+v, %v", a, err)
		}
		if _, err := e.db.Exec(`UPDATE results SET url = $1 WHERE id = $2`, res.URL, res.ID); err != nil {
			t.Fatal(err)
		}
		// An object of another size at the key.
		st.mu.Lock()
		st.buckets[bucketA]["old/"+res.Path] = []byte("short")
		st.mu.Unlock()
		if a, err := e.svc.AdoptLegacy(ctx, remoteID, pl); err != nil || a.Adopted != 0 || a.Unverified != 1 {
			t.Fatalf("AdoptLegacy with an object of another size = %+v, %v", a, err)
		}
		if got := e.get(t, res.ID); got.Bucket != "" || got.ObjectKey != res.Path {
			t.Fatalf("an unverified row was adopted: %+v", got)
		}
		st.mu.Lock()
		st.buckets[bucketA]["old/"+res.Path] = payload(1)
		st.mu.Unlock()
		if a, err := e.svc.AdoptLegacy(ctx, remoteID, pl); err != nil || a.Adopted != 1 || a.Unverified != 0 {
			t.Fatalf("AdoptLegacy of a verified row = %+v, %v", a, err)
		}
		if got := e.get(t, res.ID); got.Bucket != bucketA || got.ObjectKey != "old/"+res.Path || got.URL != res.URL {
			t.Fatalf("adopted row %+v", got)
		}
	})
}

// TestLegacyDeleteOfAnotherSizeParks: a legacy result whose relative key
// now holds an object of another size is not deleted there; the job is
// parked saying so.
func TestLegacyDeleteOfAnotherSizeParks(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		ctx := context.Background()
		e, st, res := legacyEnv(t, d)
		st.set(bucketA, "new/", baseA)
		st.mu.Lock()
		st.buckets[bucketA]["new/"+res.Path] = []byte("another object")
		st.mu.Unlock()
		if err := e.svc.Delete(ctx, res.ID); err != nil {
			t.Fatal(err)
		}
		j, ok := e.job(t, res.ID, kindDelete)
		if !ok || j.state != jobFailed || !strings.Contains(j.lastError, "at key "+res.Path) || !strings.Contains(j.lastError, "is 14 bytes, not the result's 19") {
			t.Fatalf("the delete job: %+v, %v", j, ok)
		}
		if !st.has(bucketA, "new/"+res.Path) || !st.has(bucketA, "old/"+res.Path) || e.rowCount(t) != 1 {
			t.Fatalf("after the parked delete: %v, rows %d", st.keys(bucketA), e.rowCount(t))
		}
	})
}

// TestMovedPublicURLIsRecorded: moving the public URL rewrites the
// recorded URLs of the bucket's live results at configure, so they keep
// the new URL while the node has no placement (plugin failed, not
// configured here yet, uninstalled); results of another bucket keep theirs.
func TestMovedPublicURLIsRecorded(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		ctx := context.Background()
		st := newBucketStore(bucketA, "m/", baseA)
		e := newBucketEnv(t, d, testOptions(), st)
		res := e.finalize(t, payload(1))
		st.set(bucketB, "m/", baseA)
		other := e.finalize(t, payload(2))
		st.set(bucketA, "m/", baseB+"/")
		pl, _ := st.placement()
		if err := e.svc.Configured(ctx, remoteID, pl); err != nil {
			t.Fatal(err)
		}
		want := baseB + "/m/" + res.Path
		e.router.uninstall(remoteID)
		if got := e.get(t, res.ID); got.URL != want {
			t.Fatalf("without a placement: url %q, want %q", got.URL, want)
		}
		if got := e.get(t, other.ID); got.URL != other.URL {
			t.Fatalf("a result of another bucket: url %q, want %q", got.URL, other.URL)
		}
	})
}

// TestParkedUploadDroppedWhenDefaultLeaves: an upload parked for a
// provider is dropped when Default Storage moves away from it or it is
// uninstalled; its result says it is kept local and why, and JobStats no
// longer counts it.
func TestParkedUploadDroppedWhenDefaultLeaves(t *testing.T) {
	for _, tc := range []struct {
		name string
		drop func(e *env)
		want string
	}{
		{"default changed", func(e *env) {
			e.router.setActive(nil)
			if err := e.svc.DefaultChanged(context.Background(), remoteID, Local); err != nil {
				t.Fatal(err)
			}
		}, "kept local: Default Storage was changed from " + remoteID + " to local"},
		{"uninstalled", func(e *env) {
			e.router.setActive(nil)
			e.svc.Drain(context.Background(), remoteID, time.Second)()
		}, "kept local: " + remoteID + " was uninstalled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
				st := newBucketStore(bucketA, "m/", baseA)
				st.setPutErr(func(string) error { return storage.Errorf(storage.PermissionDenied, "access denied") })
				e := newBucketEnv(t, d, testOptions(), st)
				worker(t, e.svc)
				res := e.finalize(t, payload(1))
				if j, ok := e.job(t, res.ID, kindOffload); !ok || j.state != jobFailed || e.stats(t).Failed != 1 {
					t.Fatalf("setup: %+v, %v", j, ok)
				}
				tc.drop(e)
				if j, ok := e.job(t, res.ID, kindOffload); ok {
					t.Fatalf("the parked upload stays: %+v", j)
				}
				if got := e.get(t, res.ID); got.Storage != Local || got.LocalReason != tc.want || got.Upload != nil {
					t.Fatalf("result %+v, want local_reason %q", got, tc.want)
				}
				if ps := e.stats(t); ps.Failed != 0 || ps.Pending != 0 {
					t.Fatalf("JobStats %+v", ps)
				}
			})
		})
	}
}

// TestDeleteWaitsForAProviderInstalledOnAnotherNode: a delete whose
// provider is installed (the shared plugins table has it) but not on this
// node yet is retried, not parked; it runs once the provider is here.
func TestDeleteWaitsForAProviderInstalledOnAnotherNode(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		ctx := context.Background()
		st := newBucketStore(bucketA, "m/", baseA)
		e := newBucketEnv(t, d, testOptions(), st)
		res := e.finalize(t, payload(1))
		if _, err := e.db.Exec(`INSERT INTO plugins (id, version, dir, binary_path, sha256) VALUES ($1, '1.0.0', 'd', 'b', $2)`,
			remoteID, strings.Repeat("0", 64)); err != nil {
			t.Fatal(err)
		}
		e.router.uninstall(remoteID)
		if err := e.svc.Delete(ctx, res.ID); err != nil {
			t.Fatal(err)
		}
		j, ok := e.job(t, res.ID, kindDelete)
		if !ok || j.state != jobQueued || j.attempts != 1 || !strings.Contains(j.lastError, "not installed on this node yet") {
			t.Fatalf("the delete job: %+v, %v", j, ok)
		}
		e.router.install(remoteID, st)
		worker(t, e.svc)
		waitFor(t, "the delete", func() bool { return e.pending(t) == 0 })
		if st.has(bucketA, "m/"+res.Path) || e.rowCount(t) != 0 {
			t.Fatalf("after the delete: %v, rows %d", st.keys(bucketA), e.rowCount(t))
		}
	})
}

// withoutLocator is a provider that does not implement storage.Locator,
// whose placement says locs.
type withoutLocator struct {
	storage.Provider
	locs bool
}

func (w withoutLocator) placement() (Placement, bool) {
	pl, ok := w.Provider.(*bucketStore).placement()
	pl.Locations = w.locs
	return pl, ok
}

// TestBucketRecordedOnlyWithLocations: a provider whose Put reports a
// bucket and stored key is recorded with them only when its placement
// says it has locations and it can address them; otherwise the result is
// legacy (relative key) and its delete works.
func TestBucketRecordedOnlyWithLocations(t *testing.T) {
	for _, locs := range []bool{false, true} {
		forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
			ctx := context.Background()
			st := newBucketStore(bucketA, "m/", baseA)
			e := newBucketEnv(t, d, testOptions(), withoutLocator{st, locs})
			res := e.finalize(t, payload(1))
			if res.Storage != remoteID || res.Bucket != "" || res.ObjectKey != res.Path {
				t.Fatalf("locations %v: recorded %+v", locs, res)
			}
			if err := e.svc.Delete(ctx, res.ID); err != nil {
				t.Fatal(err)
			}
			if st.has(bucketA, "m/"+res.Path) || e.pending(t) != 0 || e.rowCount(t) != 0 {
				t.Fatalf("after the delete: %v, pending %d, rows %d", st.keys(bucketA), e.pending(t), e.rowCount(t))
			}
		})
	}
}
