package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/magicads/r2storage/shared/catalog"
)

// maxAPIBody caps an in-process API answer.
const maxAPIBody = 16 << 20

// apiError is a non-2xx API answer: its status and its own error words.
type apiError struct {
	Status  int
	Message string
}

// Error returns the host's message.
func (e *apiError) Error() string { return e.Message }

// dropHeaders are request headers never forwarded to the in-process API
// call: they would change the shape or encoding of its answer.
var dropHeaders = []string{"Accept-Encoding", "Range", "If-Range", "If-Match", "If-None-Match",
	"If-Modified-Since", "If-Unmodified-Since", "Content-Length", "Content-Type", "Content-Encoding", "Transfer-Encoding"}

// apiGet calls GET path on Options.API in-process as the visitor (same
// context, cookies, Authorization and other headers) and decodes its JSON
// answer into v. A non-2xx answer is an *apiError with the API's status and
// message. Cookies the API sets (a refreshed session) are passed on to w.
func (h *handler) apiGet(w http.ResponseWriter, r *http.Request, path string, v any) error {
	if h.opts.API == nil {
		return &apiError{Status: http.StatusInternalServerError, Message: "the console has no API to read from (web.Options.API is nil)"}
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, path, nil)
	if err != nil {
		return fmt.Errorf("building the API request %s: %w", path, err)
	}
	req.Header = r.Header.Clone()
	for _, k := range dropHeaders {
		req.Header.Del(k)
	}
	req.Header.Set("Accept", "application/json")
	req.Host, req.RemoteAddr, req.TLS, req.Proto, req.ProtoMajor, req.ProtoMinor = r.Host, r.RemoteAddr, r.TLS, r.Proto, r.ProtoMajor, r.ProtoMinor
	req.RequestURI = path
	rec := &capture{header: http.Header{}}
	h.opts.API.ServeHTTP(rec, req)
	for _, c := range rec.header.Values("Set-Cookie") {
		w.Header().Add("Set-Cookie", c)
	}
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	if rec.overflow {
		return &apiError{Status: http.StatusBadGateway, Message: fmt.Sprintf("the API answer to GET %s is larger than %d bytes", path, maxAPIBody)}
	}
	if status < 200 || status > 299 {
		return &apiError{Status: status, Message: errorMessage(status, rec.body.Bytes())}
	}
	dec := json.NewDecoder(bytes.NewReader(rec.body.Bytes()))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return &apiError{Status: http.StatusBadGateway, Message: fmt.Sprintf("the API answer to GET %s is not the expected JSON: %v", path, err)}
	}
	return nil
}

// errorMessage returns the "error" of a JSON error body, else the body's
// text, else the status text.
func errorMessage(status int, body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	if s := strings.TrimSpace(string(body)); s != "" && len(s) < 1000 {
		return s
	}
	return fmt.Sprintf("%d %s", status, http.StatusText(status))
}

// capture is the in-process API call's response writer.
type capture struct {
	header   http.Header
	status   int
	body     bytes.Buffer
	overflow bool
}

// Header returns the answer's headers.
func (c *capture) Header() http.Header { return c.header }

// WriteHeader records the first status.
func (c *capture) WriteHeader(status int) {
	if c.status == 0 {
		c.status = status
	}
}

// Write buffers the body up to maxAPIBody.
func (c *capture) Write(p []byte) (int, error) {
	c.WriteHeader(http.StatusOK)
	if c.body.Len()+len(p) > maxAPIBody {
		c.overflow = true
		return 0, errors.New("web: API answer too large")
	}
	return c.body.Write(p)
}

// storageJSON is GET /api/v1/admin/storage. Fields added by later hosts
// are optional: a page renders nothing for one that is absent.
type storageJSON struct {
	Default string       `json:"default"`
	Options []optionJSON `json:"options"`
	// Unavailable lists the installed providers that are not options, and
	// why; nil when the host does not say (an older host).
	Unavailable []unavailableJSON `json:"unavailable"`
	// Problem is set when the Default Storage is failing or not an option.
	Problem *problemJSON `json:"problem"`
	Warning string       `json:"warning"`
}

