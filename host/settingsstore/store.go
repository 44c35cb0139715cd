// Package settingsstore keeps the host's settings entries encrypted in the
// settings table (SQLite or PostgreSQL).
//
// Each entry (e.g. storage.provider.cloudflare-r2) is one JSON object,
// encrypted with AES-256-GCM under APP_KEY: a fresh random 12-byte nonce per
// write and the entry's name as additional data, so a ciphertext copied to
// another entry does not decrypt. The value column holds a versioned blob
// (1 version byte | 12-byte nonce | ciphertext and tag) and key_id names the
// key that wrote it, so APP_KEY can be rotated with APP_KEY_PREVIOUS and
// Store.Rotate. A NULL value means the entry is registered but not
// configured yet.
//
// Secrets never reach a log line or an error message: errors name the entry
// and key IDs only.
package settingsstore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"

	"github.com/magicads/r2storage/shared/settingsschema"
	"github.com/magicads/r2storage/shared/storage"
)

// blobVersion is the first byte of every stored value.
const blobVersion byte = 1

// nonceSize is the AES-GCM nonce length.
const nonceSize = 12

// ErrNotFound is returned (wrapped) when the settings table has no entry of
// that name.
var ErrNotFound = errors.New("settings entry not found")

// ErrNotConfigured is returned (wrapped) when the entry exists but has no
// value yet.
var ErrNotConfigured = errors.New("settings entry not configured")

// CorruptError is returned when a stored value cannot be decrypted or
// decoded: wrong APP_KEY, unknown key id, modified bytes or bad JSON. It
// names the entry and what to check, never a secret.
type CorruptError struct {
	// Name is the entry's name.
	Name string
	// Reason says what is wrong and what to check.
	Reason string
}

// Error names the entry and the reason.
func (e *CorruptError) Error() string {
	return "settingsstore: entry " + e.Name + " cannot be decrypted: " + e.Reason
}

// Store reads and writes encrypted settings entries.
type Store struct {
	db   *sql.DB
	keys *Keyring
	// read is readQuery prepared, once it could be (Load runs on every
	// routing decision).
	mu       sync.Mutex
	readStmt *sql.Stmt
}

// readQuery reads one entry.
const readQuery = `SELECT value, value IS NULL, key_id FROM settings WHERE name = $1`

// loader returns what Load reads with: readQuery prepared, or the
// database when it cannot be prepared now.
func (s *Store) loader(ctx context.Context) queryer {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readStmt == nil {
		st, err := s.db.PrepareContext(ctx, readQuery)
		if err != nil {
			return s.db
		}
		s.readStmt = st
	}
	return stmtQueryer{s.readStmt}
}

// stmtQueryer runs readQuery through its prepared statement.
type stmtQueryer struct{ st *sql.Stmt }

func (q stmtQueryer) QueryRowContext(ctx context.Context, _ string, args ...any) *sql.Row {
	return q.st.QueryRowContext(ctx, args...)
}

// New returns a Store over a host database (with the settings table
// migrated) that encrypts with keys.
func New(db *sql.DB, keys *Keyring) *Store { return &Store{db: db, keys: keys} }

// ready reports a Store built without a database or keyring.
func (s *Store) ready() error {
	switch {
	case s == nil || s.db == nil:
		return errors.New("settingsstore: store has no database")
	case s.keys == nil:
		return errors.New("settingsstore: store has no keyring")
	}
	return nil
}

// checkName refuses an empty entry name.
func checkName(name string) error {
	if name == "" {
		return errors.New("settingsstore: empty entry name")
	}
	return nil
}

// Load returns the decrypted values of the entry. It returns an error
// wrapping ErrNotFound when there is no such entry, ErrNotConfigured when
// the entry has no value, and a *CorruptError when the value cannot be
// decrypted.
func (s *Store) Load(ctx context.Context, name string) (map[string]any, error) {
	if err := s.ready(); err != nil {
		return nil, err
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	values, _, err := s.read(ctx, s.loader(ctx), name)
	return values, err
}

// queryer is what read needs: a *sql.DB or a *sql.Tx.
type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// read loads and decrypts one entry; exists is false when there is no row.
func (s *Store) read(ctx context.Context, q queryer, name string) (values map[string]any, exists bool, err error) {
	var blob []byte
	var keyID string
	var isNull bool
	// "value IS NULL" tells NULL from an empty blob, which the SQLite
	// driver scans as nil too.
	err = q.QueryRowContext(ctx, readQuery, name).Scan(&blob, &isNull, &keyID)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, false, fmt.Errorf("settingsstore: entry %s: %w", name, ErrNotFound)
	case err != nil:
		return nil, false, fmt.Errorf("settingsstore: read entry %s: %w", name, err)
	case isNull:
		return nil, true, fmt.Errorf("settingsstore: entry %s: %w", name, ErrNotConfigured)
	}
	values, err = s.keys.decrypt(name, keyID, blob)
	return values, true, err
}

