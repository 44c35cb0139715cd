package providers_test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/pluginrt"
	"github.com/magicads/r2storage/host/providers"
	"github.com/magicads/r2storage/host/results"
	"github.com/magicads/r2storage/internal/plugintest"
	"github.com/magicads/r2storage/internal/testdb"
	"github.com/magicads/r2storage/shared/storage"
)

const settingsPage = "/app/admin/general/plugins/cloudflare-r2"

// row returns the troubleshooting row whose cause is cause.
func row(t *testing.T, cause string) providers.Trouble {
	t.Helper()
	for _, r := range providers.Troubleshooting() {
		if r.Cause == cause {
			return r
		}
	}
	t.Fatalf("no troubleshooting row with cause %q", cause)
	return providers.Trouble{}
}

// The rows the tests expect, by cause.
const (
	causeNotOption     = "Provider not enabled, or credentials incomplete"
	causeWrongKeys     = "Wrong keys, bucket name or account id"
	causeNoPublicURL   = "Public / CDN URL missing or bucket not public"
	causeOutage        = "The bucket or its endpoint cannot be reached: a network problem or a provider outage"
	causeFailedJobs    = "Uploads or deletes were stopped by a permanent error"
	causeBucketChanged = "The bucket was changed while results were left in the old one"
	causeRefused       = "Settings the plugin cannot use, such as a malformed endpoint or public URL"
	causeNotRunning    = "The plugin is starting, restarting after a crash, or being updated"
	causeCrashed       = "The plugin crashed 3 times within 10 minutes, or its binary is missing or does not match the checksum recorded at install"
	causeNotInstalled  = "The plugin was installed on another node sharing the database, or removed from this one"
	causeOldFailures   = "Earlier uploads or deletes were stopped by a permanent error; the latest attempt did not fail"
	causeStatsUnread   = "The job counts cannot be read: the database did not answer, or this host has no results service"
)

// option returns the view's option id, failing the test without one.
func option(t *testing.T, v providers.StorageView, id string) providers.OptionStatus {
	t.Helper()
	for _, o := range v.Options {
		if o.ID == id {
			return o
		}
	}
	t.Fatalf("%s is not an option: %+v (unavailable %+v)", id, v.Options, v.Unavailable)
	return providers.OptionStatus{}
}

// only returns the one unavailable provider, failing the test otherwise.
func only(t *testing.T, v providers.StorageView) providers.Unavailable {
	t.Helper()
	if len(v.Unavailable) != 1 || len(v.Options) != 1 {
		t.Fatalf("want only local as option and one unavailable provider, got options %+v, unavailable %+v", v.Options, v.Unavailable)
	}
	return v.Unavailable[0]
}

// wantProblem checks the view's problem against row r.
func wantProblem(t *testing.T, v providers.StorageView, status providers.Status, r providers.Trouble, message, fixURL string) {
	t.Helper()
	want := providers.Problem{Provider: pluginID, Name: "Cloudflare R2 Storage", Status: status, Cause: r.Cause, Fix: r.Fix, Message: message, FixURL: fixURL}
	if v.Problem == nil || *v.Problem != want {
		t.Fatalf("problem %+v, want %+v", v.Problem, want)
	}
}

