package providers

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/magicads/r2storage/host/pluginrt"
	"github.com/magicads/r2storage/host/results"
	"github.com/magicads/r2storage/shared/settingsschema"
	"github.com/magicads/r2storage/shared/storage"
)

// Status is how well a Default Storage option works now.
type Status string

// The statuses: ok, degraded and failing, best first, and unknown.
const (
	// StatusOK: nothing is wrong that the host knows of.
	StatusOK Status = "ok"
	// StatusDegraded: results still go there, or wait for it, but not all
	// is well (a passing outage, a plugin restarting, no public URL, jobs
	// that failed earlier while the latest attempt did not).
	StatusDegraded Status = "degraded"
	// StatusFailing: results do not get there until the admin acts.
	StatusFailing Status = "failing"
	// StatusUnknown: the job counts cannot be read, so whether results get
	// there is not known; ok would claim what the host cannot tell.
	StatusUnknown Status = "unknown"
)

// Condition is one state of a provider that the status rules tell apart.
type Condition string

// The conditions, in the order the rules test them (see rules).
const (
	// CondNotInstalled: Default Storage names a provider this node lacks.
	CondNotInstalled Condition = "not-installed"
	// CondRecordRefused: the plugin's install record failed its check.
	CondRecordRefused Condition = "record-refused"
	// CondPluginFailed: the plugin crashed repeatedly and is not restarted.
	CondPluginFailed Condition = "plugin-failed"
	// CondSettingsUnreadable: the settings entry cannot be decrypted or read.
	CondSettingsUnreadable Condition = "settings-unreadable"
	// CondNotEnabled: the provider is not enabled (or was never saved).
	CondNotEnabled Condition = "not-enabled"
	// CondIncomplete: a setting a connection needs is empty.
	CondIncomplete Condition = "incomplete"
	// CondNotRunning: the plugin is starting, restarting or stopped.
	CondNotRunning Condition = "not-running"
	// CondSettingsRefused: the running plugin refused the stored settings.
	CondSettingsRefused Condition = "settings-refused"
	// CondStatsUnreadable: the job counts cannot be read, so the rules
	// below cannot tell how the option is doing.
	CondStatsUnreadable Condition = "stats-unreadable"
	// CondDenied: the latest attempt was refused with PermissionDenied.
	CondDenied Condition = "denied"
	// CondBucketChanged: the latest attempt failed with FailedPrecondition
	// because the object is in a bucket that is no longer configured (its
	// error says so: see bucketChangedPhrases).
	CondBucketChanged Condition = "bucket-changed"
	// CondPrecondition: the latest attempt failed with another
	// FailedPrecondition (R2: the bucket does not exist, or the plugin is
	// not configured).
	CondPrecondition Condition = "failed-precondition"
	// CondInvalidSettings: the latest attempt failed with InvalidSettings.
	CondInvalidSettings Condition = "invalid-settings"
	// CondPermanentError: the latest attempt failed with another
	// permanent code (InvalidArgument, NotFound, Unimplemented, Unknown).
	CondPermanentError Condition = "permanent-error"
	// CondTransientError: the latest attempt failed with a transient code
	// (Unavailable, Canceled): jobs wait and are retried.
	CondTransientError Condition = "transient-error"
	// CondFailedJobs: jobs are parked as failed, but the latest attempt
	// did not fail (it succeeded, or none was made since).
	CondFailedJobs Condition = "failed-jobs"
	// CondNoPublicURL: the provider has no public URL to serve results from.
	CondNoPublicURL Condition = "no-public-url"
)

// Page is where the fix of a troubleshooting row is made.
type Page string

// The pages a fix points to.
const (
	// PageSettings is the provider's config page.
	PageSettings Page = "settings"
	// PagePlugins is the plugins page (install, reinstall, states).
	PagePlugins Page = "plugins"
	// PageStorage is the Default Storage page (the storage overview).
	PageStorage Page = "storage"
)

// r2ID is the provider whose own words (its API token, account id,
// r2.dev) some rows use; other providers get those rows' Other wording.
const r2ID = "cloudflare-r2"

