package settingsstore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"

	r2storage "github.com/magicads/r2storage"
	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/host/providers"
	"github.com/magicads/r2storage/host/settingsstore"
	"github.com/magicads/r2storage/internal/testdb"
	"github.com/magicads/r2storage/shared/settingsschema"
)

const (
	r2Entry = "storage.provider.cloudflare-r2"
	r2Owner = "cloudflare-r2"
)

// randomHex returns 2n random hex characters: test secrets are made at run
// time, never kept in a file.
func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// r2Schema is the schema the host stores R2's settings under: R2's own
// with the host's enabled and delete_local added.
func r2Schema(t testing.TB) *settingsschema.Schema {
	t.Helper()
	doc, err := r2storage.SettingsSchema()
	if err != nil {
		t.Fatal(err)
	}
	if doc, err = providers.HostSchema(doc, "Cloudflare R2 Storage"); err != nil {
		t.Fatal(err)
	}
	s, err := settingsschema.Compile(doc)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// r2Values returns valid R2 settings with a fresh random secret.
func r2Values(t testing.TB) map[string]any {
	return map[string]any{
		"enabled":           true,
		"delete_local":      false,
		"access_key_id":     "AK" + randomHex(t, 8),
		"secret_access_key": "SK" + randomHex(t, 20),
		"account_id":        randomHex(t, 16),
		"bucket":            "media-" + randomHex(t, 4),
		"public_url":        "https://pub-example.r2.dev",
		"key_prefix":        "magicads",
		"use_path_style":    false,
		"jurisdiction":      "eu",
	}
}

func keyring(t testing.TB, current settingsstore.Key, previous ...settingsstore.Key) *settingsstore.Keyring {
	t.Helper()
	kr, err := settingsstore.NewKeyring(current, previous...)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// eachDialect runs f on a fresh migrated database of every dialect.
func eachDialect(t *testing.T, f func(t *testing.T, db *testdb.DB)) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			f(t, testdb.Open(t, d))
		})
	}
}

// register inserts an unconfigured entry the way a plugin migration does.
func register(t testing.TB, db *testdb.DB, name, owner string) {
	t.Helper()
	if _, err := db.Exec(`INSERT INTO settings (name, owner) VALUES ($1, $2)`, name, owner); err != nil {
		t.Fatal(err)
	}
}

// raw reads an entry's stored columns.
func raw(t testing.TB, db *testdb.DB, name string) (value []byte, keyID string, updatedAt string) {
	t.Helper()
	var ts any
	if err := db.QueryRow(`SELECT value, key_id, updated_at FROM settings WHERE name = $1`, name).Scan(&value, &keyID, &ts); err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return value, keyID, fmt.Sprint(ts)
}

func setRaw(t testing.TB, db *testdb.DB, name string, value []byte, keyID string) {
	t.Helper()
	res, err := db.Exec(`UPDATE settings SET value = $2, key_id = $3 WHERE name = $1`, name, value, keyID)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("set %s: %d rows", name, n)
	}
}

func wantCorrupt(t *testing.T, err error, name string, mustSay string) {
	t.Helper()
	var ce *settingsstore.CorruptError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want a *CorruptError", err)
	}
	if ce.Name != name {
		t.Errorf("CorruptError.Name = %q, want %q", ce.Name, name)
	}
	if !strings.Contains(err.Error(), "entry "+name+" cannot be decrypted") {
		t.Errorf("message %q does not name the entry", err)
	}
	if mustSay != "" && !strings.Contains(err.Error(), mustSay) {
		t.Errorf("message %q does not say %q", err, mustSay)
	}
}

