package marketplace

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/magicads/r2storage/shared/catalog"
)

// Errors of a catalog or a version the host refuses so that nothing rolls
// back. The API maps them to status codes; errors.Is finds them inside an
// InstallError.
var (
	// ErrCatalogStale: the index's serial is lower than one already accepted.
	ErrCatalogStale = errors.New("the catalog is stale or replayed")
	// ErrCatalogExpired: the index's expiry has passed.
	ErrCatalogExpired = errors.New("catalog index expired")
	// ErrDowngrade: the catalog's version is older than the installed one.
	ErrDowngrade = errors.New("an installed plugin is never replaced by an older version")
)

// catalogSerialName is the catalog_serial row of the --catalog marketplace.
// There is one row for the host, whatever the URL: a mirror or an old copy
// of the marketplace at another address is as stale as a replay.
const catalogSerialName = "marketplace"

// accept checks that a verified index is fresh and records its serial:
// an expired index is refused, then one whose serial is lower than the
// highest any node on this database has accepted. The same serial again is
// fine; a higher one raises the bar for every node. A refused index writes
// nothing.
func (m *Marketplace) accept(ctx context.Context, idx *catalog.Index) error {
	if now := time.Now(); idx.Expired(now) {
		err := fmt.Errorf("%w at %s (serial %d; this host's clock reads %s): the marketplace must re-sign it (scripts/catalog); if this host's clock is wrong, correct it",
			ErrCatalogExpired, idx.Expires.UTC().Format(time.RFC3339), idx.Serial, now.UTC().Format(time.RFC3339))
		m.log.Warn("catalog index refused", "catalog", m.cfg.CatalogURL, "error", err)
		return err
	}
	accepted, err := m.acceptedSerial(ctx)
	if err != nil {
		return err
	}
	if idx.Serial > accepted {
		// Raise, never lower: another node may have raised it meanwhile.
		if _, err := m.db.ExecContext(ctx, `INSERT INTO catalog_serial (name, serial) VALUES ($1, $2)
			ON CONFLICT (name) DO UPDATE SET serial = excluded.serial, accepted_at = CURRENT_TIMESTAMP
			WHERE catalog_serial.serial < excluded.serial`, catalogSerialName, idx.Serial); err != nil {
			return fmt.Errorf("recording the catalog index serial: %w", err)
		}
		if accepted, err = m.acceptedSerial(ctx); err != nil {
			return err
		}
	}
	if idx.Serial < accepted {
		err := fmt.Errorf("catalog index serial %d is older than %d already accepted: %w; check that --catalog points at the marketplace's current index (a mirror, proxy or cache may be serving an old copy)",
			idx.Serial, accepted, ErrCatalogStale)
		m.log.Warn("catalog index refused", "catalog", m.cfg.CatalogURL, "error", err)
		return err
	}
	return nil
}

// acceptedSerial returns the highest catalog serial accepted so far (0 for none).
func (m *Marketplace) acceptedSerial(ctx context.Context) (int64, error) {
	var serial int64
	err := m.db.QueryRowContext(ctx, `SELECT serial FROM catalog_serial WHERE name = $1`, catalogSerialName).Scan(&serial)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("reading the accepted catalog index serial: %w", err)
	}
	return serial, nil
}

// checkNotOlder refuses to replace the installed version of plugin id with
// an older candidate; the error names both versions.
func checkNotOlder(id, installed, candidate string) error {
	c, err := catalog.CompareVersions(candidate, installed)
	if err != nil {
		return fmt.Errorf("cannot compare the catalog's %s %s with the installed %s: %w", id, candidate, installed, err)
	}
	if c < 0 {
		return fmt.Errorf("the catalog's newest %s for this host is %s, older than the installed %s: %w; publish a version newer than %s, or uninstall %s first to go back on purpose",
			id, candidate, installed, ErrDowngrade, installed, installed)
	}
	return nil
}
