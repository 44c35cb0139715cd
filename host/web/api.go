package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/magicads/r2storage/host/catalog"
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

// storageJSON is GET /api/v1/admin/storage.
type storageJSON struct {
	Default string `json:"default"`
	Options []struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"options"`
	Warning string `json:"warning"`
}

// storageOption is one Default Storage choice.
type storageOption struct {
	ID, Name string
	Selected bool
}

// storageView is the Default Storage page's data.
type storageView struct {
	Options []storageOption
	Default string
	Warning string
}

// newStorageView lists the options with the current default selected; a
// default that is not among the options is still shown, marked.
func newStorageView(s storageJSON) storageView {
	v := storageView{Default: s.Default, Warning: s.Warning}
	found := false
	for _, o := range s.Options {
		name := o.Name
		if name == "" {
			name = o.ID
		}
		sel := o.ID == s.Default
		found = found || sel
		v.Options = append(v.Options, storageOption{ID: o.ID, Name: name, Selected: sel})
	}
	if !found && s.Default != "" {
		v.Options = append(v.Options, storageOption{ID: s.Default, Name: s.Default + " (not available: enable and fully configure it)", Selected: true})
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
}

// newCardView fills in what the card shows beyond the API's fields.
func newCardView(c cardJSON) cardView {
	v := cardView{cardJSON: c, Installed: c.State == "installed" || c.State == "failed"}
	if v.Name == "" {
		v.Name = c.ID
	}
	switch {
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
	return v
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
}

// resultsView is the results page's data.
type resultsView struct {
	Results []resultJSON
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