func TestRoundTripAndStates(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		kr := keyring(t, newKey(t))
		s := settingsstore.New(db.DB, kr)

		if _, err := s.Load(ctx, "missing"); !errors.Is(err, settingsstore.ErrNotFound) {
			t.Errorf("missing entry: %v, want ErrNotFound", err)
		}
		register(t, db, r2Entry, r2Owner)
		if _, err := s.Load(ctx, r2Entry); !errors.Is(err, settingsstore.ErrNotConfigured) {
			t.Errorf("registered entry: %v, want ErrNotConfigured", err)
		}

		want := r2Values(t)
		want["nested"] = map[string]any{"list": []any{"a", 1.5, nil, true}}
		if err := s.Save(ctx, r2Entry, r2Owner, want); err != nil {
			t.Fatal(err)
		}
		got, err := s.Load(ctx, r2Entry)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Load = %v\nwant %v", got, want)
		}
		_, keyID, _ := raw(t, db, r2Entry)
		if keyID != kr.CurrentID() {
			t.Errorf("key_id %q", keyID)
		}

		// Save replaces; a new entry is created; an empty map round-trips.
		want2 := r2Values(t)
		if err := s.Save(ctx, r2Entry, r2Owner, want2); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.Load(ctx, r2Entry); !reflect.DeepEqual(got, want2) {
			t.Errorf("after second Save: %v", got)
		}
		if err := s.Save(ctx, "host.other", "host", nil); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Load(ctx, "host.other"); err != nil || got == nil || len(got) != 0 {
			t.Errorf("empty entry: %v, %v", got, err)
		}

		// Bad input is refused, not a panic.
		if err := s.Save(ctx, "", "host", nil); err == nil {
			t.Error("empty name accepted")
		}
		if err := s.Save(ctx, "x", "", nil); err == nil {
			t.Error("empty owner accepted")
		}
		if err := s.Save(ctx, "x", "host", map[string]any{"c": make(chan int)}); err == nil {
			t.Error("unencodable value accepted")
		}
		if _, err := settingsstore.New(db.DB, nil).Load(ctx, r2Entry); err == nil {
			t.Error("store without keyring loaded")
		}
		if _, err := settingsstore.New(nil, keyring(t, newKey(t))).Load(ctx, r2Entry); err == nil {
			t.Error("store without database loaded")
		}
	})
}

func TestFreshNonceEveryWrite(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		s := settingsstore.New(db.DB, keyring(t, newKey(t)))
		v := r2Values(t)
		if err := s.Save(ctx, r2Entry, r2Owner, v); err != nil {
			t.Fatal(err)
		}
		a, _, _ := raw(t, db, r2Entry)
		if err := s.Save(ctx, r2Entry, r2Owner, v); err != nil {
			t.Fatal(err)
		}
		b, _, _ := raw(t, db, r2Entry)
		if bytes.Equal(a, b) {
			t.Fatal("two saves of the same values stored the same blob")
		}
		if a[0] != 1 || b[0] != 1 {
			t.Errorf("version bytes %d, %d, want 1", a[0], b[0])
		}
		if bytes.Equal(a[1:13], b[1:13]) {
			t.Error("two saves reused a nonce")
		}
		if len(a) != len(b) {
			t.Errorf("blob lengths %d and %d differ for the same values", len(a), len(b))
		}
	})
}

// TestNoPlaintextAtRest proves the secret (and every other value) is never
// stored in clear: not in the value column, and for SQLite not anywhere in
// the database file or its write-ahead log.
func TestNoPlaintextAtRest(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		s := settingsstore.New(db.DB, keyring(t, newKey(t)))
		schema := r2Schema(t)
		register(t, db, r2Entry, r2Owner)

		v := r2Values(t)
		secret := v["secret_access_key"].(string)
		if err := s.Save(ctx, r2Entry, r2Owner, v); err != nil {
			t.Fatal(err)
		}
		// An Update writes through the other path; give it a second secret.
		v2 := r2Values(t)
		secret2 := v2["secret_access_key"].(string)
		if _, fields, err := s.Update(ctx, r2Entry, r2Owner, schema, v2); err != nil || fields != nil {
			t.Fatalf("Update: %v %v", fields, err)
		}
		needles := map[string]string{
			"first secret":  secret,
			"second secret": secret2,
			"access key":    v2["access_key_id"].(string),
			"bucket":        v2["bucket"].(string),
			"account id":    v2["account_id"].(string),
		}

		rows, err := db.Query(`SELECT name, owner, value, key_id FROM settings`)
		if err != nil {
			t.Fatal(err)
		}
		var table bytes.Buffer
		for rows.Next() {
			var name, owner, keyID string
			var value []byte
			if err := rows.Scan(&name, &owner, &value, &keyID); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&table, "%s|%s|%s|", name, owner, keyID)
			table.Write(value)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		if !bytes.Contains(table.Bytes(), []byte(r2Entry)) {
			t.Fatal("control: the table dump does not even hold the entry name")
		}
		for what, n := range needles {
			if bytes.Contains(table.Bytes(), []byte(n)) {
				t.Errorf("the settings table holds the %s in clear", what)
			}
		}

		if db.Dialect != dbmigrate.SQLite {
			return
		}
		scan := func(stage string) {
			files := map[string][]byte{}
			for _, suffix := range []string{"", "-wal", "-journal", "-shm"} {
				data, err := os.ReadFile(db.DSN + suffix)
				if errors.Is(err, os.ErrNotExist) {
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				files[suffix] = data
			}
			var all []byte
			for suffix, data := range files {
				all = append(all, data...)
				for what, n := range needles {
					if bytes.Contains(data, []byte(n)) {
						t.Errorf("%s: the database file %q holds the %s in clear", stage, "magicads.db"+suffix, what)
					}
				}
			}
			// Control: the scan sees row data (the entry name is stored in clear).
			if !bytes.Contains(all, []byte(r2Entry)) {
				t.Errorf("%s: control failed: the entry name is not found in the database files", stage)
			}
		}
		if fi, err := os.Stat(db.DSN + "-wal"); err != nil || fi.Size() == 0 {
			t.Fatalf("control: expected a non-empty WAL file after the writes (stat: %v)", err)
		}
		scan("before checkpoint")
		if _, err := db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
			t.Fatal(err)
		}
		scan("after checkpoint")
	})
}