// optionJSON is one Default Storage option and its health.
type optionJSON struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Status      string `json:"status"`
	LastError   string `json:"last_error"`
	LastErrorAt string `json:"last_error_at"`
	Pending     *int64 `json:"pending"`
	Failed      *int64 `json:"failed"`
}

// unavailableJSON is an installed provider that is not a Default Storage
// option, with the reason and how to fix it.
type unavailableJSON struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Reason string `json:"reason"`
	Fix    string `json:"fix"`
	FixURL string `json:"fix_url"`
}

// problemJSON says why the Default Storage cannot take results.
type problemJSON struct {
	Provider string `json:"provider"`
	Name     string `json:"name"`
	Status   string `json:"status"`
	Cause    string `json:"cause"`
	Fix      string `json:"fix"`
	Message  string `json:"message"`
	FixURL   string `json:"fix_url"`
}

// names maps provider ids to the names the storage API gives them, with
// "local" always known.
func (s *storageJSON) names() map[string]string {
	out := map[string]string{"local": localName}
	if s == nil {
		return out
	}
	for _, o := range s.Options {
		if o.Name != "" {
			out[o.ID] = o.Name
		}
	}
	for _, u := range s.Unavailable {
		if u.Name != "" {
			out[u.ID] = u.Name
		}
	}
	if p := s.Problem; p != nil && p.Provider != "" && p.Name != "" {
		if _, ok := out[p.Provider]; !ok {
			out[p.Provider] = p.Name
		}
	}
	return out
}

// localName is the name of the local storage.
const localName = "Local server (this machine)"

// storageOption is one Default Storage choice and its health.
type storageOption struct {
	ID, Name string
	Selected bool
	// Status is ok, degraded or failing ("" when the host does not say).
	Status      string
	LastError   string
	LastErrorAt string
	// Pending and Failed are the provider's job counts (nil when the host
	// does not say).
	Pending, Failed *int64
}

// CanRetry is true when the provider has failed jobs to retry.
func (o storageOption) CanRetry() bool { return o.Failed != nil && *o.Failed > 0 }

// HasHealth is true when the host reported anything about the option's
// health.
func (o storageOption) HasHealth() bool {
	return o.Status != "" || o.LastError != "" || o.Pending != nil || o.Failed != nil
}

// storageView is the Default Storage page's data.
type storageView struct {
	Options []storageOption
	// Providers are the options that are providers (not local), for the
	// health table.
	Providers   []storageOption
	Unavailable []unavailableJSON
	Default     string
	Warning     string
}

// newStorageView lists the options with the current default selected; a
// default that is not among the options is still shown, marked.
func newStorageView(s storageJSON) storageView {
	v := storageView{Default: s.Default, Warning: s.Warning, Unavailable: s.Unavailable}
	names := s.names()
	found := false
	for _, o := range s.Options {
		name := o.Name
		if name == "" {
			name = o.ID
		}
		sel := o.ID == s.Default
		found = found || sel
		opt := storageOption{ID: o.ID, Name: name, Selected: sel, Status: o.Status, LastError: o.LastError,
			LastErrorAt: o.LastErrorAt, Pending: o.Pending, Failed: o.Failed}
		v.Options = append(v.Options, opt)
		if o.ID != "local" && opt.HasHealth() {
			v.Providers = append(v.Providers, opt)
		}
	}
	if !found && s.Default != "" {
		name, why := s.Default, "enable and fully configure it"
		if n, ok := names[s.Default]; ok {
			name = n
		}
		for _, u := range s.Unavailable {
			if u.ID == s.Default && u.Reason != "" {
				why = u.Reason
			}
		}
		v.Options = append(v.Options, storageOption{ID: s.Default, Name: name + " (not available: " + why + ")", Selected: true})
	}
	return v
}

