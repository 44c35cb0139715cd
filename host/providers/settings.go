package providers

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/magicads/r2storage/host/pluginrt"
	"github.com/magicads/r2storage/host/settingsstore"

	"github.com/magicads/r2storage/shared/storage"
)

// SettingsView is what the admin API shows of a provider's settings.
type SettingsView struct {
	// Schema is not filled in by Settings: SchemaJSON returns the schema.
	Schema []byte `json:"-"`
	// Values are the stored settings without their secrets.
	Values map[string]any `json:"values"`
	// SecretsSet names the secrets that have a stored value.
	SecretsSet []string `json:"secrets_set"`
	// Problem says why the provider cannot be used yet, if it cannot.
	Problem string `json:"problem,omitempty"`
}

func (m *Manager) plugin(id string) (*plugin, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.plugins[id]
	if p == nil {
		return nil, fmt.Errorf("%w: %q", ErrNotInstalled, id)
	}
	if p.schema == nil {
		// A refused record whose files could not be read.
		return nil, fmt.Errorf("%w: plugin %s: %s", ErrRefused, id, p.refused)
	}
	return p, nil
}

// Settings returns a provider's stored settings without its secrets.
func (m *Manager) Settings(ctx context.Context, id string) (SettingsView, error) {
	m.Sync(ctx)
	p, err := m.plugin(id)
	if err != nil {
		return SettingsView{}, err
	}
	values, err := m.settings.Load(ctx, EntryName(id))
	if err != nil && !isUnset(err) {
		return SettingsView{}, err
	}
	if values == nil {
		values = map[string]any{}
	}
	m.mu.Lock()
	problem := p.problem
	m.mu.Unlock()
	return SettingsView{Values: p.schema.Public(values), SecretsSet: p.schema.SecretsSet(values), Problem: problem}, nil
}

// SchemaJSON returns the settings schema document the host serves for the
// provider: the plugin's own, with the host's settings (enabled,
// delete_local) added (HostSchema).
func (m *Manager) SchemaJSON(id string) ([]byte, error) {
	p, err := m.plugin(id)
	if err != nil {
		return nil, err
	}
	return p.schema.Document(), nil
}

// Errors of SaveSettings and Test; nothing was stored with either.
var (
	// ErrPluginUnavailable: the provider's plugin could not check the
	// settings (it is not running, or the call failed).
	ErrPluginUnavailable = errors.New("the plugin cannot check the settings now")
	// ErrSaveConflict: other saves of the same provider kept changing the
	// stored settings while this one was being checked.
	ErrSaveConflict = errors.New("the settings were changed by another save while this one was checked")
)

// errStale: the stored settings changed between the check and the write.
var errStale = errors.New("the stored settings changed meanwhile")

// validateTimeout bounds the plugin's ValidateSettings call.
const validateTimeout = 10 * time.Second

// saveAttempts is how often SaveSettings checks again when another save
// changed the stored settings between its check and its write.
const saveAttempts = 3

// SettingsField is the field a plugin's refusal of the settings as a
// whole (InvalidSettings or InvalidArgument naming no field) is put on.
const SettingsField = "settings"

// SaveResult is how a save that stored the settings went.
type SaveResult struct {
	// CheckedByPlugin is true when the running plugin checked the
	// settings; false when its plugin had failed (or its install record
	// is refused) and only the schema checked them.
	CheckedByPlugin bool `json:"checked_by_plugin"`
	// Message says, when CheckedByPlugin is false, that the plugin could
	// not check the settings and whether it runs with them now.
	Message string `json:"message,omitempty"`
}

// SaveSettings is Save without its SaveResult.
func (m *Manager) SaveSettings(ctx context.Context, id string, incoming map[string]any) ([]storage.FieldError, error) {
	_, fields, err := m.Save(ctx, id, incoming)
	return fields, err
}