func TestWrongKeyIsCorrupt(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		writer := newKey(t)
		v := r2Values(t)
		if err := settingsstore.New(db.DB, keyring(t, writer)).Save(ctx, r2Entry, r2Owner, v); err != nil {
			t.Fatal(err)
		}
		other := newKey(t)
		_, err := settingsstore.New(db.DB, keyring(t, other)).Load(ctx, r2Entry)
		wantCorrupt(t, err, r2Entry, "it was written with key id "+writer.ID()+" which is not APP_KEY (key id "+other.ID()+") or APP_KEY_PREVIOUS")
		assertNoSecret(t, "error", err.Error(), v["secret_access_key"].(string))

		// key_id pointing at the right id but bytes from another key.
		blob, _, _ := raw(t, db, r2Entry)
		setRaw(t, db, r2Entry, blob, other.ID())
		_, err = settingsstore.New(db.DB, keyring(t, other)).Load(ctx, r2Entry)
		wantCorrupt(t, err, r2Entry, "fail authentication under key id "+other.ID())

		// A value without key id.
		setRaw(t, db, r2Entry, blob, "")
		_, err = settingsstore.New(db.DB, keyring(t, writer)).Load(ctx, r2Entry)
		wantCorrupt(t, err, r2Entry, "no key id")
	})
}