// cardJSON is one plugin of GET /api/v1/admin/plugins.
type cardJSON struct {
	ID               string `json:"id"`
	Name             string `json:"name"`
	Description      string `json:"description"`
	Version          string `json:"version"`
	InstalledVersion string `json:"installed_version"`
	State            string `json:"state"`
	CTA              string `json:"cta"`
	Reinstall        bool   `json:"reinstall"`
	Message          string `json:"message"`
	Price            string `json:"price"`
	CheckoutURL      string `json:"checkout_url"`
	ConfigureURL     string `json:"configure_url"`
	// Purchased is true when this host bought the plugin.
	Purchased bool `json:"purchased"`
}

// cardView is one marketplace card.
type cardView struct {
	cardJSON
	// PriceLabel is the price, "Free" or "Paid".
	PriceLabel string
	// Installed is true for an installed (or failed) plugin.
	Installed bool
	// UpdateTo is a catalog version newer than the installed one, or "".
	UpdateTo string
	// Health is the provider's storage health, when it is not fine.
	Health *cardHealth
	// UninstallConfirm is what the Uninstall confirmation says.
	UninstallConfirm string
	// OnlyThere counts the results that live only in the provider.
	OnlyThere int64
	// BringBack is the Storage overview's bring back of the provider, ""
	// when nothing lives only there.
	BringBack string
}

// cardHealth is what a plugin card says about its provider's storage
// health: the Default Storage problem, a degraded or failing status, or why
// it is not a Default Storage option.
type cardHealth struct {
	// Status is failing, degraded or unavailable.
	Status string
	// Label is the status as the card shows it.
	Label string
	// Text is the cause; Fix what to do, with FixURL to do it.
	Text, Fix, FixURL string
}

// newCardView fills in what the card shows beyond the API's fields.
func newCardView(c cardJSON) cardView {
	v := cardView{cardJSON: c, Installed: c.State == "installed" || c.State == "failed"}
	if v.Name == "" {
		v.Name = c.ID
	}
	switch {
	case c.Purchased:
		v.PriceLabel = "Purchased"
	case c.Price != "":
		v.PriceLabel = c.Price
	case c.CTA == "buy":
		v.PriceLabel = "Paid"
	default:
		v.PriceLabel = "Free"
	}
	if v.Installed && v.ConfigureURL == "" {
		v.ConfigureURL = PluginsPath + "/" + c.ID
	}
	if v.Installed && c.CTA == "uninstall" && !c.Reinstall && c.Version != "" && c.InstalledVersion != "" {
		// Only a newer version is an update (semver precedence; an
		// unparsable version is never offered): never "Update to" an older one.
		if cmp, err := catalog.CompareVersions(c.Version, c.InstalledVersion); err == nil && cmp > 0 {
			v.UpdateTo = c.Version
		}
	}
	v.UninstallConfirm = "Uninstall " + v.Name + "? If it is the Default Storage, new results go back to the local server. " +
		"Results already stored by it keep serving from their public URLs, and nothing in the bucket is deleted. " +
		"Its settings are kept for a later install."
	return v
}

// withHealth adds the storage health of the card's provider: the Default
// Storage problem first, else a degraded or failing option, else why it is
// not an option.
func (v cardView) withHealth(s *storageJSON) cardView {
	if s == nil || !v.Installed {
		return v
	}
	if p := s.Problem; p != nil && p.Provider == v.ID {
		status := p.Status
		if status == "" {
			status = "failing"
		}
		text := p.Cause
		if text == "" {
			text = p.Message
		}
		v.Health = &cardHealth{Status: status, Label: statusLabel(status) + " (Default Storage)", Text: text, Fix: p.Fix, FixURL: p.FixURL}
		return v
	}
	for _, o := range s.Options {
		if o.ID == v.ID && (o.Status == "degraded" || o.Status == "failing") {
			text := o.LastError
			if text == "" {
				text = "uploads to it are failing"
			}
			v.Health = &cardHealth{Status: o.Status, Label: statusLabel(o.Status), Text: text,
				Fix: "See Default Storage for its queued and failed uploads.", FixURL: StoragePath}
			return v
		}
	}
	for _, u := range s.Unavailable {
		if u.ID == v.ID {
			v.Health = &cardHealth{Status: "unavailable", Label: "Not a Default Storage option", Text: u.Reason, Fix: u.Fix, FixURL: u.FixURL}
			return v
		}
	}
	return v
}

