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
	causeCrashed       = "The plugin crashed 3 times within 10 minutes"
	causeNotInstalled  = "The plugin was installed on another node sharing the database, or removed from this one"
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
			want.Reason = "credentials incomplete: Access Key ID, Secret Access Key and Account ID (or Custom Endpoint) are empty"
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
		{"bucket changed", results.ProviderJobs{Failed: 1, LastError: "stored in bucket r2:a/old, configured r2:a/new", LastCode: storage.FailedPrecondition, LastErrorAt: at},
			providers.StatusFailing, causeBucketChanged, "stored in bucket r2:a/old, configured r2:a/new"},
		{"invalid settings", results.ProviderJobs{Failed: 1, LastError: "invalid settings", LastCode: storage.InvalidSettings, LastErrorAt: at},
			providers.StatusFailing, causeRefused, "invalid settings"},
		{"other permanent error", results.ProviderJobs{Failed: 1, LastError: "invalid key", LastCode: storage.InvalidArgument, LastErrorAt: at},
			providers.StatusFailing, causeFailedJobs, "invalid key"},
		{"parked jobs, latest attempt fine", results.ProviderJobs{Failed: 3, LastSuccessAt: at},
			providers.StatusFailing, causeFailedJobs, "3 jobs failed and wait for a retry"},
		{"outage", results.ProviderJobs{Pending: 4, LastError: "endpoint unreachable", LastCode: storage.Unavailable, LastErrorAt: at},
			providers.StatusDegraded, causeOutage, "endpoint unreachable"},
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
					want := providers.Problem{Provider: pluginID, Name: "Cloudflare R2 Storage", Status: c.status, Cause: r.Cause, Fix: r.Fix, Message: c.reason, FixURL: settingsPage}
					if v.Problem == nil || *v.Problem != want {
						t.Errorf("%s: problem %+v, want %+v", c.name, v.Problem, want)
					}
				}
				if l := option(t, v, providers.Local); l.Status != providers.StatusOK || l.Pending == nil || *l.Pending != 1 {
					t.Errorf("%s: local %+v", c.name, l)
				}
			}

			// Stats that cannot be read: counts unknown, the page still answers.
			v := e.m.StorageStatus(ctx, nil, errors.ErrUnsupported)
			if o := option(t, v, pluginID); o.Status != providers.StatusOK || o.Pending != nil || o.Failed != nil || !strings.Contains(v.StatsError, "unsupported") {
				t.Fatalf("unknown stats: %+v, stats error %q", o, v.StatsError)
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
// table lists exactly the rows of providers.Troubleshooting, word for word
// and in order, so the console and the README never disagree.
func TestReadmeTroubleshootingTableIsTheConsoles(t *testing.T) {
	f, err := os.Open(filepath.Join(plugintest.ModuleRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows [][]string
	in, header := false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			in = line == "## Troubleshooting"
			continue
		case !in || !strings.HasPrefix(line, "|"):
			if header && len(rows) > 0 {
				in = false // the table ended
			}
			continue
		case !header:
			if line != "| symptom | likely cause | fix |" {
				t.Fatalf("the Troubleshooting table's header is %q", line)
			}
			header = true
			continue
		case strings.HasPrefix(line, "|---"):
			continue
		}
		cells := strings.Split(strings.TrimSuffix(strings.TrimPrefix(line, "| "), " |"), " | ")
		rows = append(rows, cells)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	table := providers.Troubleshooting()
	if len(rows) != len(table) {
		t.Errorf("README's Troubleshooting table has %d rows, the Go table %d", len(rows), len(table))
	}
	for i := range min(len(rows), len(table)) {
		want := []string{table[i].Symptom, table[i].Cause, table[i].Fix}
		if strings.Join(rows[i], "\x00") != strings.Join(want, "\x00") {
			t.Errorf("row %d:\nREADME: %q\nGo:     %q", i+1, rows[i], want)
		}
	}
}