// Save encrypts values under the current key and stores them as the entry
// (created if missing, replaced otherwise), owned by owner.
func (s *Store) Save(ctx context.Context, name, owner string, values map[string]any) error {
	if err := s.ready(); err != nil {
		return err
	}
	if err := checkName(name); err != nil {
		return err
	}
	if owner == "" {
		return fmt.Errorf("settingsstore: save entry %s: empty owner", name)
	}
	blob, err := s.keys.encrypt(name, values)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO settings (name, owner, value, key_id, updated_at)
VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)
ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, value = excluded.value, key_id = excluded.key_id, updated_at = excluded.updated_at`,
		name, owner, blob, s.keys.CurrentID())
	if err != nil {
		return fmt.Errorf("settingsstore: save entry %s: %w", name, err)
	}
	return nil
}

// Register creates the entry, owned by owner and not configured yet, unless
// it exists (then nothing changes).
func (s *Store) Register(ctx context.Context, name, owner string) error {
	if err := s.ready(); err != nil {
		return err
	}
	if err := checkName(name); err != nil {
		return err
	}
	if owner == "" {
		return fmt.Errorf("settingsstore: register entry %s: empty owner", name)
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO settings (name, owner) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, name, owner); err != nil {
		return fmt.Errorf("settingsstore: register entry %s: %w", name, err)
	}
	return nil
}

// Delete removes the entry and its stored value; a missing entry is not an
// error.
func (s *Store) Delete(ctx context.Context, name string) error {
	if err := s.ready(); err != nil {
		return err
	}
	if err := checkName(name); err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM settings WHERE name = $1`, name); err != nil {
		return fmt.Errorf("settingsstore: delete entry %s: %w", name, err)
	}
	return nil
}

// Update is the admin save of an entry validated by schema. It merges
// incoming into the stored values: a write-only (secret) field that is
// missing, "" or null in incoming keeps its stored value; every other field
// takes the incoming value, and a field missing from incoming is removed.
// The merged values are validated, and a secret that would be kept while a
// property it is bound to changed (schema.SecretsToReenter, the
// x-binds-secrets rule) is a problem on that secret; on field problems they
// are returned and nothing is written. Otherwise the merged values are saved and returned
// (secrets included: use Public for a response).
//
// Concurrent Updates of one entry, from this process or another host node,
// are serialised by locking the entry's row for the whole read-merge-write,
// so none loses a secret another stored. A missing entry is created. A
// stored value that cannot be decrypted fails the Update with a
// *CorruptError (Save overwrites unconditionally).
func (s *Store) Update(ctx context.Context, name, owner string, schema *settingsschema.Schema, incoming map[string]any) (saved map[string]any, fields []storage.FieldError, err error) {
	return s.UpdateChecked(ctx, name, owner, schema, incoming, nil)
}

