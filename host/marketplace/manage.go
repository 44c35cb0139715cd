package marketplace

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/magicads/r2storage/host/providers"
	"github.com/magicads/r2storage/host/settingsstore"
	"github.com/magicads/r2storage/shared/catalog"
)

// Uninstall stops the plugin (Default Storage goes back to local first),
// runs its down migrations, drops its database namespace (PostgreSQL schema
// and role, or SQLite file) and removes its files and settings entry. Its
// settings are kept aside for a later install; offloaded results keep
// serving from their public URLs; the only bucket objects deleted are those
// that cut or failed uploads may have stored for results that stay local
// (providers.Manager.Remove drains the provider first).
func (m *Marketplace) Uninstall(ctx context.Context, id string) (err error) {
	op, unchanged := "uninstall", false
	defer func() { m.count(&op, &unchanged, err) }()
	unlock, err := m.lockAll(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	m.prov.Sync(ctx) // an install or uninstall through another node a moment ago
	inst, ok := m.prov.Installed(id)
	if !ok {
		return fmt.Errorf("%w: %q", ErrNotInstalled, id)
	}
	values, err := m.settings.Load(ctx, providers.EntryName(id))
	switch {
	case err == nil:
		if err := m.settings.Save(ctx, retainedEntry(id), "host", values); err != nil {
			return fmt.Errorf("keeping the settings of %s: %w", id, err)
		}
	case errors.Is(err, settingsstore.ErrNotFound), errors.Is(err, settingsstore.ErrNotConfigured):
	default:
		m.log.Warn("the plugin's settings cannot be read and will not be kept", "plugin", id, "error", err)
	}
	if err := m.prov.Remove(ctx, id); err != nil {
		return err
	}
	ns := m.prov.Namespaces()
	if inst.Dir != "" {
		// The down migrations can only touch the namespace, which is dropped
		// next whatever they do: a failing one does not stop the uninstall.
		if err := ns.Down(ctx, id, providers.MigrationsFS(inst.Dir)); err != nil {
			m.log.Warn("the plugin's down migrations failed; its namespace is dropped anyway", "plugin", id, "error", err)
		}
	}
	if err := ns.Drop(ctx, id); err != nil {
		return fmt.Errorf("uninstalling %s: removing its database namespace: %w", id, err)
	}
	if err := m.settings.Delete(ctx, providers.EntryName(id)); err != nil {
		return fmt.Errorf("uninstalling %s: removing its settings entry: %w", id, err)
	}
	if err := os.RemoveAll(filepath.Join(m.cfg.PluginsDir, id)); err != nil {
		return fmt.Errorf("uninstalling %s: removing its files: %w", id, err)
	}
	m.log.Info("plugin uninstalled", "plugin", id, "version", inst.Version)
	return nil
}

// RecordPurchase records a purchase from a receipt signed by a trusted
// marketplace key.
func (m *Marketplace) RecordPurchase(ctx context.Context, receipt string) (string, error) {
	r, err := catalog.VerifyReceipt(receipt, m.cfg.TrustedKeys)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalidReceipt, err)
	}
	_, err = m.db.ExecContext(ctx, `INSERT INTO purchases (plugin_id, buyer, receipt) VALUES ($1, $2, $3)
		ON CONFLICT (plugin_id) DO UPDATE SET buyer = excluded.buyer, receipt = excluded.receipt`, r.PluginID, r.Buyer, receipt)
	if err != nil {
		return "", fmt.Errorf("recording the purchase: %w", err)
	}
	return r.PluginID, nil
}

// CheckoutURL returns where plugin id is bought.
func (m *Marketplace) CheckoutURL(ctx context.Context, id string) (string, error) {
	idx, err := m.fetch(ctx)
	if err != nil {
		return "", err
	}
	p, ok := findPlugin(idx, id)
	if !ok {
		return "", fmt.Errorf("%w: %q", ErrUnknownPlugin, id)
	}
	return p.CheckoutURL, nil
}