// statusLabel is a storage status as the console shows it.
func statusLabel(s string) string {
	switch s {
	case "ok":
		return "OK"
	case "degraded":
		return "Degraded"
	case "failing":
		return "Failing"
	case "":
		return "Unknown"
	}
	return sentence(s)
}

// settingsJSON is GET /api/v1/admin/plugins/{id}/settings.
type settingsJSON struct {
	Schema     json.RawMessage `json:"schema"`
	Values     map[string]any  `json:"values"`
	SecretsSet []string        `json:"secrets_set"`
	Problem    string          `json:"problem"`
}

// resultJSON is one result of GET /api/v1/results.
type resultJSON struct {
	ID        string      `json:"id"`
	Path      string      `json:"path"`
	Storage   string      `json:"storage"`
	URL       string      `json:"url"`
	Size      json.Number `json:"size"`
	SHA256    string      `json:"sha256"`
	CreatedAt time.Time   `json:"created_at"`
	// ObjectKey and Bucket say where an offloaded result is stored.
	ObjectKey string `json:"object_key"`
	Bucket    string `json:"bucket"`
	// LocalReason says why a result is local while Default Storage is a
	// provider.
	LocalReason string `json:"local_reason"`
	// LocalPresent says whether a local copy exists (nil when the host
	// does not say).
	LocalPresent *bool `json:"local_present"`
	// Upload is the result's pending or failed offload, if any.
	Upload *uploadJSON `json:"upload"`
}

// uploadJSON is a result's offload job.
type uploadJSON struct {
	// State is queued, retrying or failed.
	State         string `json:"state"`
	Provider      string `json:"provider"`
	Error         string `json:"error"`
	Attempts      *int64 `json:"attempts"`
	NextAttemptAt string `json:"next_attempt_at"`
}

// resultView is one result card.
type resultView struct {
	resultJSON
	// StorageName is the name of where the result lives.
	StorageName string
	// Offloaded is true when the result lives on a provider.
	Offloaded bool
	// Upload says what happened to its offload, if anything did.
	Upload *uploadView
	// LocalCopy says whether a local copy is kept and served.
	LocalCopy string
	// DeleteConfirm is what the Delete confirmation says will happen.
	DeleteConfirm string
}

// uploadView is the sentence a result card shows about its offload.
type uploadView struct {
	// State is queued, retrying or failed.
	State string
	// Text says what happened and what happens next.
	Text string
	// NextAttemptAt is when it is retried (RFC 3339), if known.
	NextAttemptAt string
	// WaitsForAdmin is true when nothing is retried until the settings
	// change or an admin clicks Retry.
	WaitsForAdmin bool
}

// providerInfo is what the results page knows about the providers.
type providerInfo struct {
	// names maps ids to names.
	names map[string]string
	// usable are the Default Storage options; unusable the installed
	// providers that are not, with why.
	usable   map[string]bool
	unusable map[string]string
	// known is true when the host lists unusable providers too, so a
	// provider in neither list is not installed.
	known bool
}

// newProviderInfo reads what the storage API says about the providers;
// s may be nil.
func newProviderInfo(s *storageJSON) providerInfo {
	pi := providerInfo{names: s.names(), usable: map[string]bool{}, unusable: map[string]string{}}
	if s == nil {
		return pi
	}
	for _, o := range s.Options {
		pi.usable[o.ID] = true
	}
	for _, u := range s.Unavailable {
		pi.unusable[u.ID] = u.Reason
	}
	pi.known = s.Unavailable != nil
	return pi
}