// TestUnavailableProvidersSayWhy: an installed provider that is no Default
// Storage option is listed with the reason, the fix and its config page;
// while it is the Default Storage, the problem names the row that fits.
func TestUnavailableProvidersSayWhy(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newEnv(t, d, pluginrt.Options{})
			e.install()
			ctx := context.Background()
			notOption := row(t, causeNotOption)

			v := e.m.StorageStatus(ctx, nil, nil)
			want := providers.Unavailable{ID: pluginID, Name: "Cloudflare R2 Storage", Reason: "not enabled", Fix: notOption.Fix, FixURL: settingsPage}
			if u := only(t, v); u != want || v.Default != providers.Local || v.Problem != nil {
				t.Fatalf("nothing saved: %+v, default %s, problem %+v; want %+v", u, v.Default, v.Problem, want)
			}
			if o := option(t, v, providers.Local); o.Status != providers.StatusOK || o.Name != providers.LocalName {
				t.Fatalf("local: %+v", o)
			}

			e.save(map[string]any{"enabled": true, "bucket": "results-bucket"})
			want.Reason = "settings incomplete: fill in Access Key ID and Secret Access Key, and Account ID or Custom Endpoint"
			if u := only(t, e.m.StorageStatus(ctx, nil, nil)); u != want {
				t.Fatalf("incomplete: %+v, want %+v", u, want)
			}

			e.save(with(complete(), "bucket", refusedBucket))
			u := only(t, e.m.StorageStatus(ctx, nil, nil))
			if !strings.HasPrefix(u.Reason, "settings refused: ") || !strings.Contains(u.Reason, "fake: this bucket is refused") || u.Fix != row(t, causeRefused).Fix || u.FixURL != settingsPage {
				t.Fatalf("refused settings: %+v", u)
			}

			e.save(complete())
			if err := e.m.SetDefault(ctx, pluginID); err != nil {
				t.Fatal(err)
			}
			v = e.m.StorageStatus(ctx, nil, nil)
			if o := option(t, v, pluginID); o.Status != providers.StatusOK || o.Reason != "" || len(v.Unavailable) != 0 || v.Problem != nil || v.Default != pluginID {
				t.Fatalf("working default: %+v, unavailable %+v, problem %+v", o, v.Unavailable, v.Problem)
			}

			// The Default Storage stops being an option.
			e.save(with(complete(), "enabled", false, "secret_access_key", ""))
			v = e.m.StorageStatus(ctx, nil, nil)
			if u := only(t, v); u.Reason != "not enabled" {
				t.Fatalf("disabled: %+v", u)
			}
			wantProblem(t, v, providers.StatusFailing, notOption, "not enabled", settingsPage)

			e.save(complete())
			if err := e.rt.Stop(ctx, pluginID); err != nil {
				t.Fatal(err)
			}
			v = e.m.StorageStatus(ctx, nil, nil)
			u = only(t, v)
			if u.Reason != "plugin not running: it is stopped" || u.FixURL != providers.PluginsPage || u.Fix != row(t, causeNotRunning).Fix {
				t.Fatalf("stopped: %+v", u)
			}
			wantProblem(t, v, providers.StatusDegraded, row(t, causeNotRunning), u.Reason, providers.PluginsPage)
		})
	}
}