// UpdateChecked is Update with one more check under the entry's row lock:
// once the merged values pass the schema, verify (if not nil) sees them, and
// its field problems or its error stop the write as the schema's do. It
// runs while the row (on SQLite, the database) is locked, so it must be
// quick: compare, never call out.
func (s *Store) UpdateChecked(ctx context.Context, name, owner string, schema *settingsschema.Schema, incoming map[string]any, verify func(merged map[string]any) ([]storage.FieldError, error)) (saved map[string]any, fields []storage.FieldError, err error) {
	if err := s.ready(); err != nil {
		return nil, nil, err
	}
	if err := checkName(name); err != nil {
		return nil, nil, err
	}
	if owner == "" {
		return nil, nil, fmt.Errorf("settingsstore: update entry %s: empty owner", name)
	}
	if schema == nil {
		return nil, nil, fmt.Errorf("settingsstore: update entry %s: no settings schema", name)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("settingsstore: update entry %s: begin: %w", name, err)
	}
	defer func() { _ = tx.Rollback() }()

	// Take the entry's row lock before reading it. An upsert that changes
	// nothing is a write on both dialects: on PostgreSQL it locks the row
	// (creating it if missing, which a SELECT … FOR UPDATE could not lock);
	// on SQLite it takes the database write lock. Either way a concurrent
	// Update waits here until this transaction ends, then reads what it
	// committed.
	if _, err := tx.ExecContext(ctx, `INSERT INTO settings (name, owner) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET owner = settings.owner`, name, owner); err != nil {
		return nil, nil, fmt.Errorf("settingsstore: update entry %s: lock: %w", name, err)
	}
	stored, _, err := s.read(ctx, tx, name)
	switch {
	case errors.Is(err, ErrNotConfigured):
		stored = nil
	case err != nil:
		return nil, nil, err
	}

	merged := Merge(schema, stored, incoming)
	if fields := check(schema, stored, incoming, merged); len(fields) > 0 {
		return nil, fields, nil
	}
	if verify != nil {
		if fields, err := verify(merged); err != nil || len(fields) > 0 {
			return nil, fields, err
		}
	}
	blob, err := s.keys.encrypt(name, merged)
	if err != nil {
		return nil, nil, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE settings SET owner = $2, value = $3, key_id = $4, updated_at = CURRENT_TIMESTAMP WHERE name = $1`,
		name, owner, blob, s.keys.CurrentID()); err != nil {
		return nil, nil, fmt.Errorf("settingsstore: update entry %s: write: %w", name, err)
	}
	if err := tx.Commit(); err != nil {
		return nil, nil, fmt.Errorf("settingsstore: update entry %s: commit: %w", name, err)
	}
	return merged, nil, nil
}

// check returns the field problems of an Update: those of the merged
// values, and a secret the merge would keep although a property it is bound
// to (x-binds-secrets) changed. The secret's own message wins on its field.
// Run under the entry's row lock, it compares with what is stored now.
func check(schema *settingsschema.Schema, stored, incoming, merged map[string]any) []storage.FieldError {
	fields := schema.SecretsToReenter(stored, incoming)
	for _, f := range schema.Validate(storage.Settings(merged)) {
		if !slices.ContainsFunc(fields, func(g storage.FieldError) bool { return g.Field == f.Field }) {
			fields = append(fields, f)
		}
	}
	sort.Slice(fields, func(i, j int) bool { return fields[i].Field < fields[j].Field })
	return fields
}

// Merge applies Update's merge rules without touching the database: a
// write-only field of schema that is missing, "" or null in incoming keeps
// its value from stored; every other field is taken from incoming.
func Merge(schema *settingsschema.Schema, stored, incoming map[string]any) map[string]any {
	merged := make(map[string]any, len(incoming))
	for k, v := range incoming {
		merged[k] = v
	}
	for _, f := range writeOnly(schema) {
		if !settingsschema.Blank(incoming[f]) {
			continue
		}
		delete(merged, f)
		if v, ok := stored[f]; ok && !settingsschema.Blank(v) {
			merged[f] = v
		}
	}
	return merged
}

// Rotate re-encrypts under the current key every configured entry written
// with another key and returns how many it re-encrypted. Each entry is
// re-read under its row lock, so a concurrent Update is never overwritten.
// Entries that cannot be decrypted are left as they are and reported
// together (each a *CorruptError) after the others are rotated.
func (s *Store) Rotate(ctx context.Context) (int, error) {
	if err := s.ready(); err != nil {
		return 0, err
	}
	current := s.keys.CurrentID()
	rows, err := s.db.QueryContext(ctx, `SELECT name FROM settings WHERE value IS NOT NULL AND key_id <> $1 ORDER BY name`, current)
	if err != nil {
		return 0, fmt.Errorf("settingsstore: rotate: list entries: %w", err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return 0, fmt.Errorf("settingsstore: rotate: list entries: %w", err)
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		rows.Close()
		return 0, fmt.Errorf("settingsstore: rotate: list entries: %w", err)
	}
	rows.Close()

	rotated := 0
	var errs []error
	for _, name := range names {
		done, err := s.rotateOne(ctx, name, current)
		if err != nil {
			var ce *CorruptError
			if errors.As(err, &ce) {
				errs = append(errs, err)
				continue
			}
			return rotated, err
		}
		if done {
			rotated++
		}
	}
	return rotated, errors.Join(errs...)
}

// rotateOne re-encrypts one entry if it is still under another key.
func (s *Store) rotateOne(ctx context.Context, name, current string) (bool, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("settingsstore: rotate entry %s: begin: %w", name, err)
	}
	defer func() { _ = tx.Rollback() }()
	// A no-op UPDATE locks the row (PostgreSQL) or the database (SQLite).
	if _, err := tx.ExecContext(ctx, `UPDATE settings SET key_id = key_id WHERE name = $1`, name); err != nil {
		return false, fmt.Errorf("settingsstore: rotate entry %s: lock: %w", name, err)
	}
	var blob []byte
	var keyID string
	var isNull bool
	err = tx.QueryRowContext(ctx, `SELECT value, value IS NULL, key_id FROM settings WHERE name = $1`, name).Scan(&blob, &isNull, &keyID)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil // removed meanwhile
	case err != nil:
		return false, fmt.Errorf("settingsstore: rotate entry %s: read: %w", name, err)
	case isNull || keyID == current:
		return false, nil // cleared or rewritten meanwhile
	}
	values, err := s.keys.decrypt(name, keyID, blob)
	if err != nil {
		return false, err
	}
	fresh, err := s.keys.encrypt(name, values)
	if err != nil {
		return false, err
	}
	// updated_at is left alone: the settings did not change.
	if _, err := tx.ExecContext(ctx, `UPDATE settings SET value = $2, key_id = $3 WHERE name = $1`, name, fresh, current); err != nil {
		return false, fmt.Errorf("settingsstore: rotate entry %s: write: %w", name, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("settingsstore: rotate entry %s: commit: %w", name, err)
	}
	return true, nil
}

// encrypt JSON-encodes values and seals them under the current key with
// the entry name as additional data.
func (kr *Keyring) encrypt(name string, values map[string]any) ([]byte, error) {
	if values == nil {
		values = map[string]any{}
	}
	plain, err := json.Marshal(values)
	if err != nil {
		return nil, fmt.Errorf("settingsstore: entry %s: values cannot be encoded as JSON: %w", name, err)
	}
	defer clear(plain)
	k := kr.current
	out := make([]byte, 1+nonceSize, 1+nonceSize+len(plain)+k.aead.Overhead())
	out[0] = blobVersion
	if _, err := io.ReadFull(rand.Reader, out[1:1+nonceSize]); err != nil {
		return nil, fmt.Errorf("settingsstore: entry %s: nonce: %w", name, err)
	}
	return k.aead.Seal(out, out[1:1+nonceSize], plain, []byte(name)), nil
}

// decrypt opens a stored blob of the entry written under keyID.
func (kr *Keyring) decrypt(name, keyID string, blob []byte) (map[string]any, error) {
	corrupt := func(format string, args ...any) error {
		return &CorruptError{Name: name, Reason: fmt.Sprintf(format, args...)}
	}
	if keyID == "" {
		return nil, corrupt("it has a value but no key id, so it was not written by the settings store; clear the value (set it to NULL) and save the settings again")
	}
	k, ok := kr.lookup(keyID)
	if !ok {
		return nil, corrupt("it was written with key id %s which is not APP_KEY (key id %s) or APP_KEY_PREVIOUS; set APP_KEY or APP_KEY_PREVIOUS to the key that wrote it", keyID, kr.CurrentID())
	}
	if len(blob) < 1+nonceSize+k.aead.Overhead() || blob[0] != blobVersion {
		v := -1
		if len(blob) > 0 {
			v = int(blob[0])
		}
		return nil, corrupt("the stored value (%d bytes, version byte %d) is not a version-%d encrypted blob; it was truncated or not written by the settings store", len(blob), v, blobVersion)
	}
	plain, err := k.aead.Open(nil, blob[1:1+nonceSize], blob[1+nonceSize:], []byte(name))
	if err != nil {
		return nil, corrupt("the stored bytes fail authentication under key id %s: they were modified, copied from another entry, or the key_id column does not name the key that wrote them", keyID)
	}
	defer clear(plain)
	var values map[string]any
	// The decoder's error may quote decrypted bytes, so it is not kept.
	if err := json.Unmarshal(plain, &values); err != nil || values == nil {
		return nil, corrupt("the decrypted value is not a JSON object")
	}
	return values, nil
}

// writeOnly returns the schema's write-only field names (none for nil).
func writeOnly(schema *settingsschema.Schema) []string {
	if schema == nil {
		return nil
	}
	return schema.WriteOnly()
}

// Stamps returns, for every entry whose name starts with prefix, a short
// stamp of its stored value: it changes with every save (each encryption
// uses a fresh nonce), so a node that remembers the stamp of the settings
// it applied can tell when another node saved newer ones. An entry without
// a value has the stamp "".
func (s *Store) Stamps(ctx context.Context, prefix string) (map[string]string, error) {
	if err := s.ready(); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT name, value FROM settings WHERE substr(name, 1, length($1)) = $1`, prefix)
	if err != nil {
		return nil, fmt.Errorf("settingsstore: reading the stamps of %s*: %w", prefix, err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name string
		var value []byte
		if err := rows.Scan(&name, &value); err != nil {
			return nil, fmt.Errorf("settingsstore: reading the stamps of %s*: %w", prefix, err)
		}
		out[name] = stampOf(value)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("settingsstore: reading the stamps of %s*: %w", prefix, err)
	}
	return out, nil
}

// Stamp returns the stamp (see Stamps) of one entry's stored value, "" when
// it has none or does not exist.
func (s *Store) Stamp(ctx context.Context, name string) (string, error) {
	if err := s.ready(); err != nil {
		return "", err
	}
	var value []byte
	err := s.db.QueryRowContext(ctx, `SELECT value FROM settings WHERE name = $1`, name).Scan(&value)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("settingsstore: reading the stamp of %s: %w", name, err)
	}
	return stampOf(value), nil
}

// stampOf is the stamp of a stored (encrypted) value.
func stampOf(value []byte) string {
	if value == nil {
		return ""
	}
	sum := sha256.Sum256(value)
	return hex.EncodeToString(sum[:8])
}
