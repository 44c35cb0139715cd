package results

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/magicads/r2storage/host/localstore"
)

const (
	// recoverBatch is how many result files one database query looks up.
	recoverBatch = 500
	// recoverReadDir is how many entries Recover reads from a folder at a
	// time, so a folder of millions of results is never listed whole.
	recoverReadDir = 1000
	// recoverProgressEvery is how many files Recover looks at between two
	// progress lines in the log.
	recoverProgressEvery = 50_000
	// recoverNamedLogs caps the log lines naming single files left alone;
	// the summary counts the rest.
	recoverNamedLogs = 20
)

// resultFileName is the name of a result's file: its id (a UUID) and an
// extension.
var resultFileName = regexp.MustCompile(`^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.[a-z0-9]{1,16}$`)

// FileCount is a number of files and their total size.
type FileCount struct {
	// Files is how many files.
	Files int
	// Bytes is their total size (regular files only).
	Bytes int64
}

// add counts one file of size bytes.
func (c *FileCount) add(size int64) {
	c.Files++
	c.Bytes += size
}

// RecoverReport says what Recover found on the results disk and what it
// did, per action.
type RecoverReport struct {
	// Removed are result files without a row (their row never committed);
	// Recover removed them.
	Removed FileCount
	// Finished are local copies of offloaded results recorded without one
	// (the removal after the confirmed upload was interrupted); Recover
	// removed them.
	Finished FileCount
	// Adopted are files of local results recorded without a local copy;
	// their rows now record it.
	Adopted FileCount
	// Kept are files of live results that keep them: local results, and
	// offloaded ones recorded with a local copy.
	Kept FileCount
	// Deleted are files of deleted results, left to their delete jobs.
	Deleted FileCount
	// Mismatched are files named after a result whose row records another
	// path (or, for a file to adopt, another size); left alone and logged.
	Mismatched FileCount
	// Other are names that are not result files (folders count as one
	// entry); left alone and logged.
	Other FileCount
	// Newer are result files modified at or after the cut-off (the running
	// process's); not looked up.
	Newer FileCount
	// Failed are files Recover could not remove or adopt; left as they
	// are and logged.
	Failed FileCount
}

// logAttrs are the report's log attributes: files and bytes per action.
func (rep RecoverReport) logAttrs() []any {
	group := func(name string, c FileCount) any {
		return slog.Group(name, "files", c.Files, "bytes", c.Bytes)
	}
	return []any{group("removed", rep.Removed), group("finished", rep.Finished), group("adopted", rep.Adopted),
		group("kept", rep.Kept), group("deleted", rep.Deleted), group("mismatched", rep.Mismatched),
		group("other", rep.Other), group("newer", rep.Newer), group("failed", rep.Failed)}
}

// Recover reconciles the local results disk with the results table after
// a crash. It walks the result files (<kind>/<generator>/<uuid>.<ext>)
// last modified before before, looks their rows up by id in batches, and:
//   - removes a file without a row: the host died between writing it and
//     committing its row, so no result refers to it;
//   - keeps the file of a live local result, and adopts it (records the
//     local copy) if the row said there was none and the size matches;
//   - keeps the local copy of an offloaded result recorded with one;
//   - removes the local copy of an offloaded result recorded without one:
//     the upload was confirmed and recorded, and the host died before it
//     removed the local copy, so Recover finishes that removal;
//   - leaves the file of a deleted result to its queued delete job;
//   - leaves alone, and logs, a file whose row records another path, and
//     every name that is not a result file (temp files and the store's own
//     files are localstore.Store.RemoveTemp's).
//
// Files modified at or after before are never touched: pass the results
// disk's time at process start (localstore.Store.Now), and the uploads of
// the running process are safe. A lookup that fails stops Recover and its
// files stay (the next start tries again); each database call is bounded
// by Options.DBTimeout and ctx. Recover logs one summary line, and a
// progress line every 50,000 files, and returns what it did so far.
func (s *Service) Recover(ctx context.Context, before time.Time) (RecoverReport, error) {
	r := &recovery{s: s, before: before, root: s.local.Root()}
	start := time.Now()
	err := r.walk(ctx)
	if err == nil {
		err = r.flush(ctx)
	}
	if err == nil {
		err = r.first
	}
	attrs := append(r.rep.logAttrs(), "looked_at", r.seen, "took", time.Since(start).Round(time.Millisecond))
	switch {
	case err == nil:
		s.log.Info("results: startup recovery finished", attrs...)
	case r.first != nil && errors.Is(err, r.first):
		s.log.Warn("results: startup recovery finished; some folders could not be read", append(attrs, "err", err)...)
	default:
		s.log.Warn("results: startup recovery stopped early; the files not looked at stay until the next start", append(attrs, "err", err)...)
	}
	return r.rep, err
}

