package app

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/magicads/r2storage/host/localstore"
)

// clearSpool empties the upload spool: files in it are uploads a killed
// host process never finished (nothing uses the spool before the API
// exists). It returns what it removed.
func clearSpool(dir string) (localstore.Removed, error) {
	var out localstore.Removed
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				out.Files++
				out.Bytes += fi.Size()
			}
		}
		return nil
	})
	if err := os.RemoveAll(dir); err != nil {
		return out, fmt.Errorf("clearing the upload spool %s: %w; remove what is left in it by hand", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return out, fmt.Errorf("upload spool: %w", err)
	}
	return out, nil
}

// startRecovery runs the startup recovery of the results disk in the
// background until it is done or Close stops it: interrupted temp files,
// then result files without rows (results.Service.Recover). before is the
// results disk's time at start; spool is what clearSpool removed, for the
// summary.
func (a *App) startRecovery(before time.Time, spool localstore.Removed) {
	ctx, stop := context.WithCancel(context.Background())
	a.stopRecovery, a.recoveryDone = stop, make(chan struct{})
	go func() {
		defer close(a.recoveryDone)
		tmp, err := a.Local.RemoveTemp(ctx, before)
		if ctx.Err() != nil {
			return
		}
		attrs := []any{"temp_files", tmp.Files, "temp_bytes", tmp.Bytes, "spool_files", spool.Files, "spool_bytes", spool.Bytes}
		if err != nil {
			a.log.Warn("startup recovery: removed interrupted temp and upload spool files; some temp files could not be removed", append(attrs, "error", err)...)
		} else {
			a.log.Info("startup recovery: removed interrupted temp and upload spool files", attrs...)
		}
		// Recover logs its own summary.
		_, _ = a.Results.Recover(ctx, before)
	}()
}