func TestRotation(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		oldKey, newK := newKey(t), newKey(t)
		oldStore := settingsstore.New(db.DB, keyring(t, oldKey))
		a, b := r2Values(t), r2Values(t)
		for name, v := range map[string]map[string]any{"entry.a": a, "entry.b": b} {
			if err := oldStore.Save(ctx, name, "host", v); err != nil {
				t.Fatal(err)
			}
		}
		register(t, db, "entry.unconfigured", "host")

		kr, generated, err := settingsstore.LoadKeyring(newK.Encode(), oldKey.Encode(), t.TempDir(), nil)
		if err != nil || generated {
			t.Fatalf("LoadKeyring: %v %v", generated, err)
		}
		s := settingsstore.New(db.DB, kr)
		if got, err := s.Load(ctx, "entry.a"); err != nil || !reflect.DeepEqual(got, a) {
			t.Fatalf("Load under APP_KEY_PREVIOUS: %v %v", got, err)
		}
		// A third entry, written with the new key, needs no rotation.
		if err := s.Save(ctx, "entry.c", "host", r2Values(t)); err != nil {
			t.Fatal(err)
		}
		beforeBlob, _, beforeUpdated := raw(t, db, "entry.a")

		n, err := s.Rotate(ctx)
		if err != nil || n != 2 {
			t.Fatalf("Rotate = %d, %v; want 2, nil", n, err)
		}
		for _, name := range []string{"entry.a", "entry.b", "entry.c"} {
			if _, id, _ := raw(t, db, name); id != newK.ID() {
				t.Errorf("%s key_id %s after Rotate, want %s", name, id, newK.ID())
			}
		}
		afterBlob, _, afterUpdated := raw(t, db, "entry.a")
		if bytes.Equal(beforeBlob, afterBlob) {
			t.Error("Rotate did not rewrite the blob")
		}
		if beforeUpdated != afterUpdated {
			t.Errorf("Rotate changed updated_at (%s → %s)", beforeUpdated, afterUpdated)
		}
		if value, _, _ := raw(t, db, "entry.unconfigured"); value != nil {
			t.Error("Rotate wrote a value into an unconfigured entry")
		}

		// Without the previous key, everything still loads.
		only := settingsstore.New(db.DB, keyring(t, newK))
		for name, want := range map[string]map[string]any{"entry.a": a, "entry.b": b} {
			if got, err := only.Load(ctx, name); err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("%s after Rotate with APP_KEY only: %v %v", name, got, err)
			}
		}
		if n, err := only.Rotate(ctx); n != 0 || err != nil {
			t.Errorf("second Rotate = %d, %v", n, err)
		}

		// An entry under an unknown key is reported; the others still rotate.
		newer := newKey(t)
		if err := settingsstore.New(db.DB, keyring(t, newKey(t))).Save(ctx, "entry.lost", "host", r2Values(t)); err != nil {
			t.Fatal(err)
		}
		n, err = settingsstore.New(db.DB, keyring(t, newer, newK)).Rotate(ctx)
		if n != 3 {
			t.Errorf("Rotate with a lost entry rotated %d, want 3", n)
		}
		wantCorrupt(t, err, "entry.lost", "not APP_KEY")
	})
}

func TestTamperedBytesAreCorrupt(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		s := settingsstore.New(db.DB, keyring(t, newKey(t)))
		v := r2Values(t)
		if err := s.Save(ctx, r2Entry, r2Owner, v); err != nil {
			t.Fatal(err)
		}
		orig, keyID, _ := raw(t, db, r2Entry)
		positions := map[string]int{"version": 0, "nonce": 5, "ciphertext": 20, "tag": len(orig) - 1}
		for what, i := range positions {
			blob := bytes.Clone(orig)
			blob[i] ^= 0x01
			setRaw(t, db, r2Entry, blob, keyID)
			_, err := s.Load(ctx, r2Entry)
			wantCorrupt(t, err, r2Entry, "")
			assertNoSecret(t, "error", err.Error(), v["secret_access_key"].(string))
			t.Logf("%s byte flipped: %v", what, err)
		}
		for _, blob := range [][]byte{{}, {1}, orig[:20], append(bytes.Clone(orig), 0)} {
			setRaw(t, db, r2Entry, blob, keyID)
			_, err := s.Load(ctx, r2Entry)
			wantCorrupt(t, err, r2Entry, "")
		}
		setRaw(t, db, r2Entry, orig, keyID)
		if _, err := s.Load(ctx, r2Entry); err != nil {
			t.Errorf("restored blob: %v", err)
		}
	})
}

func TestSwappedCiphertextIsCorrupt(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		s := settingsstore.New(db.DB, keyring(t, newKey(t)))
		if err := s.Save(ctx, "storage.provider.a", "a", r2Values(t)); err != nil {
			t.Fatal(err)
		}
		if err := s.Save(ctx, "storage.provider.b", "b", r2Values(t)); err != nil {
			t.Fatal(err)
		}
		blobA, keyID, _ := raw(t, db, "storage.provider.a")
		setRaw(t, db, "storage.provider.b", blobA, keyID)
		_, err := s.Load(ctx, "storage.provider.b")
		wantCorrupt(t, err, "storage.provider.b", "copied from another entry")
	})
}