// TestOptionStatusFollowsItsJobs: an option's status, reason and counts
// follow the results service's job stats, and the Default Storage's problem
// names the troubleshooting row that fits.
func TestOptionStatusFollowsItsJobs(t *testing.T) {
	at := time.Date(2026, 11, 30, 7, 0, 0, 0, time.UTC)
	cases := []struct {
		name   string
		jobs   results.ProviderJobs
		status providers.Status
		cause  string
		reason string
	}{
		{"pending, no error", results.ProviderJobs{Pending: 2, LastSuccessAt: at}, providers.StatusOK, "", ""},
		{"permission denied", results.ProviderJobs{Failed: 2, LastError: "permission denied on bucket", LastCode: storage.PermissionDenied, LastErrorAt: at},
			providers.StatusFailing, causeWrongKeys, "permission denied on bucket"},
		// The results service parks a delete whose recorded bucket is no
		// longer configured with this phrase (see bucketChangedPhrases).
		{"bucket changed (parked delete)", results.ProviderJobs{Failed: 1, LastError: "delete of result r1: the object m/a.png is in bucket r2:a/old, which cloudflare-r2 is no longer configured for (now r2:a/new); delete it there by hand, or configure that bucket again and retry",
			LastCode: storage.FailedPrecondition, LastErrorAt: at},
			providers.StatusFailing, causeBucketChanged, "delete of result r1: the object m/a.png is in bucket r2:a/old, which cloudflare-r2 is no longer configured for (now r2:a/new); delete it there by hand, or configure that bucket again and retry"},
		// The R2 plugin's own refusal of a Location in another bucket.
		{"bucket changed (plugin)", results.ProviderJobs{Failed: 1, LastError: "get m/a.png: the object is in bucket r2:a/old, but cloudflare-r2 is configured for bucket r2:a/new; nothing was done (configure bucket r2:a/old again to reach it)",
			LastCode: storage.FailedPrecondition, LastErrorAt: at},
			providers.StatusFailing, causeBucketChanged, "get m/a.png: the object is in bucket r2:a/old, but cloudflare-r2 is configured for bucket r2:a/new; nothing was done (configure bucket r2:a/old again to reach it)"},
		// R2's FailedPrecondition for a bucket name that does not exist,
		// and for a plugin that is not configured: the keys/bucket row.
		{"no such bucket", results.ProviderJobs{Failed: 3, LastError: "put images/gemini/x.png: bucket not found (NoSuchBucket)", LastCode: storage.FailedPrecondition, LastErrorAt: at},
			providers.StatusFailing, causeWrongKeys, "put images/gemini/x.png: bucket not found (NoSuchBucket)"},
		{"not configured", results.ProviderJobs{Failed: 1, LastError: "put images/gemini/x.png: cloudflare-r2 is not configured: save complete settings first", LastCode: storage.FailedPrecondition, LastErrorAt: at},
			providers.StatusFailing, causeWrongKeys, "put images/gemini/x.png: cloudflare-r2 is not configured: save complete settings first"},
		{"invalid settings", results.ProviderJobs{Failed: 1, LastError: "invalid settings", LastCode: storage.InvalidSettings, LastErrorAt: at},
			providers.StatusFailing, causeRefused, "invalid settings"},
		{"other permanent error", results.ProviderJobs{Failed: 1, LastError: "invalid key", LastCode: storage.InvalidArgument, LastErrorAt: at},
			providers.StatusFailing, causeFailedJobs, "invalid key"},
		{"parked jobs, latest attempt fine", results.ProviderJobs{Failed: 3, LastSuccessAt: at},
			providers.StatusDegraded, causeOldFailures, "3 jobs failed and wait for a retry; the latest attempt succeeded"},
		{"one parked job, no attempt since", results.ProviderJobs{Failed: 1},
			providers.StatusDegraded, causeOldFailures, "1 job failed and waits for a retry"},
		{"permanent error before a success", results.ProviderJobs{Failed: 1, LastError: "permission denied on bucket", LastCode: storage.PermissionDenied,
			LastErrorAt: at.Add(-time.Hour), LastSuccessAt: at},
			providers.StatusDegraded, causeOldFailures, "1 job failed and waits for a retry; the latest attempt succeeded"},
		{"outage", results.ProviderJobs{Pending: 4, LastError: "endpoint unreachable", LastCode: storage.Unavailable, LastErrorAt: at},
			providers.StatusDegraded, causeOutage, "endpoint unreachable"},
		{"outage, jobs parked earlier", results.ProviderJobs{Pending: 4, Failed: 1, LastError: "endpoint unreachable", LastCode: storage.Unavailable, LastErrorAt: at},
			providers.StatusDegraded, causeOutage, "endpoint unreachable; 1 job failed earlier and waits for a retry"},
		{"cut", results.ProviderJobs{Pending: 1, LastError: "upload cut", LastCode: storage.Canceled, LastErrorAt: at},
			providers.StatusDegraded, causeOutage, "upload cut"},
	}
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newEnv(t, d, pluginrt.Options{})
			e.install()
			ctx := context.Background()
			e.save(complete())
			if err := e.m.SetDefault(ctx, pluginID); err != nil {
				t.Fatal(err)
			}
			for _, c := range cases {
				v := e.m.StorageStatus(ctx, map[string]results.ProviderJobs{pluginID: c.jobs, providers.Local: {Pending: 1}}, nil)
				o := option(t, v, pluginID)
				if o.Status != c.status || o.Reason != c.reason || o.Pending == nil || *o.Pending != c.jobs.Pending || o.Failed == nil || *o.Failed != c.jobs.Failed ||
					o.LastError != c.jobs.LastError || !o.LastErrorAt.Equal(c.jobs.LastErrorAt) || !o.LastSuccessAt.Equal(c.jobs.LastSuccessAt) {
					t.Errorf("%s: option %+v", c.name, o)
				}
				if c.cause == "" {
					if v.Problem != nil {
						t.Errorf("%s: problem %+v", c.name, v.Problem)
					}
				} else {
					r := row(t, c.cause)
					fixURL := settingsPage
					if c.cause == causeOldFailures {
						fixURL = providers.StoragePage // where failed jobs are retried
					}
					want := providers.Problem{Provider: pluginID, Name: "Cloudflare R2 Storage", Status: c.status, Cause: r.Cause, Fix: r.Fix, Message: c.reason, FixURL: fixURL}
					if v.Problem == nil || *v.Problem != want {
						t.Errorf("%s: problem %+v, want %+v", c.name, v.Problem, want)
					}
				}
				if l := option(t, v, providers.Local); l.Status != providers.StatusOK || l.Pending == nil || *l.Pending != 1 {
					t.Errorf("%s: local %+v", c.name, l)
				}
			}

			// Stats that cannot be read: counts and status unknown, the
			// reason names the cause; the page still answers.
			v := e.m.StorageStatus(ctx, nil, errors.New("database is locked"))
			wantReason := "job counts cannot be read, so whether results reach it is not known: database is locked"
			for _, id := range []string{providers.Local, pluginID} {
				if o := option(t, v, id); o.Status != providers.StatusUnknown || o.Reason != wantReason || o.Pending != nil || o.Failed != nil {
					t.Errorf("unknown stats: %s: %+v", id, o)
				}
			}
			if v.StatsError != "job counts cannot be read: database is locked" {
				t.Errorf("stats error %q", v.StatsError)
			}
			r := row(t, causeStatsUnread)
			want := providers.Problem{Provider: pluginID, Name: "Cloudflare R2 Storage", Status: providers.StatusUnknown, Cause: r.Cause, Fix: r.Fix, Message: wantReason, FixURL: providers.StoragePage}
			if v.Problem == nil || *v.Problem != want {
				t.Errorf("unknown stats: problem %+v, want %+v", v.Problem, want)
			}

			// No public URL: degraded, the broken-images row.
			e.save(with(complete(), "public_url", nil))
			v = e.m.StorageStatus(ctx, nil, nil)
			o := option(t, v, pluginID)
			if o.Status != providers.StatusDegraded || !strings.HasPrefix(o.Reason, "no Public / CDN URL is set") {
				t.Fatalf("no public URL: %+v", o)
			}
			wantProblem(t, v, providers.StatusDegraded, row(t, causeNoPublicURL), o.Reason, settingsPage)
		})
	}
}