// Save checks and stores a provider's settings (a blank secret keeps the
// stored one) and applies them to the running plugin. The values as they
// would be stored (incoming merged with the stored entry) are checked by
// the schema and then by the running plugin's ValidateSettings before
// anything is written; the problems of both come back as fields (the
// schema's message wins on a field both flag) and nothing is stored then.
// A plugin that refuses them as a whole (InvalidSettings or
// InvalidArgument naming no field) is a problem on SettingsField. A plugin
// that cannot check them for now (starting, restarting, stopped, or the
// call failed or timed out) stores nothing either: ErrPluginUnavailable,
// unless the schema already found problems. A plugin that failed for good
// (the runtime's crash-loop breaker, a refused binary) or whose install
// record is refused cannot check them until the admin acts, and the
// settings may be why it failed: they are checked by the schema only,
// stored, and the failed plugin is started again with them; SaveResult
// says so. A secret stays with where it was entered: a save that changes a
// property the schema marks x-binds-secrets (R2: endpoint, account_id,
// jurisdiction) and would keep a stored secret is a field problem on that
// secret. The write happens under the entry's row lock only if the stored
// entry is still what was checked (else the check runs again, up to
// saveAttempts times, then ErrSaveConflict). After a save,
// Options.SettingsChanged is told.
func (m *Manager) Save(ctx context.Context, id string, incoming map[string]any) (SaveResult, []storage.FieldError, error) {
	m.Sync(ctx)
	p, err := m.plugin(id)
	if err != nil {
		return SaveResult{}, nil, err
	}
	prov := m.rt.Provider(id)
	for range saveAttempts {
		stored, err := m.settings.Load(ctx, EntryName(id))
		if err != nil && !isUnset(err) {
			return SaveResult{}, nil, err
		}
		checked := settingsstore.Merge(p.schema, stored, incoming)
		down := m.failedFor(id, p)
		var fields []storage.FieldError
		if down == "" {
			fields, err = m.check(ctx, p, prov, stored, incoming, checked)
		} else {
			fields = schemaCheck(p, stored, incoming, checked)
		}
		if err != nil || len(fields) > 0 {
			return SaveResult{}, fields, err
		}
		_, fields, err = m.settings.UpdateChecked(ctx, EntryName(id), id, p.schema, incoming, func(merged map[string]any) ([]storage.FieldError, error) {
			if !reflect.DeepEqual(merged, checked) {
				return nil, errStale
			}
			return nil, nil
		})
		if errors.Is(err, errStale) {
			continue
		}
		if err != nil || len(fields) > 0 {
			return SaveResult{}, fields, err
		}
		res := SaveResult{CheckedByPlugin: true}
		if down == "" {
			m.configure(ctx, p, prov)
		} else {
			res = SaveResult{Message: m.restart(ctx, p, down, p.schema.SecretValuesOf(checked))}
		}
		m.announceSettings(ctx, id)
		m.settingsChanged(ctx, id)
		return res, nil, nil
	}
	return SaveResult{}, nil, fmt.Errorf("%w: nothing was saved; reload the settings and save again", ErrSaveConflict)
}

// failedFor says why plugin id cannot check settings until the admin acts:
// its install record is refused, or the runtime gave up on it (StateFailed:
// the crash-loop breaker tripped, or its binary is refused); "" otherwise,
// also while it is starting or restarting (it comes back by itself).
func (m *Manager) failedFor(id string, p *plugin) string {
	m.mu.Lock()
	refused := p.refused
	m.mu.Unlock()
	if refused != "" {
		return "its install record is refused: " + refused
	}
	if st, ok := m.rt.Status(id); ok && st.State == pluginrt.StateFailed {
		if st.LastError == "" {
			return "it has failed"
		}
		return "it has failed: " + st.LastError
	}
	return ""
}