// providerName stands for the provider's name in OtherCause and OtherFix.
const providerName = "{provider}"

// Trouble is one row of the troubleshooting table: what the admin sees,
// the likely cause and the fix, worded exactly as the console shows them.
type Trouble struct {
	// Symptom is what the admin sees.
	Symptom string
	// Cause is the likely cause, worded for Cloudflare R2 where it names
	// a provider's own settings.
	Cause string
	// Fix is what to do about it, worded as Cause.
	Fix string
	// OtherCause and OtherFix word Cause and Fix for any provider other
	// than Cloudflare R2, "{provider}" standing for its name; "" where
	// Cause or Fix fits every provider as it is.
	OtherCause string
	// OtherFix: see OtherCause.
	OtherFix string
	// OtherSymptom words Symptom for any provider other than Cloudflare
	// R2, as OtherCause; "" where Symptom fits every provider.
	OtherSymptom string
	// When lists the conditions this row explains; a row without any is
	// for README readers only.
	When []Condition
	// Status is what the row's conditions make of a provider's status.
	Status Status
	// FixPage is where the fix is made.
	FixPage Page
}

// For returns the row's cause and fix as shown for provider id named
// name: Cause and Fix for Cloudflare R2, else OtherCause and OtherFix
// (where set) with name for "{provider}".
func (t Trouble) For(id, name string) (cause, fix string) {
	cause, fix = t.Cause, t.Fix
	if id == r2ID {
		return cause, fix
	}
	if t.OtherCause != "" {
		cause = strings.ReplaceAll(t.OtherCause, providerName, name)
	}
	if t.OtherFix != "" {
		fix = strings.ReplaceAll(t.OtherFix, providerName, name)
	}
	return cause, fix
}

// SymptomFor returns the row's symptom as worded for provider id named
// name: Symptom for Cloudflare R2, else OtherSymptom (where set) with name
// for "{provider}".
func (t Trouble) SymptomFor(id, name string) string {
	if id == r2ID || t.OtherSymptom == "" {
		return t.Symptom
	}
	return strings.ReplaceAll(t.OtherSymptom, providerName, name)
}