// Card is one marketplace card, as GET /api/v1/admin/plugins shows it.
type Card struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description"`
	// Version is the newest catalog version this host can run. For an
	// installed plugin it is never older than InstalledVersion (it is the
	// installed version when the catalog offers nothing newer), so a
	// Version other than InstalledVersion always means an update.
	Version          string `json:"version"`
	InstalledVersion string `json:"installed_version"`
	// State is not_installed, installed or failed.
	State string `json:"state"`
	// CTA is install, buy or uninstall.
	CTA string `json:"cta"`
	// Reinstall is true for an installed plugin whose install record failed
	// its check (changed in the database, or written by an older host): it
	// is not launched until installed again, which the card offers.
	Reinstall    bool   `json:"reinstall"`
	Message      string `json:"message"`
	Price        string `json:"price"`
	CheckoutURL  string `json:"checkout_url"`
	ConfigureURL string `json:"configure_url"`
	// Purchased is true when a paid plugin was bought on this host (a
	// receipt is recorded); the console's card says "Purchased".
	Purchased bool `json:"purchased,omitempty"`
}

// Cards lists the catalog's plugins and the installed ones with what each
// card offers. Without a catalog, only installed plugins are listed.
func (m *Marketplace) Cards(ctx context.Context) ([]Card, error) {
	idx, err := m.fetch(ctx)
	if err != nil && !errors.Is(err, ErrNoCatalog) {
		return nil, err
	}
	return m.cards(ctx, idx)
}

// InstalledCards lists the installed plugins' cards without the catalog:
// what the console shows when the catalog is unreachable or refused, so
// installed plugins can still be configured and uninstalled.
func (m *Marketplace) InstalledCards(ctx context.Context) ([]Card, error) {
	return m.cards(ctx, nil)
}

// cards builds the cards of idx's plugins (none when nil) and of every
// installed plugin.
func (m *Marketplace) cards(ctx context.Context, idx *catalog.Index) ([]Card, error) {
	// What other nodes installed or removed a moment ago counts here too.
	m.prov.Sync(ctx)
	installed := map[string]providers.PluginStatus{}
	for _, st := range m.prov.Plugins() {
		installed[st.ID] = st
	}
	var cards []Card
	if idx != nil {
		for _, p := range idx.Plugins {
			c := Card{ID: p.ID, Name: p.Name, Description: p.Description, CheckoutURL: p.CheckoutURL, State: "not_installed"}
			if v, _, err := m.pick(p); err == nil {
				c.Version = v.Version
			}
			if p.Pricing.Price != nil {
				c.Price = p.Pricing.Price.Amount + " " + p.Pricing.Price.Currency
			}
			if p.Pricing.Model == "paid" {
				bought, err := m.purchased(ctx, p.ID)
				if err != nil {
					return nil, err
				}
				c.Purchased = bought
			}
			if st, ok := installed[p.ID]; ok {
				m.fill(&c, st)
				delete(installed, p.ID)
			} else {
				ok, err := m.entitled(ctx, p)
				if err != nil {
					return nil, err
				}
				if ok {
					c.CTA = "install"
				} else {
					c.CTA = "buy"
					if p.Pricing.FreeForExtendedLicense {
						c.Message = ExtendedOnlyMessage
					}
				}
			}
			cards = append(cards, c)
		}
	}
	for _, st := range installed {
		c := Card{ID: st.ID, Name: st.Name}
		m.fill(&c, st)
		cards = append(cards, c)
	}
	return cards, nil
}

// fill sets an installed plugin's card fields.
func (m *Marketplace) fill(c *Card, st providers.PluginStatus) {
	c.InstalledVersion, c.State, c.CTA = st.Version, st.State, "uninstall"
	c.Reinstall = !m.prov.Verified(st.ID)
	if !c.Reinstall && c.Version != "" && !newer(c.Version, st.Version) {
		// Nothing newer: never offer an older version. (A refused record's
		// version is not trusted, so its card offers the catalog's.)
		c.Version = st.Version
	}
	c.ConfigureURL = "/app/admin/general/plugins/" + st.ID
	if st.State == "failed" || c.Message == "" {
		c.Message = st.Message
	}
}