func TestUpdateMergesAndValidates(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		s := settingsstore.New(db.DB, keyring(t, newKey(t)))
		schema := r2Schema(t)
		register(t, db, r2Entry, r2Owner)

		first := r2Values(t)
		secret := first["secret_access_key"].(string)
		saved, fields, err := s.Update(ctx, r2Entry, r2Owner, schema, first)
		if err != nil || fields != nil {
			t.Fatalf("first Update: %v %v", fields, err)
		}
		if !reflect.DeepEqual(saved, first) {
			t.Errorf("saved %v, want %v", saved, first)
		}

		// Blank, null or missing secret keeps the stored one; other fields
		// follow incoming. (The account id, which the secret is bound to,
		// stays: see TestUpdateRefusesToMoveASecret.)
		for _, blank := range []any{"", nil, "missing"} {
			in := r2Values(t)
			in["account_id"] = first["account_id"]
			if blank == "missing" {
				delete(in, "secret_access_key")
			} else {
				in["secret_access_key"] = blank
			}
			delete(in, "key_prefix")
			saved, fields, err := s.Update(ctx, r2Entry, r2Owner, schema, in)
			if err != nil || fields != nil {
				t.Fatalf("Update with %v secret: %v %v", blank, fields, err)
			}
			got, err := s.Load(ctx, r2Entry)
			if err != nil {
				t.Fatal(err)
			}
			if got["secret_access_key"] != secret {
				t.Errorf("secret lost by an Update with a %v secret", blank)
			}
			if got["bucket"] != in["bucket"] || got["access_key_id"] != in["access_key_id"] {
				t.Errorf("non-secret fields not replaced: %v", schema.Public(got))
			}
			if _, ok := got["key_prefix"]; ok {
				t.Error("a field missing from incoming was kept")
			}
			if !reflect.DeepEqual(saved, got) {
				t.Errorf("Update returned %v, stored %v", schema.Public(saved), schema.Public(got))
			}
		}

		// A new secret replaces it.
		in := r2Values(t)
		newSecret := in["secret_access_key"].(string)
		if _, fields, err := s.Update(ctx, r2Entry, r2Owner, schema, in); err != nil || fields != nil {
			t.Fatalf("Update with new secret: %v %v", fields, err)
		}
		if got, _ := s.Load(ctx, r2Entry); got["secret_access_key"] != newSecret {
			t.Error("new secret not stored")
		}

		// Bad values: field errors, nothing written.
		beforeBlob, beforeKey, beforeUpdated := raw(t, db, r2Entry)
		bad := r2Values(t)
		bad["bucket"] = "Bad_Name"
		bad["secret_access_key"] = ""
		bad["account_id"] = in["account_id"]
		saved, fields, err = s.Update(ctx, r2Entry, r2Owner, schema, bad)
		if err != nil {
			t.Fatal(err)
		}
		if saved != nil || len(fields) != 1 || fields[0].Field != "bucket" {
			t.Fatalf("bad bucket: saved %v, fields %v", saved != nil, fields)
		}
		afterBlob, afterKey, afterUpdated := raw(t, db, r2Entry)
		if !bytes.Equal(beforeBlob, afterBlob) || beforeKey != afterKey || beforeUpdated != afterUpdated {
			t.Error("a refused Update changed the stored entry")
		}
		bad = r2Values(t)
		bad["secret_access_key"] = "has space"
		bad["jurisdiction"] = "mars"
		bad["unknown"] = 1
		_, fields, _ = s.Update(ctx, r2Entry, r2Owner, schema, bad)
		var names []string
		for _, f := range fields {
			names = append(names, f.Field)
			assertNoSecret(t, "field message", f.Message, "has space")
		}
		if strings.Join(names, ",") != "jurisdiction,secret_access_key,unknown" {
			t.Errorf("fields %v", fields)
		}
		if got, _ := s.Load(ctx, r2Entry); got["secret_access_key"] != newSecret {
			t.Error("a refused Update changed the secret")
		}

		// An Update of an entry with no row creates it, unless refused.
		if _, fields, _ := s.Update(ctx, "storage.provider.new", "new", schema, map[string]any{"bucket": "Bad_Name"}); len(fields) != 1 {
			t.Errorf("fields %v", fields)
		}
		if _, err := s.Load(ctx, "storage.provider.new"); !errors.Is(err, settingsstore.ErrNotFound) {
			t.Errorf("a refused Update left a row behind: %v", err)
		}
		if _, fields, err := s.Update(ctx, "storage.provider.new", "new", schema, map[string]any{"bucket": "good-name"}); err != nil || fields != nil {
			t.Fatalf("Update of a new entry: %v %v", fields, err)
		}
		if got, err := s.Load(ctx, "storage.provider.new"); err != nil || got["bucket"] != "good-name" {
			t.Errorf("new entry: %v %v", got, err)
		}

		// A stored value that cannot be decrypted stops the Update.
		_, _, err = settingsstore.New(db.DB, keyring(t, newKey(t))).Update(ctx, r2Entry, r2Owner, schema, r2Values(t))
		wantCorrupt(t, err, r2Entry, "")

		// Bad input: errors, not panics.
		if _, _, err := s.Update(ctx, r2Entry, r2Owner, nil, in); err == nil {
			t.Error("nil schema accepted")
		}
		if _, _, err := s.Update(ctx, "", r2Owner, schema, in); err == nil {
			t.Error("empty name accepted")
		}
		// nil incoming would clear the account id and keep the secret: the
		// secret must be entered again.
		if _, fields, err := s.Update(ctx, r2Entry, r2Owner, schema, nil); err != nil || len(fields) != 1 || fields[0].Field != "secret_access_key" {
			t.Errorf("nil incoming: %v %v", fields, err)
		}
		if got, _ := s.Load(ctx, r2Entry); got["secret_access_key"] != newSecret || got["account_id"] != in["account_id"] {
			t.Errorf("after nil incoming: %v", schema.Public(got))
		}
	})
}

