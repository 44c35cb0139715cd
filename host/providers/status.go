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

// The statuses, best first.
const (
	// StatusOK: nothing is wrong that the host knows of.
	StatusOK Status = "ok"
	// StatusDegraded: results still go there, or wait for it, but not all
	// is well (a passing outage, a plugin restarting, no public URL).
	StatusDegraded Status = "degraded"
	// StatusFailing: results do not get there until the admin acts.
	StatusFailing Status = "failing"
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
	// CondDenied: the latest attempt was refused with PermissionDenied.
	CondDenied Condition = "denied"
	// CondBucketChanged: the latest attempt failed with FailedPrecondition
	// (an object stored in a bucket that is no longer configured).
	CondBucketChanged Condition = "bucket-changed"
	// CondInvalidSettings: the latest attempt failed with InvalidSettings.
	CondInvalidSettings Condition = "invalid-settings"
	// CondPermanentError: the latest attempt failed with another
	// permanent code (InvalidArgument, NotFound, Unimplemented, Unknown).
	CondPermanentError Condition = "permanent-error"
	// CondFailedJobs: jobs are parked as failed.
	CondFailedJobs Condition = "failed-jobs"
	// CondTransientError: the latest attempt failed with a transient code
	// (Unavailable, Canceled): jobs wait and are retried.
	CondTransientError Condition = "transient-error"
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
)

// Trouble is one row of the troubleshooting table: what the admin sees,
// the likely cause and the fix, worded exactly as the console shows them.
type Trouble struct {
	Symptom string
	Cause   string
	Fix     string
	// When lists the conditions this row explains; a row without any is
	// for README readers only.
	When []Condition
	// Status is what the row's conditions make of a provider's status.
	Status Status
	// FixPage is where the fix is made.
	FixPage Page
}