// troubleshooting is the troubleshooting table. README.md's Troubleshooting
// section lists exactly these rows, in this order (a test compares them).
// Cells are plain text: no "|", no Markdown.
var troubleshooting = [...]Trouble{
	{
		Symptom:      "R2 doesn't appear in the Default Storage list",
		Cause:        "Provider not enabled, or credentials incomplete",
		Fix:          "Enable it and fill in access key, secret, bucket and account id (or a custom endpoint).",
		OtherSymptom: "{provider} doesn't appear in the Default Storage list",
		OtherCause:   "Provider not enabled, or settings incomplete",
		OtherFix:     "Enable {provider} and fill in every setting its config page marks as required.",
		When:         []Condition{CondNotEnabled, CondIncomplete}, Status: StatusFailing, FixPage: PageSettings,
	},
	{
		Symptom:    `"Connection failed" on test`,
		Cause:      "Wrong keys, bucket name or account id",
		Fix:        "Re-check the R2 API token and bucket; confirm the token has Object Read & Write.",
		OtherCause: "Wrong credentials or bucket name",
		OtherFix:   "Re-check the credentials and bucket set for {provider}; confirm they may read and write objects in the bucket.",
		When:       []Condition{CondDenied, CondPrecondition}, Status: StatusFailing, FixPage: PageSettings,
	},
	{
		Symptom: `"Upload succeeded but the object could not be read back"`,
		Cause:   "Bucket permissions too narrow",
		Fix:     "Grant the token read access to the bucket and retry.",
	},
	{
		Symptom: "New results still stored locally",
		Cause:   "R2 enabled but not selected as Default Storage",
		Fix:     "Set Default Storage to Cloudflare R2 in General Settings → Default Storage.",
	},
	{
		Symptom:  "Offloaded images show broken in the app",
		Cause:    "Public / CDN URL missing or bucket not public",
		Fix:      "Set the Public / CDN URL and enable public access (r2.dev or a custom domain).",
		OtherFix: "Set the Public / CDN URL of {provider} and make the bucket publicly readable.",
		When:     []Condition{CondNoPublicURL}, Status: StatusDegraded, FixPage: PageSettings,
	},
	{
		Symptom: "Files served from the wrong path",
		Cause:   "Key prefix mismatch",
		Fix:     "Ensure the Key Prefix matches how objects are organized in the bucket.",
	},
	{
		Symptom: "Secret field looks empty when editing",
		Cause:   "Secrets are never echoed back",
		Fix:     "Leave it blank to keep the stored secret; type a new value only to replace it.",
	},
	{
		Symptom: "Old files didn't move to R2",
		Cause:   "Offload only applies to new results",
		Fix:     "Selecting R2 doesn't migrate existing files; they keep serving from their current location.",
	},
	{
		Symptom: "Uploads to the bucket are retrying; the storage status is degraded",
		Cause:   "The bucket or its endpoint cannot be reached: a network problem or a provider outage",
		Fix:     "Nothing to change if it passes: results stay local and served, and are offloaded once the bucket answers. If it lasts, check this host's network to the endpoint and the provider's status page.",
		When:    []Condition{CondTransientError}, Status: StatusDegraded, FixPage: PageSettings,
	},
	{
		Symptom: "Jobs failed for good; the storage status is failing",
		Cause:   "Uploads or deletes were stopped by a permanent error",
		Fix:     "Fix what the last error names, then save the settings (failed jobs run again) or retry the failed jobs.",
		When:    []Condition{CondPermanentError}, Status: StatusFailing, FixPage: PageSettings,
	},
	{
		Symptom: "Some jobs failed; the storage status is degraded",
		Cause:   "Earlier uploads or deletes were stopped by a permanent error; the latest attempt did not fail",
		Fix:     "Retry the failed jobs. If they fail again, the status turns failing and names the error to fix.",
		When:    []Condition{CondFailedJobs}, Status: StatusDegraded, FixPage: PageStorage,
	},
	{
		Symptom: "The storage status is unknown",
		Cause:   "The job counts cannot be read: the database did not answer, or this host has no results service",
		Fix:     "The reason names the error. Check the database and reload once it answers; jobs keep their place meanwhile. The host log has the error too.",
		When:    []Condition{CondStatsUnreadable}, Status: StatusUnknown, FixPage: PageStorage,
	},
	{
		Symptom: "Results stored before a bucket change cannot be read or deleted",
		Cause:   "The bucket was changed while results were left in the old one",
		Fix:     "Set the previous bucket back, then retry the failed jobs; results stay where they were stored and new ones go to the bucket set now.",
		When:    []Condition{CondBucketChanged}, Status: StatusFailing, FixPage: PageSettings,
	},
	{
		Symptom: "The provider's page says the plugin refused its settings",
		Cause:   "Settings the plugin cannot use, such as a malformed endpoint or public URL",
		Fix:     "Correct the field the message names and save again.",
		When:    []Condition{CondSettingsRefused, CondInvalidSettings}, Status: StatusFailing, FixPage: PageSettings,
	},
	{
		Symptom: "The provider's page says its settings cannot be read",
		Cause:   "APP_KEY changed without the old key in APP_KEY_PREVIOUS, or the stored entry was changed outside the host",
		Fix:     "Start the host with the APP_KEY the settings were saved with, or add that key to APP_KEY_PREVIOUS.",
		When:    []Condition{CondSettingsUnreadable}, Status: StatusFailing, FixPage: PageSettings,
	},
	{
		Symptom: "The storage status says the plugin is not running",
		Cause:   "The plugin is starting, restarting after a crash, or being updated",
		Fix:     "Wait a few seconds: new results are queued for it and offloaded once it runs. If it does not come back, check its card on the plugins page and the host log.",
		When:    []Condition{CondNotRunning}, Status: StatusDegraded, FixPage: PagePlugins,
	},
	{
		Symptom: "The plugin's card says failed; new results stay local",
		Cause:   "The plugin crashed 3 times within 10 minutes, or its binary is missing or does not match the checksum recorded at install",
		Fix:     "Read the card's message and the host log for why. If its settings make it fail, correct them and save: while it has failed, a save is checked by the schema only and starts it again with them. Otherwise reinstall it.",
		When:    []Condition{CondPluginFailed}, Status: StatusFailing, FixPage: PagePlugins,
	},
	{
		Symptom: "The plugin's card says its install record was refused and offers Reinstall",
		Cause:   "Its plugins row changed in the database, it was installed by a host from before install records were authenticated, or APP_KEY changed without APP_KEY_PREVIOUS",
		Fix:     "Click Reinstall: the settings are kept. If you did not upgrade or rotate keys, someone with database access changed the row.",
		When:    []Condition{CondRecordRefused}, Status: StatusFailing, FixPage: PagePlugins,
	},
	{
		Symptom: "Default Storage names a provider that is not installed on this host node",
		Cause:   "The plugin was installed on another node sharing the database, or removed from this one",
		Fix:     "Install it on this node from the plugins page, or choose another Default Storage; new results are queued for it meanwhile.",
		When:    []Condition{CondNotInstalled}, Status: StatusFailing, FixPage: PagePlugins,
	},
	{
		Symptom: "The plugins page warns that the catalog cannot be used",
		Cause:   "The catalog is unreachable, its signature does not verify, it expired, or its serial is older than one already accepted",
		Fix:     "The warning names which. Installed plugins stay listed (Configure, Uninstall). Re-sign the catalog (scripts/catalog) or fix --catalog.",
	},
	{
		Symptom: "The results API answers 503 naming the database; /healthz says database unreachable",
		Cause:   "The database did not answer within 5 s (down, cut off, overloaded) or refused for now (locked, restarting)",
		Fix:     "Check the database server and the network to it; the host recovers by itself once it answers. Clients retry after Retry-After, with the same Idempotency-Key.",
	},
	{
		Symptom: "507 on uploads; /healthz says results disk full or upload spool full",
		Cause:   "Less than 16 MiB free, or no room for the upload, on the data dir's disk",
		Fix:     "Free space on that disk (or move --data-dir to a larger one); offloaded results with delete_local on take no local space.",
	},
}