// TestConcurrentUpdatesNeverLoseTheSecret runs 20 Updates of one entry at
// once, only one of which carries the secret: whatever the order, the
// secret must survive, because each Update reads under the row lock.
func TestConcurrentUpdatesNeverLoseTheSecret(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *testdb.DB) {
		register(t, db, r2Entry, r2Owner)
		concurrentUpdates(t, db.DB)
	})
	// The lock must not depend on dbmigrate.Open's _txlock=immediate: with
	// deferred SQLite transactions the first statement still takes it.
	t.Run("sqlite deferred transactions", func(t *testing.T) {
		db := testdb.Open(t, dbmigrate.SQLite)
		register(t, db, r2Entry, r2Owner)
		deferred, _, err := dbmigrate.Open(context.Background(), db.DSN+"?_txlock=deferred")
		if err != nil {
			t.Fatal(err)
		}
		defer deferred.Close()
		concurrentUpdates(t, deferred)
	})
}

// concurrentUpdates runs rounds of 20 concurrent Updates over db.
func concurrentUpdates(t *testing.T, db *sql.DB) {
	ctx := context.Background()
	s := settingsstore.New(db, keyring(t, newKey(t)))
	schema := r2Schema(t)
	const workers = 20
	for round := range 5 {
		base := r2Values(t)
		delete(base, "secret_access_key")
		if err := s.Save(ctx, r2Entry, r2Owner, base); err != nil {
			t.Fatal(err)
		}
		secret := "SK" + randomHex(t, 20)
		carrier := round * 3 % workers
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make([]error, workers)
		for i := range workers {
			in := r2Values(t)
			in["account_id"] = base["account_id"] // where the secret is sent stays
			in["bucket"] = fmt.Sprintf("bucket-%02d", i)
			in["secret_access_key"] = ""
			if i == carrier {
				in["secret_access_key"] = secret
			}
			wg.Go(func() {
				<-start
				_, fields, err := s.Update(ctx, r2Entry, r2Owner, schema, in)
				if err == nil && fields != nil {
					err = fmt.Errorf("fields %v", fields)
				}
				errs[i] = err
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d, Update %d: %v", round, i, err)
			}
		}
		got, err := s.Load(ctx, r2Entry)
		if err != nil {
			t.Fatal(err)
		}
		if got["secret_access_key"] != secret {
			t.Fatalf("round %d: the secret was lost by a concurrent Update", round)
		}
	}
}

func TestMerge(t *testing.T) {
	schema := r2Schema(t)
	secret := r2Values(t)["secret_access_key"].(string)
	merged := settingsstore.Merge(schema, map[string]any{"secret_access_key": secret, "bucket": "old"}, map[string]any{"bucket": "new-one"})
	if !reflect.DeepEqual(merged, map[string]any{"secret_access_key": secret, "bucket": "new-one"}) {
		t.Error("Merge did not keep the secret")
	}
}