// recovery is one run of Recover.
type recovery struct {
	s      *Service
	before time.Time
	root   string
	rep    RecoverReport
	batch  []recoverFile
	// seen counts the files looked at, for progress lines.
	seen int
	// named counts the log lines naming single files.
	named int
	// first is the first folder that could not be read.
	first error
}

// recoverFile is a result file waiting for its row's lookup.
type recoverFile struct {
	id, key string
	size    int64
}

// recoverRow is what Recover needs of a results row.
type recoverRow struct {
	path, storage         string
	size                  int64
	localPresent, deleted bool
}

// note remembers the first folder that could not be read.
func (r *recovery) note(err error) {
	if r.first == nil {
		r.first = fmt.Errorf("results: startup recovery: %w; check the permissions of the results folder", err)
	}
}

// logNamed logs a line naming one file, up to recoverNamedLogs lines.
func (r *recovery) logNamed(level slog.Level, msg string, args ...any) {
	if r.named > recoverNamedLogs {
		return
	}
	r.named++
	if r.named > recoverNamedLogs {
		r.s.log.Info("results: startup recovery: further files left alone are only counted in the summary")
		return
	}
	r.s.log.Log(context.Background(), level, msg, args...)
}

// other counts, and logs, an entry that is not a result file.
func (r *recovery) other(key string, e fs.DirEntry) {
	var size int64
	if e.Type().IsRegular() {
		if fi, err := e.Info(); err == nil {
			size = fi.Size()
		}
	}
	r.rep.Other.add(size)
	r.logNamed(slog.LevelInfo, "results: startup recovery leaves alone a name that is not a result file", "path", key)
}

// walk looks at every kind folder of the root.
func (r *recovery) walk(ctx context.Context) error {
	kinds, err := os.ReadDir(r.root)
	if err != nil {
		return fmt.Errorf("results: startup recovery: reading the results folder: %w", err)
	}
	for _, k := range kinds {
		if err := ctx.Err(); err != nil {
			return err
		}
		name := k.Name()
		switch {
		case strings.HasPrefix(name, localstore.ReservedPrefix):
			// The store's own files: temp files and sidecars.
		case (name == KindImages || name == KindVideos) && k.IsDir():
			if err := r.kind(ctx, name); err != nil {
				return err
			}
		default:
			r.other(name, k)
		}
	}
	return nil
}

// kind looks at every generator folder of a kind folder.
func (r *recovery) kind(ctx context.Context, kind string) error {
	gens, err := os.ReadDir(filepath.Join(r.root, kind))
	if err != nil {
		r.note(err)
		return nil
	}
	for _, g := range gens {
		if err := ctx.Err(); err != nil {
			return err
		}
		name := g.Name()
		switch {
		case strings.HasPrefix(name, localstore.ReservedPrefix):
		case g.IsDir() && len(name) <= maxGenerator && generatorPattern.MatchString(name):
			if err := r.generator(ctx, kind+"/"+name); err != nil {
				return err
			}
		default:
			r.other(kind+"/"+name, g)
		}
	}
	return nil
}

// generator looks at the files of a generator folder (dir is its key),
// recoverReadDir entries at a time.
func (r *recovery) generator(ctx context.Context, dir string) error {
	f, err := os.Open(filepath.Join(r.root, filepath.FromSlash(dir)))
	if err != nil {
		r.note(err)
		return nil
	}
	defer f.Close()
	for {
		ents, err := f.ReadDir(recoverReadDir)
		for _, e := range ents {
			if err := r.file(ctx, dir+"/"+e.Name(), e); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			r.note(err)
			return nil
		}
	}
}

// file looks at one entry of a generator folder: a result file written
// before the cut-off joins the batch.
func (r *recovery) file(ctx context.Context, key string, e fs.DirEntry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	name := e.Name()
	if strings.HasPrefix(name, localstore.ReservedPrefix) {
		return nil
	}
	m := resultFileName.FindStringSubmatch(name)
	if m == nil || !e.Type().IsRegular() {
		r.other(key, e)
		return nil
	}
	fi, err := e.Info()
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			r.note(err)
		}
		return nil
	}
	r.seen++
	if r.seen%recoverProgressEvery == 0 {
		r.s.log.Info("results: startup recovery in progress", append(r.rep.logAttrs(), "looked_at", r.seen)...)
	}
	if !fi.ModTime().Before(r.before) {
		r.rep.Newer.add(fi.Size())
		return nil
	}
	r.batch = append(r.batch, recoverFile{id: m[1], key: key, size: fi.Size()})
	if len(r.batch) >= recoverBatch {
		return r.flush(ctx)
	}
	return nil
}

