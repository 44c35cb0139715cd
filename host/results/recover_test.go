package results

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/internal/plugintest"
)

// ageAll dates every file and folder under root at t, as if an earlier
// process had written them.
func ageAll(tb testing.TB, root string, t time.Time) {
	tb.Helper()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink != 0 {
			return err
		}
		return os.Chtimes(p, t, t)
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// put writes data at root/rel.
func put(tb testing.TB, root, rel string, data []byte) string {
	tb.Helper()
	p := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		tb.Fatal(err)
	}
	return p
}

func (e *env) exec(t *testing.T, query string, args ...any) {
	t.Helper()
	if _, err := e.db.ExecContext(context.Background(), query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

func mustUUID(t *testing.T) string {
	t.Helper()
	id, err := newUUID()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// TestRecover: the startup recovery of the results disk after a crash, on
// both dialects. Files whose row never committed are removed, results'
// files are kept (and adopted where the row said there was no local copy),
// an interrupted removal of an offloaded result's local copy is finished,
// deleted results' files are left to their delete jobs, and new files,
// files under another row's name and names that are not result files are
// left alone.
func TestRecover(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		logs := &plugintest.Logs{}
		opts := testOptions()
		opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
		e := newEnv(t, d, true, false, opts)
		root := e.local.Root()
		file := func(r Result) string { return filepath.Join(root, filepath.FromSlash(r.Path)) }

		offKept := e.finalize(t, payload(1))
		offDone := e.finalize(t, payload(2))
		if offKept.Storage != remoteID || offDone.Storage != remoteID {
			t.Fatalf("not offloaded: %+v %+v", offKept, offDone)
		}
		// The upload was confirmed and recorded without a local copy; the
		// host died before it removed the file.
		e.exec(t, "UPDATE results SET local_present = $1 WHERE id = $2", false, offDone.ID)
		e.router.setActive(nil)
		loc := e.finalize(t, payload(3))
		adopt := e.finalize(t, payload(4))
		e.exec(t, "UPDATE results SET local_present = $1 WHERE id = $2", false, adopt.ID)
		del := e.finalize(t, payload(5))
		e.exec(t, "UPDATE results SET deleted = $1 WHERE id = $2", true, del.ID)
		wrongSize := e.finalize(t, payload(6))
		e.exec(t, "UPDATE results SET local_present = $1, size = size + 1 WHERE id = $2", false, wrongSize.ID)

		noRow := put(t, root, "images/gemini/"+mustUUID(t)+".png", payload(7))
		noRowVideo := put(t, root, "videos/veo-3/"+mustUUID(t)+".mp4", payload(8))
		otherRow := put(t, root, "images/other/"+loc.ID+".png", payload(3))
		others := []string{
			put(t, root, "images/gemini/notes.txt", []byte("notes")),
			put(t, root, "images/gemini/"+strings.ToUpper(mustUUID(t))+".PNG", payload(9)),
			put(t, root, "images/Bad_Gen/"+mustUUID(t)+".png", payload(10)),
			put(t, root, "readme.txt", []byte("readme")),
			put(t, root, "audio/gemini/"+mustUUID(t)+".png", payload(11)),
		}
		uuidDir := filepath.Join(root, "images", "gemini", mustUUID(t)+".png")
		if err := os.Mkdir(uuidDir, 0o755); err != nil {
			t.Fatal(err)
		}
		target := put(t, t.TempDir(), "target.png", payload(12))
		link := filepath.Join(root, "images", "gemini", mustUUID(t)+".png")
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		temp := put(t, root, "images/gemini/.magicads-tmp-55", payload(13))
		others = append(others, uuidDir, link, target, temp)

		before := time.Now()
		ageAll(t, root, before.Add(-time.Hour))
		newer := put(t, root, "images/gemini/"+mustUUID(t)+".png", payload(14))
		if err := os.Chtimes(newer, before, before); err != nil {
			t.Fatal(err)
		}

		rep, err := e.svc.Recover(context.Background(), before)
		if err != nil {
			t.Fatal(err)
		}
		size := func(ps ...[]byte) int64 {
			var n int64
			for _, p := range ps {
				n += int64(len(p))
			}
			return n
		}
		want := RecoverReport{
			Removed:    FileCount{2, size(payload(7), payload(8))},
			Finished:   FileCount{1, size(payload(2))},
			Adopted:    FileCount{1, size(payload(4))},
			Kept:       FileCount{2, size(payload(1), payload(3))},
			Deleted:    FileCount{1, size(payload(5))},
			Mismatched: FileCount{2, size(payload(3), payload(6))},
			Other:      FileCount{7, size([]byte("notes"), payload(9), []byte("readme"))},
			Newer:      FileCount{1, size(payload(14))},
		}
		if rep != want {
			t.Fatalf("Recover:\n got %+v\nwant %+v", rep, want)
		}
		for _, p := range []string{noRow, noRowVideo, file(offDone)} {
			if exists(p) {
				t.Errorf("%s was not removed", p)
			}
		}
		for _, p := range append([]string{file(offKept), file(loc), file(adopt), file(del), file(wrongSize), otherRow, newer}, others...) {
			if !exists(p) {
				t.Errorf("%s was removed", p)
			}
		}
		e.checkServed(t, offKept.ID, payload(1))
		e.checkServed(t, offDone.ID, payload(2))
		e.checkServed(t, loc.ID, payload(3))
		if r := e.checkServed(t, adopt.ID, payload(4)); !r.LocalPresent {
			t.Errorf("the adopted result is still recorded without a local copy: %+v", r)
		}
		if r, err := loadRow(context.Background(), e.db, wrongSize.ID); err != nil || r.localPresent {
			t.Errorf("a file of another size was adopted: %+v %v", r, err)
		}
		if r, err := loadRow(context.Background(), e.db, del.ID); err != nil || !r.deleted {
			t.Errorf("the deleted result's row: %+v %v", r, err)
		}
		log := logs.String()
		for _, s := range []string{"results: startup recovery finished", "notes.txt", "images/other/" + loc.ID + ".png"} {
			if !strings.Contains(log, s) {
				t.Errorf("the log does not mention %q:\n%s", s, log)
			}
		}

		// Once done, a second run only finds results' files.
		rep, err = e.svc.Recover(context.Background(), before)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Removed.Files+rep.Finished.Files+rep.Adopted.Files != 0 || rep.Kept.Files != 3 || rep.Failed.Files != 0 {
			t.Fatalf("second Recover: %+v", rep)
		}
	})
}

// TestRecoverBatches: more files than one query looks up, half of them
// without a row.
func TestRecoverBatches(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		e := newEnv(t, d, false, false, testOptions())
		root := e.local.Root()
		const n = 2*recoverBatch + 203
		ctx := context.Background()
		tx, err := e.db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		paths := make([]string, n)
		for i := range n {
			id := mustUUID(t)
			key := fmt.Sprintf("images/gen-%d/%s.png", i%3, id)
			paths[i] = put(t, root, key, payload(i))
			if i%2 == 1 {
				continue
			}
			now := dbTime(time.Now())
			if _, err := tx.ExecContext(ctx, `INSERT INTO results (id, path, content_type, size, sha256, storage, object_key, url, local_present, deleted, created_at, updated_at, owner)
				VALUES ($1, $2, 'image/png', $3, $4, $5, '', '', $6, $7, $8, $8, '')`, id, key, len(payload(i)), hexSum(payload(i)), Local, true, false, now); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		before := time.Now()
		ageAll(t, root, before.Add(-time.Hour))
		rep, err := e.svc.Recover(ctx, before)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Removed.Files != n/2 || rep.Kept.Files != n-n/2 || rep.Other.Files != 0 || rep.Failed.Files != 0 {
			t.Fatalf("Recover over %d files: %+v", n, rep)
		}
		for i, p := range paths {
			if exists(p) != (i%2 == 0) {
				t.Fatalf("file %d (row %v): exists %v", i, i%2 == 0, exists(p))
			}
		}
	})
}

// TestRecoverKeepsFilesWhenTheDatabaseFails: a file whose row cannot be
// looked up stays.
func TestRecoverKeepsFilesWhenTheDatabaseFails(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		e := newEnv(t, d, false, false, testOptions())
		p := put(t, e.local.Root(), "images/gemini/"+mustUUID(t)+".png", payload(1))
		before := time.Now()
		ageAll(t, e.local.Root(), before.Add(-time.Hour))
		e.db.Close()
		rep, err := e.svc.Recover(context.Background(), before)
		if err == nil || !strings.Contains(err.Error(), "database") {
			t.Fatalf("Recover on a closed database: %+v, %v", rep, err)
		}
		if !exists(p) || rep.Removed.Files != 0 {
			t.Fatalf("a file whose row could not be looked up was removed: %+v", rep)
		}
	})
}
