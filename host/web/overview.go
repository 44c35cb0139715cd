package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
)

// OverviewPath is the Storage overview page: where results are, failed jobs,
// provider status, and the bulk offload and bring back.
const OverviewPath = "/app/admin/general/storage"

// overviewTitle is the Storage overview page's title.
const overviewTitle = "Storage overview"

// BringBackURL is the Storage overview's bring back of provider id.
func BringBackURL(id string) string { return OverviewPath + "#bring-back-" + id }

// countJSON is a number of results and their bytes.
type countJSON struct {
	Results int64 `json:"results"`
	Bytes   int64 `json:"bytes"`
}

// overviewJSON is GET /api/v1/admin/storage/overview.
type overviewJSON struct {
	Locations struct {
		LocalOnly countJSON `json:"local_only"`
		Providers []struct {
			Provider      string    `json:"provider"`
			WithLocalCopy countJSON `json:"with_local_copy"`
			ProviderOnly  countJSON `json:"provider_only"`
		} `json:"providers"`
		ReclaimedBytes int64 `json:"reclaimed_bytes"`
	} `json:"locations"`
	Jobs struct {
		Pending  int64 `json:"pending"`
		Failed   int64 `json:"failed"`
		Failures []struct {
			ID        int64  `json:"id"`
			ResultID  string `json:"result_id"`
			Provider  string `json:"provider"`
			Kind      string `json:"kind"`
			Attempts  int64  `json:"attempts"`
			LastError string `json:"last_error"`
		} `json:"failures"`
	} `json:"jobs"`
	Storage struct {
		storageJSON
		Options []struct {
			optionJSON
			Listing bool `json:"listing"`
		} `json:"options"`
	} `json:"storage"`
	ActiveBulk json.RawMessage `json:"active_bulk"`
}

// bulkRunJSON is the part of a bulk run the page renders.
type bulkRunJSON struct {
	ID        int64     `json:"id"`
	Direction string    `json:"direction"`
	Provider  string    `json:"provider"`
	State     string    `json:"state"`
	Total     countJSON `json:"total"`
	Remaining countJSON `json:"remaining"`
	// Name is the provider's display name (the page sets it).
	Name string `json:"-"`
}

// barView is one bar of the location chart.
type barView struct {
	// Label names the location; Results and Bytes are its size.
	Label          string
	Results, Bytes int64
	// Y is the bar's top; Width its length in chart units; Class its colour.
	Y, Width int
	Class    string
}

// failureView is a failed job row.
type failureView struct {
	ID                             int64
	ResultID, Provider, Name, Kind string
	Attempts                       int64
	LastError                      string
	Retry                          string
}

// overviewProvider is a provider row: status, listing and its results.
type overviewProvider struct {
	ID, Name, Status, Reason string
	Listing                  bool
	Pending, Failed          *int64
	WithLocalCopy, Only      countJSON
	// CanBringBack is true when the provider holds results.
	CanBringBack bool
}

// overviewView is the Storage overview page's data.
type overviewView struct {
	LocalOnly            countJSON
	Reclaimed            int64
	Pending, Failed      int64
	Bars                 []barView
	ChartHeight          int
	Failures             []failureView
	Providers            []overviewProvider
	Default, DefaultName string
	// CanOffload is true when Default Storage is a provider.
	CanOffload bool
	// Run is the active bulk run, nil without one.
	Run *bulkRunJSON
}

// chartWidth is the longest bar of the chart, in chart units.
const chartWidth = 400

