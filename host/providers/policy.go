package providers

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/magicads/r2storage/shared/settingsschema"
	"github.com/magicads/r2storage/shared/storage"
)

// The host's own settings of every provider: its storage policy. They are
// kept in the provider's settings entry, beside the provider's settings,
// and never sent to the plugin.
const (
	// KeyEnabled makes the provider a Default Storage option once it is
	// fully configured.
	KeyEnabled = "enabled"
	// KeyDeleteLocal removes a result's local file once the provider
	// stored it.
	KeyDeleteLocal = "delete_local"
)

// isHostKey reports whether k is one of the host's own settings keys.
func isHostKey(k string) bool { return k == KeyEnabled || k == KeyDeleteLocal }

// generalSection is the form section the host's settings are shown in.
const generalSection = "general"

// hostProperty is the schema of one of the host's settings.
type hostProperty struct {
	Type        string  `json:"type"`
	Title       string  `json:"title"`
	Description string  `json:"description"`
	Default     bool    `json:"default"`
	Section     string  `json:"x-section"`
	Order       float64 `json:"x-order"`
}

// hostProperties are the schemas of the host's settings of the provider
// named name, the first at x-order first. The labels use the name without
// a trailing " Storage" ("Enable Cloudflare R2", as the product's screen
// says, for "Cloudflare R2 Storage").
func hostProperties(name string, first float64) map[string]hostProperty {
	name = ShortName(name)
	return map[string]hostProperty{
		KeyEnabled: {Type: "boolean", Title: "Enable " + name,
			Description: "Makes " + name + " a selectable option in the Default Storage list once credentials are valid. It does not by itself route uploads here — you still pick the active backend.",
			Section:     generalSection, Order: first},
		KeyDeleteLocal: {Type: "boolean", Title: "Delete local copy after upload",
			Description: "When on, the local file is removed once it’s safely stored in " + name + ", reclaiming server disk space. Leave off to keep a local backup of every result.",
			Section:     generalSection, Order: first + 1},
	}
}

// ShortName is a provider's display name without a trailing " Storage":
// what the host's labels call it ("Cloudflare R2").
func ShortName(name string) string {
	if short := strings.TrimSuffix(name, " Storage"); short != "" {
		return short
	}
	return name
}

// HostSchema returns the settings schema document the host renders and
// validates for the provider named name whose own settings schema is doc:
// doc with the host's settings (enabled, delete_local) added as
// properties of the General section, shown before the provider's own
// fields (a General section is added when doc has none). A doc that
// declares enabled or delete_local itself (a plugin built before the
// host owned them) gets the host's definitions in their place.
func HostSchema(doc []byte, name string) ([]byte, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(doc, &top); err != nil || top == nil {
		return nil, fmt.Errorf("the settings schema is not a JSON object, so the host cannot add its settings to it: fix the plugin's schema/settings.schema.json: %v", err)
	}
	props := map[string]json.RawMessage{}
	if raw, ok := top["properties"]; ok {
		if err := json.Unmarshal(raw, &props); err != nil || props == nil {
			return nil, fmt.Errorf("the settings schema's properties are not a JSON object: fix the plugin's schema/settings.schema.json: %v", err)
		}
	}
	// The host's settings come first: before the lowest x-order of the
	// provider's own properties (those without one are shown last anyway).
	first := 1.0
	for k, raw := range props {
		if isHostKey(k) {
			continue
		}
		var p struct {
			Order *float64 `json:"x-order"`
		}
		if json.Unmarshal(raw, &p) == nil && p.Order != nil && *p.Order-2 < first {
			first = *p.Order - 2
		}
	}
	for k, p := range hostProperties(name, first) {
		raw, err := json.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("encoding the host's setting %s: %w", k, err)
		}
		props[k] = raw
	}
	raw, err := json.Marshal(props)
	if err != nil {
		return nil, fmt.Errorf("encoding the settings schema's properties: %w", err)
	}
	top["properties"] = raw

	var sections []json.RawMessage
	if raw, ok := top["x-sections"]; ok {
		if err := json.Unmarshal(raw, &sections); err != nil {
			return nil, fmt.Errorf("the settings schema's x-sections is not a list: fix the plugin's schema/settings.schema.json: %w", err)
		}
	}
	hasGeneral := false
	for _, raw := range sections {
		var s struct {
			ID string `json:"id"`
		}
		hasGeneral = hasGeneral || (json.Unmarshal(raw, &s) == nil && s.ID == generalSection)
	}
	if !hasGeneral {
		sections = append([]json.RawMessage{json.RawMessage(`{"id":"general","title":"General"}`)}, sections...)
		if raw, err = json.Marshal(sections); err != nil {
			return nil, fmt.Errorf("encoding the settings schema's sections: %w", err)
		}
		top["x-sections"] = raw
	}
	out, err := json.Marshal(top)
	if err != nil {
		return nil, fmt.Errorf("encoding the settings schema: %w", err)
	}
	return out, nil
}