// TestDefaultStorageProblemWhenThePluginFailedOrIsMissing: a crash-looping
// plugin and a Default Storage this node lacks point to the plugins page.
func TestDefaultStorageProblemWhenThePluginFailedOrIsMissing(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newEnv(t, d, pluginrt.Options{CrashLimit: 1, BackoffMin: 10 * time.Millisecond})
			e.install()
			ctx := context.Background()
			e.save(complete())
			if err := e.m.SetDefault(ctx, pluginID); err != nil {
				t.Fatal(err)
			}
			e.save(with(complete(), "bucket", crashBucket))
			deadline := time.Now().Add(15 * time.Second)
			for {
				if st, _ := e.rt.Status(pluginID); st.State == pluginrt.StateFailed {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the plugin did not fail after crashing")
				}
				time.Sleep(20 * time.Millisecond)
			}
			v := e.m.StorageStatus(ctx, nil, nil)
			u := only(t, v)
			if !strings.HasPrefix(u.Reason, "plugin failed: crashed 1 times") || u.FixURL != providers.PluginsPage || u.Fix != row(t, causeCrashed).Fix {
				t.Fatalf("failed plugin: %+v", u)
			}
			wantProblem(t, v, providers.StatusFailing, row(t, causeCrashed), u.Reason, providers.PluginsPage)

			if err := e.store.Save(ctx, "storage.default", "host", map[string]any{"default": "other-provider"}); err != nil {
				t.Fatal(err)
			}
			v = e.m.StorageStatus(ctx, nil, nil)
			r := row(t, causeNotInstalled)
			want := providers.Problem{Provider: "other-provider", Name: "other-provider", Status: providers.StatusFailing, Cause: r.Cause, Fix: r.Fix,
				Message: "the plugin is not installed on this host node", FixURL: providers.PluginsPage}
			if v.Problem == nil || *v.Problem != want {
				t.Fatalf("default not installed: %+v, want %+v", v.Problem, want)
			}
		})
	}
}

