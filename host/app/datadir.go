package app

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"

	"github.com/magicads/r2storage/host/auth"
	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/host/settingsstore"
)

// privateDataDir makes the secrets in the data dir readable by the host's
// user only (0600) before anything opens them: app.key, admin.pw and, when
// sqlitePath is set, the SQLite database (created 0600 if missing) with its
// -wal, -shm and -journal files. Older versions left the database 0644 when
// the data dir already existed; such files are tightened and named in one
// log line. The rest of the data dir is not secret: results/ holds what the
// results API serves, plugins/ the installed archives, neither holds a key.
func privateDataDir(dataDir, sqlitePath string, log *slog.Logger) error {
	var tightened []string
	if runtime.GOOS != "windows" {
		for _, name := range []string{settingsstore.KeyFileName, auth.PasswordFile} {
			file := filepath.Join(dataDir, name)
			st, err := os.Lstat(file)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return fmt.Errorf("data dir: %s: %w", file, err)
			}
			if !st.Mode().IsRegular() || st.Mode().Perm()&0o077 == 0 {
				continue
			}
			if err := os.Chmod(file, 0o600); err != nil {
				return fmt.Errorf("data dir: %s is readable by other users and could not be made private (%w): run chmod 600 on it as its owner", file, err)
			}
			tightened = append(tightened, file)
		}
	}
	if sqlitePath != "" {
		files, err := dbmigrate.PrivateSQLiteFile(sqlitePath)
		if err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
		tightened = append(tightened, files...)
	}
	if len(tightened) > 0 {
		log.Warn("made private: files in the data dir that other users could read are now mode 0600", "files", tightened)
	}
	return nil
}
