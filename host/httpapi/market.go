package httpapi

import (
	"errors"
	"net/http"

	"github.com/magicads/r2storage/host/marketplace"
)

// marketStatus maps the marketplace's errors.
func marketStatus(err error) int {
	var pay *marketplace.PaymentRequiredError
	var inst *marketplace.InstallError
	switch {
	case errors.As(err, &pay):
		return http.StatusPaymentRequired
	case errors.Is(err, marketplace.ErrUnknownPlugin), errors.Is(err, marketplace.ErrNotInstalled):
		return http.StatusNotFound
	case errors.Is(err, marketplace.ErrNoCatalog):
		return http.StatusConflict
	case errors.Is(err, marketplace.ErrInvalidReceipt):
		return http.StatusUnprocessableEntity
	case errors.Is(err, marketplace.ErrCatalogStale), errors.Is(err, marketplace.ErrCatalogExpired), errors.Is(err, marketplace.ErrCatalogUnavailable):
		return http.StatusBadGateway // the marketplace serves an index this host must refuse
	case errors.Is(err, marketplace.ErrDowngrade), errors.Is(err, marketplace.ErrBusyElsewhere):
		return http.StatusConflict
	case errors.As(err, &inst):
		return http.StatusUnprocessableEntity
	}
	return http.StatusInternalServerError
}

func (a *API) marketError(w http.ResponseWriter, err error) {
	var pay *marketplace.PaymentRequiredError
	if errors.As(err, &pay) {
		writeJSON(w, http.StatusPaymentRequired, map[string]string{"error": pay.Message, "checkout_url": pay.CheckoutURL})
		return
	}
	status := marketStatus(err)
	if status == http.StatusInternalServerError {
		a.opts.Logger.Error("marketplace call failed", "error", err)
	}
	writeError(w, status, err.Error())
}

func (a *API) listPlugins(w http.ResponseWriter, r *http.Request) {
	if a.market == nil {
		writeJSON(w, http.StatusOK, map[string]any{"plugins": a.providers.Plugins()})
		return
	}
	out := map[string]any{}
	cards, err := a.market.Cards(r.Context())
	if status := marketStatus(err); status == http.StatusBadGateway {
		// The catalog is unreachable or refused (stale, expired, bad
		// signature): installed plugins stay listed, with the cause.
		out["catalog_error"] = err.Error()
		cards, err = a.market.InstalledCards(r.Context())
	}
	if err != nil {
		a.marketError(w, err)
		return
	}
	if cards == nil {
		cards = []marketplace.Card{}
	}
	out["plugins"] = cards
	writeJSON(w, http.StatusOK, out)
}

func (a *API) installPlugin(w http.ResponseWriter, r *http.Request) {
	v, err := a.market.Install(r.Context(), r.PathValue("id"))
	if err != nil {
		a.marketError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"installed_version": v})
}

func (a *API) uninstallPlugin(w http.ResponseWriter, r *http.Request) {
	if err := a.market.Uninstall(r.Context(), r.PathValue("id")); err != nil {
		a.marketError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "uninstalled"})
}

func (a *API) purchasePlugin(w http.ResponseWriter, r *http.Request) {
	url, err := a.market.CheckoutURL(r.Context(), r.PathValue("id"))
	if err != nil {
		a.marketError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"checkout_url": url})
}

func (a *API) recordPurchase(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Receipt string `json:"receipt"`
	}
	if !decode(w, r, &body) {
		return
	}
	id, err := a.market.RecordPurchase(r.Context(), body.Receipt)
	if err != nil {
		a.marketError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"plugin_id": id})
}

// needMarket answers 409 when the host runs without a marketplace.
func (a *API) needMarket(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.market == nil {
			writeError(w, http.StatusConflict, marketplace.ErrNoCatalog.Error())
			return
		}
		h(w, r)
	}
}