// ownSettings puts the host's settings into p's schema: p.schema becomes
// the schema HostSchema makes of the plugin's own. A plugin whose files
// could not be read (no schema) is left as it is.
func ownSettings(p *plugin) error {
	if p.schema == nil {
		return nil
	}
	doc, err := HostSchema(p.schema.Document(), p.name)
	if err != nil {
		return fmt.Errorf("plugin %s %s: %w", p.inst.ID, p.inst.Version, err)
	}
	s, err := settingsschema.Compile(doc)
	if err != nil {
		return fmt.Errorf("plugin %s %s: its settings schema with the host's settings added: %w", p.inst.ID, p.inst.Version, err)
	}
	p.schema = s
	return nil
}

// pluginSettings returns values without the host's own settings: what the
// plugin is given (ValidateSettings, Configure).
func pluginSettings(values map[string]any) storage.Settings {
	out := make(storage.Settings, len(values))
	for k, v := range values {
		if !isHostKey(k) {
			out[k] = v
		}
	}
	return out
}

// enabledIn and deleteLocalIn read the host's settings from a provider's
// stored values (false when unset).
func enabledIn(values map[string]any) bool {
	on, _ := values[KeyEnabled].(bool)
	return on
}

func deleteLocalIn(values map[string]any) bool {
	on, _ := values[KeyDeleteLocal].(bool)
	return on
}

// completeness is a schema's x-fully-configured annotation and its
// properties' titles, read from its document.
type completeness struct {
	Complete struct {
		All []string `json:"all"`
		Any []string `json:"any"`
	} `json:"x-fully-configured"`
	Properties map[string]struct {
		Title string `json:"title"`
	} `json:"properties"`
}

// missingSettings words what values lack of what the schema's
// x-fully-configured asks for, by the properties' titles (a property
// without one by its key): "fill in Secret Access Key and Bucket, and
// Account ID or Custom Endpoint". Only the missing ones are named; ""
// when nothing is missing.
func missingSettings(s *settingsschema.Schema, values map[string]any) string {
	var doc completeness
	_ = json.Unmarshal(s.Document(), &doc) // a compiled schema is valid JSON
	title := func(k string) string {
		if t := doc.Properties[k].Title; t != "" {
			return t
		}
		return k
	}
	var all []string
	for _, k := range doc.Complete.All {
		if !isSetValue(values[k]) {
			all = append(all, title(k))
		}
	}
	anySet := len(doc.Complete.Any) == 0
	var alts []string
	for _, k := range doc.Complete.Any {
		anySet = anySet || isSetValue(values[k])
		alts = append(alts, title(k))
	}
	var parts []string
	if len(all) > 0 {
		parts = append(parts, joinAnd(all))
	}
	if !anySet {
		parts = append(parts, joinOr(alts))
	}
	switch len(parts) {
	case 0:
		return ""
	case 1:
		return "fill in " + parts[0]
	}
	return "fill in " + parts[0] + ", and " + parts[1]
}

// incompleteMessage is the problem of a provider whose settings are not
// complete: "settings incomplete: fill in …", from its schema.
func incompleteMessage(s *settingsschema.Schema, values map[string]any) string {
	missing := missingSettings(s, values)
	if missing == "" {
		missing = "fill in every setting its config page marks as required"
	}
	return "settings incomplete: " + missing
}

// joinAnd joins names as "a", "a and b" or "a, b and c".
func joinAnd(names []string) string { return join(names, "and") }

// joinOr joins names as "a", "a or b" or "a, b or c".
func joinOr(names []string) string { return join(names, "or") }

func join(names []string, last string) string {
	if len(names) <= 1 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " " + last + " " + names[len(names)-1]
}
