// Package migrations embeds the host's own database migrations, one
// golang-migrate folder per SQL dialect.
package migrations

import (
	"embed"
	"fmt"
	"io/fs"
)

// Dialects this package has migrations for.
const (
	// SQLite is the dialect name of the SQLite migrations.
	SQLite = "sqlite"
	// Postgres is the dialect name of the PostgreSQL migrations.
	Postgres = "postgres"
)

//go:embed sqlite/*.sql postgres/*.sql
var files embed.FS

// FS returns the host migrations for dialect ("sqlite" or "postgres") as a
// flat folder of golang-migrate files (000001_settings.up.sql, …).
func FS(dialect string) (fs.FS, error) {
	switch dialect {
	case SQLite, Postgres:
	default:
		return nil, fmt.Errorf("host migrations: unknown dialect %q (want %q or %q)", dialect, SQLite, Postgres)
	}
	sub, err := fs.Sub(files, dialect)
	if err != nil {
		return nil, fmt.Errorf("host migrations: %s: %w", dialect, err)
	}
	return sub, nil
}