// restart starts failed plugin p again, now that settings were saved that
// only the schema checked (down says why the plugin could not check them;
// secrets are redacted from the outcome), and words the outcome for the
// admin. The runtime's OnStart configures it with the stored settings. A
// plugin whose install record is refused is not started: a reinstall does
// that.
func (m *Manager) restart(ctx context.Context, p *plugin, down string, secrets []string) string {
	msg := "Settings saved after the schema's check only: the plugin could not check them (" + down + "). "
	m.mu.Lock()
	refused := p.refused != ""
	m.mu.Unlock()
	if refused {
		return Redact(msg+"Reinstall it from the plugins page: it starts with these settings.", secrets)
	}
	// The start outlives a request that ends meanwhile (a cut start
	// would count as one more crash); the runtime bounds it.
	if err := m.start(context.WithoutCancel(ctx), p); err != nil {
		m.log.Error("the failed plugin was started again after its settings were saved, but did not start", "plugin", p.inst.ID, "error", Redact(err.Error(), secrets))
		return Redact(msg+"It was started again with them but did not start: "+err.Error()+". Its card on the plugins page and the host log say more; a binary that is missing or does not match needs a reinstall.", secrets)
	}
	m.mu.Lock()
	configured, problem := p.configured, p.problem
	m.mu.Unlock()
	if !configured {
		return Redact(msg+"It was started again, but did not take them: "+problem+". Correct them and save again.", secrets)
	}
	return Redact(msg+"It was started again and runs with them.", secrets)
}

// schemaCheck returns the problems the schema finds with merged, the
// values a save of incoming over stored would write.
func schemaCheck(p *plugin, stored, incoming, merged map[string]any) []storage.FieldError {
	fields := p.schema.SecretsToReenter(stored, incoming)
	fields = addFields(fields, p.schema.Validate(storage.Settings(merged)))
	secrets := p.schema.SecretValuesOf(merged)
	for i := range fields {
		fields[i].Message = Redact(fields[i].Message, secrets)
	}
	sort.Slice(fields, func(i, j int) bool { return fields[i].Field < fields[j].Field })
	return fields
}

// check returns the field problems of merged, the values a save of
// incoming over stored would write: the schema's, then the running
// plugin's ValidateSettings. Messages never carry a secret value.
func (m *Manager) check(ctx context.Context, p *plugin, prov storage.Provider, stored, incoming, merged map[string]any) ([]storage.FieldError, error) {
	fields := schemaCheck(p, stored, incoming, merged)
	secrets := p.schema.SecretValuesOf(merged)
	vctx, cancel := context.WithTimeout(ctx, validateTimeout)
	defer cancel()
	pluginFields, err := prov.ValidateSettings(vctx, pluginSettings(merged))
	var se *storage.Error
	switch {
	case err == nil:
	case errors.As(err, &se) && se.Code == storage.InvalidSettings && len(se.Fields) > 0:
		pluginFields = se.Fields
	case errors.As(err, &se) && (se.Code == storage.InvalidSettings || se.Code == storage.InvalidArgument):
		// A refusal of the settings as a whole: the plugin ran and
		// answered, so waiting would not change it.
		msg := se.Message
		if msg == "" {
			msg = se.Error()
		}
		pluginFields = []storage.FieldError{{Field: SettingsField, Message: msg}}
	case len(fields) > 0:
		// The schema's problems are answer enough.
	case ctx.Err() != nil:
		return nil, ctx.Err()
	default:
		return nil, fmt.Errorf("%w: %s; nothing was saved: save again once the plugin runs (its state is on the plugins page)",
			ErrPluginUnavailable, Redact(err.Error(), secrets))
	}
	fields = addFields(fields, pluginFields)
	for i := range fields {
		fields[i].Message = Redact(fields[i].Message, secrets)
	}
	sort.Slice(fields, func(i, j int) bool { return fields[i].Field < fields[j].Field })
	return fields, nil
}

// addFields appends the problems of more on fields no problem in fields is on.
func addFields(fields, more []storage.FieldError) []storage.FieldError {
	for _, f := range more {
		if !slices.ContainsFunc(fields, func(g storage.FieldError) bool { return g.Field == f.Field }) {
			fields = append(fields, f)
		}
	}
	return fields
}