// newOverviewView builds the page from the API's answer.
func newOverviewView(o overviewJSON) overviewView {
	names := o.Storage.names()
	for _, opt := range o.Storage.Options {
		if opt.Name != "" {
			names[opt.ID] = opt.Name
		}
	}
	name := func(id string) string {
		if n, ok := names[id]; ok {
			return n
		}
		if id == "" {
			return "Default Storage"
		}
		return id
	}
	v := overviewView{LocalOnly: o.Locations.LocalOnly, Reclaimed: o.Locations.ReclaimedBytes,
		Pending: o.Jobs.Pending, Failed: o.Jobs.Failed, Default: o.Storage.Default, DefaultName: name(o.Storage.Default)}
	v.CanOffload = v.Default != "" && v.Default != "local"
	v.Bars = append(v.Bars, barView{Label: "Local only", Results: v.LocalOnly.Results, Bytes: v.LocalOnly.Bytes, Class: "bar-local"})
	held := map[string]int{}
	for _, p := range o.Locations.Providers {
		v.Bars = append(v.Bars,
			barView{Label: name(p.Provider) + ", local copy kept", Results: p.WithLocalCopy.Results, Bytes: p.WithLocalCopy.Bytes, Class: "bar-copy"},
			barView{Label: name(p.Provider) + " only", Results: p.ProviderOnly.Results, Bytes: p.ProviderOnly.Bytes, Class: "bar-remote"})
		held[p.Provider] = len(v.Providers)
		v.Providers = append(v.Providers, overviewProvider{ID: p.Provider, Name: name(p.Provider), WithLocalCopy: p.WithLocalCopy, Only: p.ProviderOnly,
			CanBringBack: p.WithLocalCopy.Results+p.ProviderOnly.Results > 0})
	}
	var most int64
	for _, b := range v.Bars {
		most = max(most, b.Bytes)
	}
	for i := range v.Bars {
		v.Bars[i].Y = i * 28
		if most > 0 {
			v.Bars[i].Width = int(float64(v.Bars[i].Bytes) / float64(most) * chartWidth)
		}
		if v.Bars[i].Bytes > 0 && v.Bars[i].Width < 2 {
			v.Bars[i].Width = 2
		}
	}
	v.ChartHeight = len(v.Bars) * 28
	for _, opt := range o.Storage.Options {
		if opt.ID == "local" {
			continue
		}
		row := overviewProvider{ID: opt.ID, Name: name(opt.ID)}
		if i, ok := held[opt.ID]; ok {
			row = v.Providers[i]
		}
		row.Status, row.Listing, row.Pending, row.Failed = opt.Status, opt.Listing, opt.Pending, opt.Failed
		if i, ok := held[opt.ID]; ok {
			v.Providers[i] = row
		} else {
			held[opt.ID] = len(v.Providers)
			v.Providers = append(v.Providers, row)
		}
	}
	for _, u := range o.Storage.Unavailable {
		i, ok := held[u.ID]
		if !ok {
			held[u.ID] = len(v.Providers)
			v.Providers = append(v.Providers, overviewProvider{ID: u.ID, Name: name(u.ID)})
			i = len(v.Providers) - 1
		}
		v.Providers[i].Status, v.Providers[i].Reason = "unavailable", u.Reason
	}
	for _, f := range o.Jobs.Failures {
		fv := failureView{ID: f.ID, ResultID: f.ResultID, Provider: f.Provider, Name: name(f.Provider), Kind: f.Kind, Attempts: f.Attempts, LastError: f.LastError}
		v.Failures = append(v.Failures, fv)
	}
	if len(o.ActiveBulk) > 0 && string(o.ActiveBulk) != "null" {
		var run bulkRunJSON
		if json.Unmarshal(o.ActiveBulk, &run) == nil && run.ID > 0 {
			run.Name = name(run.Provider)
			v.Run = &run
		}
	}
	return v
}

// Percent is how much of the run is handled, 0 to 100.
func (r *bulkRunJSON) Percent() int64 {
	if r.Total.Results <= 0 {
		return 100
	}
	return (r.Total.Results - r.Remaining.Results) * 100 / r.Total.Results
}

// Handled counts the run's results handled so far.
func (r *bulkRunJSON) Handled() int64 { return r.Total.Results - r.Remaining.Results }

// overviewPage renders the Storage overview from
// GET /api/v1/admin/storage/overview.
func (h *handler) overviewPage(w http.ResponseWriter, r *http.Request) {
	p := page{Name: "overview", Title: overviewTitle, Nav: "storage",
		Crumbs: append(slices.Clip(settingsCrumbs), crumb{storageTitle, StoragePath}, crumb{overviewTitle, ""})}
	var body overviewJSON
	if err := h.apiGet(w, r, "/api/v1/admin/storage/overview", &body); err != nil {
		h.renderAPIError(w, r, p, err)
		return
	}
	p.Problem = problemOf(&body.Storage.storageJSON)
	p.Data = newOverviewView(body)
	h.render(w, r, http.StatusOK, "overview", p)
}

// onlyThere reads, per provider id, how many results live only in it;
// nil when the overview cannot be read.
func (h *handler) onlyThere(w http.ResponseWriter, r *http.Request) map[string]int64 {
	var body overviewJSON
	if err := h.apiGet(w, r, "/api/v1/admin/storage/overview", &body); err != nil {
		h.opts.Logger.Debug("the plugins page could not read the storage overview", "error", err)
		return nil
	}
	out := map[string]int64{}
	for _, p := range body.Locations.Providers {
		out[p.Provider] = p.ProviderOnly.Results
	}
	return out
}

// withOnlyThere makes the Uninstall confirmation tell the truth about the
// n results that live only in the card's provider.
func (v cardView) withOnlyThere(n int64, known bool) cardView {
	if !v.Installed || v.CTA != "uninstall" {
		return v
	}
	if !known {
		v.UninstallConfirm += " How many results live only in it cannot be read now; open the Storage overview to check before uninstalling."
		v.BringBack = BringBackURL(v.ID)
		return v
	}
	if n == 0 {
		return v
	}
	what := strconv.FormatInt(n, 10) + " results live"
	if n == 1 {
		what = "1 result lives"
	}
	v.UninstallConfirm = fmt.Sprintf("Uninstall %s? %s only in %s. They keep serving from its public URL after the uninstall, "+
		"but deleting them later needs the plugin installed again. Bring them back to local first to keep them on this server. "+
		"If it is the Default Storage, new results go back to the local server; nothing in the bucket is deleted and its settings are kept.",
		v.Name, what, v.Name)
	v.OnlyThere, v.BringBack = n, BringBackURL(v.ID)
	return v
}