// flush looks up the rows of the batch and settles each file.
func (r *recovery) flush(ctx context.Context) error {
	if len(r.batch) == 0 {
		return nil
	}
	rows, err := r.rows(ctx)
	if err != nil {
		return fmt.Errorf("results: startup recovery: looking up %d results in the database: %w; their files stay until the next start", len(r.batch), err)
	}
	for _, f := range r.batch {
		row, ok := rows[f.id]
		if err := r.settle(ctx, f, row, ok); err != nil {
			return err
		}
	}
	r.batch = r.batch[:0]
	return nil
}

// rows reads the rows of the batch's ids, deleted or not.
func (r *recovery) rows(ctx context.Context) (map[string]recoverRow, error) {
	qctx, cancel := context.WithTimeout(ctx, r.s.opts.DBTimeout)
	defer cancel()
	args := make([]any, len(r.batch))
	marks := make([]string, len(r.batch))
	for i, f := range r.batch {
		args[i], marks[i] = f.id, "$"+strconv.Itoa(i+1)
	}
	rows, err := r.s.db.direct().QueryContext(qctx, "SELECT id, path, storage, size, local_present, deleted FROM results WHERE id IN ("+strings.Join(marks, ", ")+")", args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string]recoverRow, len(r.batch))
	for rows.Next() {
		var id string
		var row recoverRow
		var lp, del dbBool
		if err := rows.Scan(&id, &row.path, &row.storage, &row.size, &lp, &del); err != nil {
			return nil, err
		}
		row.localPresent, row.deleted = bool(lp), bool(del)
		out[id] = row
	}
	return out, rows.Err()
}

// settle does what the row (ok=false: none) says to a result file.
func (r *recovery) settle(ctx context.Context, f recoverFile, row recoverRow, ok bool) error {
	switch {
	case !ok:
		// An upload of this process between Stage and Commit is not an
		// orphan, whatever its file's time says (a clock stepped back); a
		// row committed since the batch was read is looked for again.
		if r.s.isStaged(f.id) {
			r.rep.Newer.add(f.size)
			return nil
		}
		var n int
		if err := r.s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM results WHERE id = $1", f.id).Scan(&n); err != nil {
			return fmt.Errorf("results: startup recovery: looking up result %s: %w", f.id, err)
		}
		if n > 0 {
			r.rep.Kept.add(f.size)
			return nil
		}
		return r.remove(ctx, f, &r.rep.Removed, "its row never committed")
	case row.path != f.key:
		r.rep.Mismatched.add(f.size)
		r.logNamed(slog.LevelWarn, "results: startup recovery leaves alone a file named after a result stored at another path", "path", f.key, "result_path", row.path)
	case row.deleted:
		r.rep.Deleted.add(f.size)
	case row.storage == Local && row.localPresent:
		r.rep.Kept.add(f.size)
	case row.storage == Local:
		return r.adopt(ctx, f, row)
	case row.localPresent:
		r.rep.Kept.add(f.size)
	default:
		return r.remove(ctx, f, &r.rep.Finished, "its result was offloaded and recorded without a local copy")
	}
	return nil
}

// remove removes a result file (and its sidecar) and counts it in c.
func (r *recovery) remove(ctx context.Context, f recoverFile, c *FileCount, why string) error {
	if err := r.s.local.Delete(ctx, f.key); err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		r.rep.Failed.add(f.size)
		r.s.log.Warn("results: startup recovery could not remove a result file", "path", f.key, "reason", why, "err", err)
		return nil
	}
	c.add(f.size)
	return nil
}

// adopt records the local copy of a local result whose row said it had
// none, when the file has the result's size.
func (r *recovery) adopt(ctx context.Context, f recoverFile, row recoverRow) error {
	if f.size != row.size {
		r.rep.Mismatched.add(f.size)
		r.logNamed(slog.LevelWarn, "results: startup recovery leaves alone a file of another size than its result", "path", f.key, "size", f.size, "result_size", row.size)
		return nil
	}
	uctx, cancel := context.WithTimeout(ctx, r.s.opts.DBTimeout)
	defer cancel()
	res, err := r.s.db.ExecContext(uctx, "UPDATE results SET local_present = $1, updated_at = $2, local_node = $7 WHERE id = $3 AND storage = $4 AND deleted = $5 AND local_present = $6",
		true, dbTime(r.s.now()), f.id, Local, false, false, r.s.localNode())
	var n int64
	if err == nil {
		n, err = res.RowsAffected()
	}
	switch {
	case err != nil && ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		r.rep.Failed.add(f.size)
		r.s.log.Warn("results: startup recovery could not record a local result's file", "path", f.key, "err", err)
	case n == 0:
		// The row changed meanwhile (deleted or offloaded): leave the file
		// to whoever changed it.
		r.rep.Kept.add(f.size)
	default:
		r.rep.Adopted.add(f.size)
	}
	return nil
}