// Redact replaces every secret value in msg with [redacted].
func Redact(msg string, secrets []string) string {
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "[redacted]")
		}
	}
	return msg
}

// TestReport is a connection test's outcome after its save.
type TestReport struct {
	// TestResult is the probe's outcome; its Message starts by saying
	// that the settings were saved.
	storage.TestResult
	// Save is how the save went.
	Save SaveResult
}

// Test saves the settings (as Save, with the same field problems and
// errors, when nothing is saved), then has the plugin upload, read back
// and delete a probe object. A failed probe is a result, not an error: its
// message says that the settings were saved and where the test failed
// ("Settings saved, but the connection test failed at upload: …"). When
// the plugin could not check the settings, the message starts with the
// save's.
func (m *Manager) Test(ctx context.Context, id string, incoming map[string]any) (TestReport, []storage.FieldError, error) {
	saved, fields, err := m.Save(ctx, id, incoming)
	if err != nil || len(fields) > 0 {
		return TestReport{}, fields, err
	}
	m.mu.Lock()
	p := m.plugins[id]
	configured, problem := p.configured, p.problem
	m.mu.Unlock()
	var res storage.TestResult
	if !configured {
		res = storage.TestResult{Step: storage.StepConfig, Message: problem}
	} else if res, err = m.rt.Provider(id).TestConnection(ctx); err != nil {
		res = storage.TestResult{Step: storage.StepConfig, Message: "the plugin is not available: " + err.Error()}
	}
	res.Message = savedMessage(res, saved)
	return TestReport{TestResult: res, Save: saved}, nil, nil
}

// savedMessage words a connection test's outcome after its save: "Settings
// saved" and the outcome, or, when the plugin could not check the
// settings, the save's message and the outcome.
func savedMessage(res storage.TestResult, saved SaveResult) string {
	step := res.Step
	if step == "" {
		step = storage.StepConfig
	}
	msg, _ := strings.CutPrefix(res.Message, "Connection failed: ")
	if !saved.CheckedByPlugin {
		if res.OK {
			return saved.Message + " Connection test: " + res.Message
		}
		return fmt.Sprintf("%s The connection test failed at %s: %s", saved.Message, step, msg)
	}
	if res.OK {
		return "Settings saved. " + res.Message
	}
	return fmt.Sprintf("Settings saved, but the connection test failed at %s: %s", step, msg)
}

// isUnset reports whether a settings load failed only because nothing was saved.
func isUnset(err error) bool {
	return errors.Is(err, settingsstore.ErrNotFound) || errors.Is(err, settingsstore.ErrNotConfigured)
}

// PluginStatus is an installed plugin's state, for the admin.
type PluginStatus struct {
	// ID is the plugin's id.
	ID string `json:"id"`
	// Name is its display name.
	Name string `json:"name"`
	// Version is the installed version.
	Version string `json:"installed_version"`
	// State is installed (running or restarting) or failed.
	State string `json:"state"`
	// Message explains a failed state or why the provider is not usable.
	Message string `json:"message"`
}

// Plugins lists the installed plugins and their states.
func (m *Manager) Plugins() []PluginStatus {
	m.mu.Lock()
	list := make([]PluginStatus, 0, len(m.plugins))
	for id, p := range m.plugins {
		st := PluginStatus{ID: id, Name: p.name, Version: p.inst.Version, State: "installed", Message: p.problem}
		if p.refused != "" {
			st.State, st.Message = "failed", p.refused
		}
		list = append(list, st)
	}
	m.mu.Unlock()
	for i := range list {
		if list[i].State == "failed" {
			continue
		}
		if st, ok := m.rt.Status(list[i].ID); ok && st.State == pluginrt.StateFailed {
			list[i].State, list[i].Message = "failed", st.LastError
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	return list
}
