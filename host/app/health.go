package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/magicads/r2storage/host/httpapi"
	"github.com/magicads/r2storage/host/localstore"
)

// healthGrace is how long past its deadline /healthz waits for a check to
// report why it gave up.
const healthGrace = 100 * time.Millisecond

// MinFreeDisk is the free space below which /healthz calls the results disk
// (or the upload spool's disk) full.
const MinFreeDisk = 16 << 20

// healthCheck is one of /healthz's checks.
type healthCheck struct {
	name string
	run  func(ctx context.Context) error
}

// health runs /healthz's checks at once and returns an error naming every
// one that failed, or did not answer before ctx ended: the database (a ping)
// and the results disk and upload spool (free space, read-only, a write).
func (a *App) health(ctx context.Context) error {
	checks := []healthCheck{
		{"database", a.checkDatabase},
		{"results disk", func(context.Context) error { return checkDisk("results disk", a.Local.Root()) }},
		{"upload spool", func(context.Context) error { return checkDisk("upload spool", a.spool) }},
	}
	type outcome struct {
		i   int
		err error
	}
	out := make(chan outcome, len(checks))
	for i, c := range checks {
		go func() { out <- outcome{i, c.run(ctx)} }()
	}
	errs := make([]error, len(checks))
	answered := make([]bool, len(checks))
	// A check that gives up when ctx ends says why itself: wait a little
	// past ctx's end for it before calling it silent.
	done, late := ctx.Done(), (<-chan time.Time)(nil)
wait:
	for pending := len(checks); pending > 0; {
		select {
		case o := <-out:
			errs[o.i], answered[o.i] = o.err, true
			pending--
		case <-done:
			done, late = nil, time.After(healthGrace)
		case <-late:
			break wait
		}
	}
	for i, c := range checks {
		if !answered[i] {
			errs[i] = fmt.Errorf("%s: no answer within %v", c.name, httpapi.HealthTimeout)
		}
	}
	return joinErrors(errs)
}

// joinErrors joins the non-nil errors into one line, or returns nil.
func joinErrors(errs []error) error {
	var msgs []string
	for _, err := range errs {
		if err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return errors.New(strings.Join(msgs, "; "))
}

// checkDatabase pings the database within ctx.
func (a *App) checkDatabase(ctx context.Context) error {
	if err := a.DB.PingContext(ctx); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("database unreachable: no answer within %v; check that the database server is up and reachable from this host", httpapi.HealthTimeout)
		}
		return fmt.Errorf("database unreachable: %w; check that the database server is up and reachable from this host", err)
	}
	return nil
}

// checkDisk checks that dir's disk has room (MinFreeDisk), is not
// read-only, and takes a small write.
func checkDisk(name, dir string) error {
	if err := diskSpace(dir); err != nil {
		return fmt.Errorf("%s %w", name, err)
	}
	f, err := os.CreateTemp(dir, localstore.TempPrefix+"health-*")
	if err == nil {
		_, err = f.Write([]byte{0})
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if rerr := os.Remove(f.Name()); err == nil {
			err = rerr
		}
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.EROFS):
		return fmt.Errorf("%s read-only: %s cannot be written (%v); remount it read-write", name, dir, err)
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("%s full: %s cannot be written (%v); free space on its disk", name, dir, err)
	}
	return fmt.Errorf("%s not writable: %v; check the folder, its permissions and its disk", name, err)
}

// mib formats a byte count in MiB.
func mib(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