// troubleshooting is the troubleshooting table. README.md's Troubleshooting
// section lists exactly these rows, in this order (a test compares them).
// Cells are plain text: no "|", no Markdown.
var troubleshooting = [...]Trouble{
	{
		Symptom: "R2 doesn't appear in the Default Storage list",
		Cause:   "Provider not enabled, or credentials incomplete",
		Fix:     "Enable it and fill in access key, secret, bucket and account id (or a custom endpoint).",
		When:    []Condition{CondNotEnabled, CondIncomplete}, Status: StatusFailing, FixPage: PageSettings,
	},
	{
		Symptom: `"Connection failed" on test`,
		Cause:   "Wrong keys, bucket name or account id",
		Fix:     "Re-check the R2 API token and bucket; confirm the token has Object Read & Write.",
		When:    []Condition{CondDenied}, Status: StatusFailing, FixPage: PageSettings,
	},
	{
		Symptom: `"Upload succeeded but the object could not be read back"`,
		Cause:   "Bucket permissions too narrow",
		Fix:     "Grant the token read access to the bucket and retry.",
	},
	{
		Symptom: "New results still stored locally",
		Cause:   "R2 enabled but not selected as Default Storage",
		Fix:     "Set Default Storage to Cloudflare R2 in General Settings → General.",
	},
	{
		Symptom: "Offloaded images show broken in the app",
		Cause:   "Public / CDN URL missing or bucket not public",
		Fix:     "Set the Public / CDN URL and enable public access (r2.dev or a custom domain).",
		When:    []Condition{CondNoPublicURL}, Status: StatusDegraded, FixPage: PageSettings,
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
		When:    []Condition{CondFailedJobs, CondPermanentError}, Status: StatusFailing, FixPage: PageSettings,
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
		Cause:   "The plugin crashed 3 times within 10 minutes",
		Fix:     "Read the card's message and the host log for why. Reinstalling the plugin or restarting the host starts it again.",
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
}

// rule is one status rule: when holds, the provider is in cond and msg
// says concretely why.
type rule struct {
	cond  Condition
	holds func(f *facts) (msg string, ok bool)
	// option is true for the rules of a Default Storage option (its jobs
	// and settings); the others say why a provider is not an option.
	option bool
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
		enabled, _ := f.values["enabled"].(bool)
		return "not enabled", !enabled
	}},
	{cond: CondIncomplete, holds: func(f *facts) (string, bool) {
		if f.schema.FullyConfigured(f.values) {
			return "", false
		}
		return "credentials incomplete: " + emptyRequired(f.schema, f.values), true
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
	{cond: CondDenied, option: true, holds: lastFailed(storage.PermissionDenied)},
	{cond: CondBucketChanged, option: true, holds: lastFailed(storage.FailedPrecondition)},
	{cond: CondInvalidSettings, option: true, holds: lastFailed(storage.InvalidSettings)},
	{cond: CondPermanentError, option: true, holds: func(f *facts) (string, bool) {
		return f.jobs.LastError, f.jobs.LastError != "" && !transient(f.jobs.LastCode)
	}},
	{cond: CondFailedJobs, option: true, holds: func(f *facts) (string, bool) {
		msg := fmt.Sprintf("%d jobs failed and wait for a retry", f.jobs.Failed)
		if f.jobs.LastError != "" {
			msg += "; the latest attempt: " + f.jobs.LastError
		}
		return msg, f.jobs.Failed > 0
	}},
	{cond: CondTransientError, option: true, holds: func(f *facts) (string, bool) {
		return f.jobs.LastError, f.jobs.LastError != ""
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
		return f.jobs.LastError, f.jobs.LastError != "" && f.jobs.LastCode == code
	}
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
	for _, r := range rules {
		if r.option != option {
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
	Option
	Status Status `json:"status"`
	// Reason says concretely why Status is not ok ("" when it is).
	Reason string `json:"reason,omitempty"`
	// LastError is the latest failed attempt's error, "" when the latest
	// attempt succeeded or none was made.
	LastError     string    `json:"last_error,omitempty"`
	LastErrorAt   time.Time `json:"last_error_at,omitzero"`
	LastSuccessAt time.Time `json:"last_success_at,omitzero"`
	// Pending and Failed count the option's jobs on this node; nil when
	// they cannot be read (StorageView.StatsError says why).
	Pending *int `json:"pending,omitempty"`
	Failed  *int `json:"failed,omitempty"`
}

// Unavailable is an installed provider that is not a Default Storage
// option, and why.
type Unavailable struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Reason string `json:"reason"`
	Fix    string `json:"fix"`
	FixURL string `json:"fix_url"`
}

// Problem is what is wrong with the Default Storage, when it is a provider
// that is not ok or not an option.
type Problem struct {
	Provider string `json:"provider"`
	Name     string `json:"name"`
	Status   Status `json:"status"`
	Cause    string `json:"cause"`
	Fix      string `json:"fix"`
	// Message is the concrete last error or reason.
	Message string `json:"message"`
	FixURL  string `json:"fix_url"`
}

// StorageView is the storage overview: GET /api/v1/admin/storage.
type StorageView struct {
	Default     string         `json:"default"`
	Options     []OptionStatus `json:"options"`
	Unavailable []Unavailable  `json:"unavailable"`
	Problem     *Problem       `json:"problem,omitempty"`
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

// fixURL is where the fix of row t for provider id is made.
func fixURL(t Trouble, id string) string {
	if t.FixPage == PagePlugins {
		return PluginsPage
	}
	return SettingsPage(id)
}

// StorageStatus returns the storage overview: the Default Storage, every
// option with its status and job counts, every installed provider that is
// no option and why, and what is wrong with the Default Storage if it is a
// provider that is not ok. stats are the results service's JobStats;
// statsErr, when set, makes the counts unknown (never an error here).
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
		if o.ID != Local {
			f := m.facts(ctx, o.ID, jobs)
			if c, msg, bad := diagnose(&f, true); bad {
				t := troubleFor(c)
				st.Status, st.Reason = t.Status, msg
				if o.ID == v.Default {
					v.Problem = &Problem{Provider: o.ID, Name: o.Name, Status: t.Status, Cause: t.Cause, Fix: t.Fix, Message: msg, FixURL: fixURL(t, o.ID)}
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
		v.Unavailable = append(v.Unavailable, Unavailable{ID: id, Name: name, Reason: msg, Fix: t.Fix, FixURL: fixURL(t, id)})
		if id == v.Default {
			v.Problem = &Problem{Provider: id, Name: name, Status: t.Status, Cause: t.Cause, Fix: t.Fix, Message: msg, FixURL: fixURL(t, id)}
		}
	}
	if v.Default != Local && !options[v.Default] && v.Problem == nil {
		// Not installed on this node.
		f := facts{}
		c, msg, _ := diagnose(&f, false)
		t := troubleFor(c)
		v.Problem = &Problem{Provider: v.Default, Name: v.Default, Status: t.Status, Cause: t.Cause, Fix: t.Fix, Message: msg, FixURL: fixURL(t, v.Default)}
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

// emptyRequired names the settings a connection needs that are empty, as
// the schema's x-fully-configured annotation lists them, by their titles:
// "Secret Access Key and Account ID (or Custom Endpoint) are empty".
func emptyRequired(s *settingsschema.Schema, values map[string]any) string {
	var doc struct {
		Complete struct {
			All []string `json:"all"`
			Any []string `json:"any"`
		} `json:"x-fully-configured"`
		Properties map[string]struct {
			Title string `json:"title"`
		} `json:"properties"`
	}
	_ = json.Unmarshal(s.Document(), &doc) // a compiled schema is valid JSON
	title := func(k string) string {
		if t := doc.Properties[k].Title; t != "" {
			return t
		}
		return k
	}
	var empty []string
	for _, k := range doc.Complete.All {
		if !isSetValue(values[k]) {
			empty = append(empty, title(k))
		}
	}
	anySet := len(doc.Complete.Any) == 0
	var alts []string
	for _, k := range doc.Complete.Any {
		anySet = anySet || isSetValue(values[k])
		alts = append(alts, title(k))
	}
	if !anySet {
		one := alts[0]
		if len(alts) > 1 {
			one += " (or " + strings.Join(alts[1:], " or ") + ")"
		}
		empty = append(empty, one)
	}
	switch len(empty) {
	case 0:
		return "a required setting is empty"
	case 1:
		return empty[0] + " is empty"
	}
	return strings.Join(empty[:len(empty)-1], ", ") + " and " + empty[len(empty)-1] + " are empty"
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