// name returns a provider's name, or its id when unknown.
func (pi providerInfo) name(id string) string {
	if n := pi.names[id]; n != "" {
		return n
	}
	return id
}

// newResultView fills in what a result card says beyond the API's fields.
func newResultView(r resultJSON, pi providerInfo) resultView {
	v := resultView{resultJSON: r, StorageName: pi.name(r.Storage), Offloaded: r.Storage != "" && r.Storage != "local"}
	if u := r.Upload; u != nil {
		v.Upload = newUploadView(*u, pi)
	}
	switch {
	case r.LocalPresent == nil:
	case !v.Offloaded && *r.LocalPresent && v.Upload != nil:
		v.LocalCopy = "The local copy is kept and served from this server meanwhile."
	case v.Offloaded && *r.LocalPresent:
		v.LocalCopy = "A local copy is kept on this server."
	case v.Offloaded:
		v.LocalCopy = "No local copy is kept on this server."
	case !*r.LocalPresent:
		v.LocalCopy = "Its local file is missing."
	}
	v.DeleteConfirm = deleteConfirm(r, v, pi)
	return v
}

// newUploadView words a result's offload job.
func newUploadView(u uploadJSON, pi providerInfo) *uploadView {
	name := pi.name(u.Provider)
	if name == "" {
		name = "the Default Storage"
	}
	why := ""
	if u.Error != "" {
		why = ": " + u.Error
	}
	attempt := ""
	if u.Attempts != nil && *u.Attempts > 0 {
		attempt = fmt.Sprintf(" (attempt %d)", *u.Attempts)
	}
	v := &uploadView{State: u.State, NextAttemptAt: u.NextAttemptAt}
	switch u.State {
	case "failed":
		v.WaitsForAdmin = true
		v.Text = "The upload to " + name + " failed" + attempt + why + ". It is not retried until its settings change or you click Retry on Default Storage."
	case "retrying":
		v.Text = "The upload to " + name + " failed" + attempt + why + ". It will be retried"
	default:
		if u.Error != "" {
			v.Text = "The upload to " + name + " failed" + attempt + why + ". It will be retried"
		} else {
			v.Text = "Queued for upload to " + name + ". It will be tried"
		}
	}
	return v
}

// deleteConfirm says what deleting a result will do.
func deleteConfirm(r resultJSON, v resultView, pi providerInfo) string {
	q := "Delete " + r.Path + "? "
	if !v.Offloaded {
		msg := q + "Its file is deleted from this server"
		if u := r.Upload; u != nil {
			msg += " and its pending upload to " + pi.name(u.Provider) + " is dropped"
		}
		return msg + ". This cannot be undone."
	}
	name := v.StorageName
	where := name
	if r.Bucket != "" {
		where += " (bucket " + r.Bucket + ")"
	}
	local := r.LocalPresent != nil && *r.LocalPresent
	switch {
	case pi.usable[r.Storage]:
		msg := q + "Its object is deleted from " + where
		if local {
			msg += ", and its local copy with it"
		}
		return msg + ". This cannot be undone."
	case pi.unusable[r.Storage] != "" || pi.known:
		why := "the provider is not installed"
		then := "The delete runs if you install " + name + " again"
		if reason := pi.unusable[r.Storage]; reason != "" {
			why = "the provider cannot be used right now (" + reason + ")"
			then = "The delete runs once it can"
		}
		if local {
			then += ", and its local copy goes with it"
		}
		return q + "It leaves the list now; deleting its object from " + where + " is queued: " + why + ". " + then + "."
	}
	return q + "Its object is deleted from " + where + " (queued if the provider cannot be reached now). This cannot be undone."
}

// resultsView is the results page's data.
type resultsView struct {
	Results []resultView
	// Paged is true past the first page.
	Paged bool
	// NextURL is the next page, if any.
	NextURL string
}

// humanSize formats a byte count.
func humanSize(n json.Number) string {
	b, err := n.Int64()
	if err != nil {
		return n.String()
	}
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := int64(unit), 0
	for x := b / unit; x >= unit; x /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}