// Troubleshooting returns the troubleshooting table, in README order.
func Troubleshooting() []Trouble {
	out := make([]Trouble, len(troubleshooting))
	for i, t := range troubleshooting {
		t.When = append([]Condition(nil), t.When...)
		out[i] = t
	}
	return out
}

// troubleFor returns the row that explains c.
func troubleFor(c Condition) Trouble {
	for _, t := range troubleshooting {
		for _, w := range t.When {
			if w == c {
				return t
			}
		}
	}
	// Every condition has a row (TestEveryConditionHasOneRow); this only
	// keeps a missing one from hiding the message.
	return Trouble{Cause: string(c), Status: StatusFailing, FixPage: PageSettings}
}

// facts is what the status rules read about one provider.
type facts struct {
	installed bool
	// refused is why the install record was refused ("" when it was not).
	refused string
	// started is false when the runtime does not know the plugin.
	started bool
	rt      pluginrt.Status
	values  map[string]any
	loadErr error
	// configured and problem are the outcome of the last Configure.
	configured bool
	problem    string
	schema     *settingsschema.Schema
	jobs       results.ProviderJobs
	// statsErr is why jobs cannot be read (nil when they were).
	statsErr error
}

// rule is one status rule: when holds, the provider is in cond and msg
// says concretely why.
type rule struct {
	cond  Condition
	holds func(f *facts) (msg string, ok bool)
	// option is true for the rules of a Default Storage option (its jobs
	// and settings); the others say why a provider is not an option.
	option bool
	// jobsOnly is true for the option rules that read nothing but the
	// jobs: they apply to local too.
	jobsOnly bool
}