// TestReadmeTroubleshootingTableIsTheConsoles: README.md's Troubleshooting
// section holds two tables: the first lists exactly the rows of
// providers.Troubleshooting, word for word and in order, so the console and
// the README never disagree; the second lists, in order, the rows worded
// for providers other than Cloudflare R2 as the console words them, with
// "{provider}" for the provider's name.
func TestReadmeTroubleshootingTableIsTheConsoles(t *testing.T) {
	f, err := os.Open(filepath.Join(plugintest.ModuleRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var tables [][][]string
	in, inTable := false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			in = line == "## Troubleshooting"
			continue
		case !in:
			continue
		case !strings.HasPrefix(line, "|"):
			inTable = false
			continue
		case !inTable:
			if line != "| symptom | likely cause | fix |" {
				t.Fatalf("a Troubleshooting table's header is %q", line)
			}
			inTable = true
			tables = append(tables, nil)
			continue
		case strings.HasPrefix(line, "|---"):
			continue
		}
		cells := strings.Split(strings.TrimSuffix(strings.TrimPrefix(line, "| "), " |"), " | ")
		tables[len(tables)-1] = append(tables[len(tables)-1], cells)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(tables) != 2 {
		t.Fatalf("README's Troubleshooting section has %d tables, want 2 (R2's rows, then other providers' wording)", len(tables))
	}
	var own, other [][]string
	for _, r := range providers.Troubleshooting() {
		own = append(own, []string{r.Symptom, r.Cause, r.Fix})
		if r.OtherCause != "" || r.OtherFix != "" || r.OtherSymptom != "" {
			cause, fix := r.For("another-provider", "{provider}")
			other = append(other, []string{r.SymptomFor("another-provider", "{provider}"), cause, fix})
		}
	}
	if len(other) == 0 {
		t.Fatal("no row has an other-provider wording")
	}
	for n, c := range []struct {
		readme, goTable [][]string
	}{{tables[0], own}, {tables[1], other}} {
		if len(c.readme) != len(c.goTable) {
			t.Errorf("README's Troubleshooting table %d has %d rows, the Go table %d", n+1, len(c.readme), len(c.goTable))
		}
		for i := range min(len(c.readme), len(c.goTable)) {
			if strings.Join(c.readme[i], "\x00") != strings.Join(c.goTable[i], "\x00") {
				t.Errorf("table %d, row %d:\nREADME: %q\nGo:     %q", n+1, i+1, c.readme[i], c.goTable[i])
			}
		}
	}
}

// TestLocalStatusFollowsItsJobs: local is an option whose own jobs (local
// deletes) count as a provider's do, as the retry route takes local.
func TestLocalStatusFollowsItsJobs(t *testing.T) {
	e := newEnv(t, testdb.Dialects()[0], pluginrt.Options{})
	ctx := context.Background()
	at := time.Date(2026, 11, 30, 7, 0, 0, 0, time.UTC)
	cases := []struct {
		jobs   results.ProviderJobs
		status providers.Status
		reason string
	}{
		{results.ProviderJobs{Pending: 3}, providers.StatusOK, ""},
		{results.ProviderJobs{Failed: 2}, providers.StatusDegraded, "2 jobs failed and wait for a retry"},
		{results.ProviderJobs{Failed: 1, LastError: "delete of result r1: permission denied", LastCode: storage.PermissionDenied, LastErrorAt: at},
			providers.StatusFailing, "delete of result r1: permission denied"},
	}
	for _, c := range cases {
		v := e.m.StorageStatus(ctx, map[string]results.ProviderJobs{providers.Local: c.jobs}, nil)
		if o := option(t, v, providers.Local); o.Status != c.status || o.Reason != c.reason {
			t.Errorf("local with %+v: %+v, want %s %q", c.jobs, o, c.status, c.reason)
		}
	}
}

// TestOtherProvidersGetGenericRows: rows worded for Cloudflare R2 are
// worded for any other provider with its name instead, as README's second
// troubleshooting table shows them.
func TestOtherProvidersGetGenericRows(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newEnv(t, d, pluginrt.Options{})
			e.installOther()
			ctx := context.Background()
			notOption := row(t, causeNotOption)
			v := e.m.StorageStatus(ctx, nil, nil)
			want := providers.Unavailable{ID: otherID, Name: otherName, Reason: "not enabled",
				Fix:    "Enable Other Store and fill in every setting its config page marks as required.",
				FixURL: "/app/admin/general/plugins/" + otherID}
			if u := only(t, v); u != want {
				t.Fatalf("got %+v, want %+v", u, want)
			}
			if notOption.Fix == want.Fix || !strings.Contains(notOption.Fix, "account id") {
				t.Fatalf("R2's row %q", notOption.Fix)
			}
			if _, err := e.m.SaveSettings(ctx, otherID, complete()); err != nil {
				t.Fatal(err)
			}
			if err := e.m.SetDefault(ctx, otherID); err != nil {
				t.Fatal(err)
			}
			v = e.m.StorageStatus(ctx, map[string]results.ProviderJobs{otherID: {Failed: 1, LastError: "permission denied", LastCode: storage.PermissionDenied, LastErrorAt: time.Now()}}, nil)
			wantP := providers.Problem{Provider: otherID, Name: otherName, Status: providers.StatusFailing,
				Cause: "Wrong credentials or bucket name", Fix: "Re-check the credentials and bucket set for Other Store; confirm they may read and write objects in the bucket.",
				Message: "permission denied", FixURL: "/app/admin/general/plugins/" + otherID}
			if v.Problem == nil || *v.Problem != wantP {
				t.Fatalf("problem %+v, want %+v", v.Problem, wantP)
			}
		})
	}
}