// rules are the status rules, in order: the first that holds decides.
// The messages of the rules that make a provider no option are the
// reasons of GET /api/v1/admin/storage's "unavailable".
var rules = [...]rule{
	{cond: CondNotInstalled, holds: func(f *facts) (string, bool) {
		return "the plugin is not installed on this host node", !f.installed
	}},
	{cond: CondRecordRefused, holds: func(f *facts) (string, bool) {
		return "plugin failed: " + f.refused, f.refused != ""
	}},
	{cond: CondPluginFailed, holds: func(f *facts) (string, bool) {
		why := f.rt.LastError
		if why == "" {
			why = "it crashed repeatedly"
		}
		return "plugin failed: " + why, f.started && f.rt.State == pluginrt.StateFailed
	}},
	{cond: CondSettingsUnreadable, holds: func(f *facts) (string, bool) {
		if f.loadErr == nil || isUnset(f.loadErr) {
			return "", false
		}
		return "settings cannot be read: " + f.loadErr.Error(), true
	}},
	{cond: CondNotEnabled, holds: func(f *facts) (string, bool) {
		return "not enabled", !enabledIn(f.values)
	}},
	{cond: CondIncomplete, holds: func(f *facts) (string, bool) {
		if f.schema.FullyConfigured(f.values) {
			return "", false
		}
		return incompleteMessage(f.schema, f.values), true
	}},
	{cond: CondNotRunning, holds: func(f *facts) (string, bool) {
		switch {
		case !f.started:
			return "plugin not running: it was not started", true
		case f.rt.State == pluginrt.StateRunning:
			return "", false
		case f.rt.LastError != "":
			return fmt.Sprintf("plugin not running: it is %s: %s", f.rt.State, f.rt.LastError), true
		}
		return fmt.Sprintf("plugin not running: it is %s", f.rt.State), true
	}},
	{cond: CondSettingsRefused, holds: func(f *facts) (string, bool) {
		msg, _ := strings.CutPrefix(f.problem, "the plugin refused its settings: ")
		if msg == "" {
			msg = "the plugin has not accepted them yet"
		}
		return "settings refused: " + msg, !f.configured
	}},
	{cond: CondStatsUnreadable, option: true, jobsOnly: true, holds: func(f *facts) (string, bool) {
		if f.statsErr == nil {
			return "", false
		}
		return "job counts cannot be read, so whether results reach it is not known: " + f.statsErr.Error(), true
	}},
	{cond: CondDenied, option: true, jobsOnly: true, holds: lastFailed(storage.PermissionDenied)},
	{cond: CondBucketChanged, option: true, jobsOnly: true, holds: func(f *facts) (string, bool) {
		msg, ok := lastFailed(storage.FailedPrecondition)(f)
		return msg, ok && inOtherBucket(msg)
	}},
	{cond: CondPrecondition, option: true, jobsOnly: true, holds: lastFailed(storage.FailedPrecondition)},
	{cond: CondInvalidSettings, option: true, jobsOnly: true, holds: lastFailed(storage.InvalidSettings)},
	{cond: CondPermanentError, option: true, jobsOnly: true, holds: func(f *facts) (string, bool) {
		return f.jobs.LastError, latestFailed(f.jobs) && !transient(f.jobs.LastCode)
	}},
	{cond: CondTransientError, option: true, jobsOnly: true, holds: func(f *facts) (string, bool) {
		msg := f.jobs.LastError
		if f.jobs.Failed > 0 {
			msg += "; " + jobsFailed(f.jobs.Failed, " earlier")
		}
		return msg, latestFailed(f.jobs)
	}},
	{cond: CondFailedJobs, option: true, jobsOnly: true, holds: func(f *facts) (string, bool) {
		msg := jobsFailed(f.jobs.Failed, "")
		if !f.jobs.LastSuccessAt.IsZero() {
			msg += "; the latest attempt succeeded"
		}
		return msg, f.jobs.Failed > 0
	}},
	{cond: CondNoPublicURL, option: true, holds: func(f *facts) (string, bool) {
		if !hasProperty(f.schema, publicURLField) || isSetValue(f.values[publicURLField]) {
			return "", false
		}
		return "no Public / CDN URL is set: offloaded results cannot be shown from the bucket, so their local copies are kept and served", true
	}},
}

// publicURLField is the settings property a provider's public base URL is
// set in, by convention (R2's public_url).
const publicURLField = "public_url"

// lastFailed is the rule "the latest attempt failed with code".
func lastFailed(code storage.ErrorCode) func(f *facts) (string, bool) {
	return func(f *facts) (string, bool) {
		return f.jobs.LastError, latestFailed(f.jobs) && f.jobs.LastCode == code
	}
}

// latestFailed reports whether the latest attempt failed: there is a last
// error and no success after it.
func latestFailed(j results.ProviderJobs) bool {
	return j.LastError != "" && !j.LastSuccessAt.After(j.LastErrorAt)
}

// jobsFailed words n failed jobs: "1 job failed and waits for a retry",
// "2 jobs failed and wait for a retry"; when is put after "failed".
func jobsFailed(n int, when string) string {
	if n == 1 {
		return "1 job failed" + when + " and waits for a retry"
	}
	return fmt.Sprintf("%d jobs failed%s and wait for a retry", n, when)
}

// bucketChangedPhrases are what a FailedPrecondition error says when the
// object is in a bucket other than the configured one, which is what
// tells CondBucketChanged from CondPrecondition:
//   - "no longer configured for": the results service (host/results)
//     parks a delete whose recorded bucket the provider is no longer
//     configured for with an error saying so ("the object … is in bucket
//     B, which P is no longer configured for (now C); …"). Changing that
//     wording there must change it here (TestOptionStatusFollowsItsJobs
//     uses it).
//   - "the object is in bucket": how the R2 plugin (plugin/r2/locate.go)
//     and memstore refuse a Location in another bucket.
var bucketChangedPhrases = []string{"no longer configured for", "the object is in bucket"}

// inOtherBucket reports whether a FailedPrecondition error's text says the
// object is in a bucket that is not the configured one.
func inOtherBucket(msg string) bool {
	for _, p := range bucketChangedPhrases {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// transient reports whether a failure with code is worth retrying as is.
func transient(code storage.ErrorCode) bool {
	return code == storage.Unavailable || code == storage.Canceled
}

// diagnose applies the rules: the provider's condition and its message;
// ok is false when no rule holds (the provider is fine). Only the rules
// that make a provider no option are applied when option is false, and
// the others only when it is true.
func diagnose(f *facts, option bool) (Condition, string, bool) {
	return apply(f, func(r rule) bool { return r.option == option })
}

// diagnoseLocal applies the rules that read nothing but the jobs, to the
// local results disk.
func diagnoseLocal(f *facts) (Condition, string, bool) {
	return apply(f, func(r rule) bool { return r.jobsOnly })
}

// apply returns the condition and message of the first rule that use
// keeps and that holds; ok is false when none holds.
func apply(f *facts, use func(rule) bool) (Condition, string, bool) {
	for _, r := range rules {
		if !use(r) {
			continue
		}
		if msg, ok := r.holds(f); ok {
			return r.cond, msg, true
		}
	}
	return "", "", false
}

// OptionStatus is a Default Storage option with its health.
type OptionStatus struct {
	// Option is the option's id and name.
	Option
	// Status is how well the option works now.
	Status Status `json:"status"`
	// Reason says concretely why Status is not ok ("" when it is).
	Reason string `json:"reason,omitempty"`
	// LastError is the latest failed attempt's error, "" when the latest
	// attempt succeeded or none was made.
	LastError string `json:"last_error,omitempty"`
	// LastErrorAt is when LastError happened (zero without one).
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// LastSuccessAt is when an attempt last succeeded (zero if none did).
	LastSuccessAt time.Time `json:"last_success_at,omitzero"`
	// Pending counts the option's jobs waiting or running; nil when the
	// counts cannot be read (StorageView.StatsError says why).
	Pending *int `json:"pending,omitempty"`
	// Failed counts the option's jobs parked as failed; nil as Pending.
	Failed *int `json:"failed,omitempty"`
}

// Unavailable is an installed provider that is not a Default Storage
// option, and why.
type Unavailable struct {
	// ID is the provider's plugin id.
	ID string `json:"id"`
	// Name is the provider's display name.
	Name string `json:"name"`
	// Reason says concretely why it is no option.
	Reason string `json:"reason"`
	// Fix is the fix of the troubleshooting row that explains Reason.
	Fix string `json:"fix"`
	// FixURL is the console page the fix is made on.
	FixURL string `json:"fix_url"`
}

// Problem is what is wrong with the Default Storage, when it is a provider
// that is not ok or not an option.
type Problem struct {
	// Provider is the Default Storage's provider id.
	Provider string `json:"provider"`
	// Name is its display name (its id when it is not installed).
	Name string `json:"name"`
	// Status is its status: degraded, failing or unknown.
	Status Status `json:"status"`
	// Cause is the likely cause, from the troubleshooting row that fits.
	Cause string `json:"cause"`
	// Fix is that row's fix.
	Fix string `json:"fix"`
	// Message is the concrete last error or reason.
	Message string `json:"message"`
	// FixURL is the console page the fix is made on.
	FixURL string `json:"fix_url"`
}

// StorageView is the storage overview: GET /api/v1/admin/storage.
type StorageView struct {
	// Default is the Default Storage's id (local when it cannot be read).
	Default string `json:"default"`
	// Options are the Default Storage options, local first, with their
	// status and job counts.
	Options []OptionStatus `json:"options"`
	// Unavailable are the installed providers that are no option.
	Unavailable []Unavailable `json:"unavailable"`
	// Problem is what is wrong with the Default Storage, if anything.
	Problem *Problem `json:"problem,omitempty"`
	// Warning says why Default Storage could not be read (the caller sets
	// it from DefaultErr).
	Warning string `json:"warning,omitempty"`
	// StatsError says why the job counts are missing.
	StatsError string `json:"stats_error,omitempty"`
	// DefaultErr is why Default Storage could not be read; Default is
	// local then.
	DefaultErr error `json:"-"`
}

// SettingsPage is the console's config page of provider id.
func SettingsPage(id string) string { return "/app/admin/general/plugins/" + id }

// PluginsPage is the console's plugins page.
const PluginsPage = "/app/admin/general/plugins"

// StoragePage is the console's Default Storage page (the storage overview).
const StoragePage = "/app/admin/general"

// fixURL is where the fix of row t for provider id is made.
func fixURL(t Trouble, id string) string {
	switch t.FixPage {
	case PagePlugins:
		return PluginsPage
	case PageStorage:
		return StoragePage
	}
	return SettingsPage(id)
}

// problem is the Default Storage's problem: provider id named name is in
// condition c, msg says concretely why.
func problem(c Condition, id, name, msg string) *Problem {
	t := troubleFor(c)
	cause, fix := t.For(id, name)
	return &Problem{Provider: id, Name: name, Status: t.Status, Cause: cause, Fix: fix, Message: msg, FixURL: fixURL(t, id)}
}

// StorageStatus returns the storage overview: the Default Storage, every
// option with its status and job counts, every installed provider that is
// no option and why, and what is wrong with the Default Storage if it is a
// provider that is not ok. stats are the results service's JobStats;
// statsErr, when set, makes the counts and the options' status unknown
// (never an error here). Local's status follows its own jobs.
func (m *Manager) StorageStatus(ctx context.Context, stats map[string]results.ProviderJobs, statsErr error) StorageView {
	v := StorageView{Options: []OptionStatus{}, Unavailable: []Unavailable{}}
	v.Default, v.DefaultErr = m.Default(ctx)
	if v.DefaultErr != nil {
		v.Default = Local
	}
	if statsErr != nil {
		v.StatsError = "job counts cannot be read: " + statsErr.Error()
	}
	count := func(n int) *int {
		if statsErr != nil {
			return nil
		}
		return &n
	}
	options := map[string]bool{}
	for _, o := range m.Options(ctx) {
		options[o.ID] = true
		st := OptionStatus{Option: o, Status: StatusOK}
		jobs := stats[o.ID]
		st.LastError, st.LastErrorAt, st.LastSuccessAt = jobs.LastError, jobs.LastErrorAt, jobs.LastSuccessAt
		st.Pending, st.Failed = count(jobs.Pending), count(jobs.Failed)
		if o.ID == Local {
			f := facts{jobs: jobs, statsErr: statsErr}
			if c, msg, bad := diagnoseLocal(&f); bad {
				st.Status, st.Reason = troubleFor(c).Status, msg
			}
		} else {
			f := m.facts(ctx, o.ID, jobs)
			f.statsErr = statsErr
			if c, msg, bad := diagnose(&f, true); bad {
				st.Status, st.Reason = troubleFor(c).Status, msg
				if o.ID == v.Default {
					v.Problem = problem(c, o.ID, o.Name, msg)
				}
			}
		}
		v.Options = append(v.Options, st)
	}
	for _, id := range m.installedIDs() {
		if options[id] {
			continue
		}
		f := m.facts(ctx, id, stats[id])
		c, msg, bad := diagnose(&f, false)
		if !bad {
			// It became an option after Options was read.
			c, msg = CondNotRunning, "not available right now: it changed while this page was read; reload"
		}
		t := troubleFor(c)
		name := m.name(id)
		_, fix := t.For(id, name)
		v.Unavailable = append(v.Unavailable, Unavailable{ID: id, Name: name, Reason: msg, Fix: fix, FixURL: fixURL(t, id)})
		if id == v.Default {
			v.Problem = problem(c, id, name, msg)
		}
	}
	if v.Default != Local && !options[v.Default] && v.Problem == nil {
		// Not installed on this node.
		f := facts{}
		c, msg, _ := diagnose(&f, false)
		v.Problem = problem(c, v.Default, v.Default, msg)
	}
	return v
}

// installedIDs lists the installed plugins' ids, sorted.
func (m *Manager) installedIDs() []string {
	m.mu.Lock()
	ids := make([]string, 0, len(m.plugins))
	for id := range m.plugins {
		ids = append(ids, id)
	}
	m.mu.Unlock()
	sort.Strings(ids)
	return ids
}

// name is an installed plugin's display name (its id when unknown).
func (m *Manager) name(id string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p := m.plugins[id]; p != nil && p.name != "" {
		return p.name
	}
	return id
}

// facts gathers what the rules read about installed provider id.
func (m *Manager) facts(ctx context.Context, id string, jobs results.ProviderJobs) facts {
	f := facts{jobs: jobs}
	m.mu.Lock()
	p := m.plugins[id]
	if p != nil {
		f.installed, f.refused, f.configured, f.problem, f.schema = true, p.refused, p.configured, p.problem, p.schema
	}
	m.mu.Unlock()
	if !f.installed {
		return f
	}
	if f.schema == nil {
		// A refused record whose files could not be read: the first
		// rules decide before any reads the schema.
		f.schema, _ = settingsschema.Compile([]byte(`{"type":"object"}`))
	}
	f.rt, f.started = m.rt.Status(id)
	f.values, f.loadErr = m.settings.Load(ctx, EntryName(id))
	return f
}

// hasProperty reports whether the schema has a top-level property name.
func hasProperty(s *settingsschema.Schema, name string) bool {
	var doc struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	_ = json.Unmarshal(s.Document(), &doc) // a compiled schema is valid JSON
	_, ok := doc.Properties[name]
	return ok
}

// isSetValue reports whether a settings value counts as given, as the
// schema's x-fully-configured check counts it.
func isSetValue(v any) bool {
	switch v := v.(type) {
	case nil:
		return false
	case string:
		return strings.TrimSpace(v) != ""
	}
	return true
}
