package auth

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// PasswordFile is the file in the data dir that holds the generated admin
// password's hash.
const PasswordFile = "admin.pw"

// PBKDF2Iterations is the PBKDF2-HMAC-SHA256 work factor for stored hashes
// (OWASP's 2023 recommendation).
const PBKDF2Iterations = 600_000

const hashPrefix = "pbkdf2-sha256"

// Password checks candidate admin passwords; it never holds the plaintext.
//
// Two forms exist. A password from MAGICADS_ADMIN_PASSWORD is already in
// the process's memory (its environment), and its verifier is never written
// anywhere, so a slow KDF would protect nothing: it is kept as an HMAC-SHA256
// under a random per-process key and checked in constant time, which costs
// nothing per login. A generated password's hash is written to disk, where a
// leaked copy could be attacked offline: it is PBKDF2-HMAC-SHA256 with a
// random 16-byte salt and 600,000 iterations (crypto/pbkdf2; the standard
// library has no scrypt or argon2), about 0.1 s per check. Logins are rate
// limited and the Auth bounds concurrent checks, so this is not a CPU sink.
type Password struct {
	key, sum []byte // HMAC form
	salt     []byte // PBKDF2 form (with sum)
	iter     int
}

// NewPassword returns a verifier for a plaintext password held in memory;
// an empty plaintext matches nothing.
func NewPassword(plain string) *Password {
	if plain == "" {
		return &Password{}
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(plain))
	return &Password{key: key, sum: m.Sum(nil)}
}

// slow reports whether Verify runs the PBKDF2 work factor.
func (p *Password) slow() bool { return p != nil && p.iter > 0 }

// Verify reports whether candidate is the password, in constant time.
func (p *Password) Verify(candidate string) bool {
	switch {
	case p == nil || len(p.sum) == 0 || candidate == "":
		return false
	case p.iter > 0:
		dk, err := pbkdf2.Key(sha256.New, candidate, p.salt, p.iter, len(p.sum))
		return err == nil && subtle.ConstantTimeCompare(dk, p.sum) == 1
	default:
		m := hmac.New(sha256.New, p.key)
		m.Write([]byte(candidate))
		return hmac.Equal(m.Sum(nil), p.sum)
	}
}

// hashPassword returns the stored form of plain: pbkdf2-sha256$ITER$SALT$HASH.
func hashPassword(plain string, iter int) (string, error) {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	dk, err := pbkdf2.Key(sha256.New, plain, salt, iter, 32)
	if err != nil {
		return "", err
	}
	enc := base64.RawStdEncoding
	return fmt.Sprintf("%s$%d$%s$%s\n", hashPrefix, iter, enc.EncodeToString(salt), enc.EncodeToString(dk)), nil
}

// parseHash reads the stored form written by hashPassword.
func parseHash(data []byte) (*Password, error) {
	parts := strings.Split(strings.TrimSpace(string(data)), "$")
	if len(parts) != 4 || parts[0] != hashPrefix {
		return nil, errors.New("not a " + hashPrefix + " hash")
	}
	iter, err := strconv.Atoi(parts[1])
	if err != nil || iter < 1 || iter > 100_000_000 {
		return nil, errors.New("bad iteration count")
	}
	enc := base64.RawStdEncoding
	salt, err1 := enc.DecodeString(parts[2])
	sum, err2 := enc.DecodeString(parts[3])
	if err1 != nil || err2 != nil || len(salt) < 8 || len(sum) < 16 {
		return nil, errors.New("bad salt or hash encoding")
	}
	return &Password{salt: salt, sum: sum, iter: iter}, nil
}

// LoadPassword returns the admin password's verifier. A non-empty plain
// (MAGICADS_ADMIN_PASSWORD) wins and the stored file is left alone.
// Otherwise the hash in dataDir/admin.pw is used; on first run a random
// password is generated, only its hash is written (mode 0600), and the
// password is written once to out as "admin password: …". Later runs log
// where the hash lives and how to replace it. No log line holds a password.
func LoadPassword(plain, dataDir string, out io.Writer, log *slog.Logger) (*Password, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if plain != "" {
		return envPassword(plain, log), nil
	}
	file := filepath.Join(dataDir, PasswordFile)
	p, err := readHash(file)
	if err == nil {
		log.Info("admin password: using the stored hash; set MAGICADS_ADMIN_PASSWORD to use another password, or delete the file to generate a new one", "file", file)
		return p, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	plain = rand.Text()
	stored, err := hashPassword(plain, PBKDF2Iterations)
	if err != nil {
		return nil, fmt.Errorf("hashing the admin password: %w", err)
	}
	created, err := writeNew(file, []byte(stored))
	if err != nil {
		return nil, fmt.Errorf("admin password file %s: %w", file, err)
	}
	if !created { // another process created it first: use that one
		return readHash(file)
	}
	if out != nil {
		fmt.Fprintf(out, "admin password: %s\n", plain)
		fmt.Fprintf(out, "  (user admin; shown only this once; stored hashed in %s; set MAGICADS_ADMIN_PASSWORD to choose your own)\n", file)
	}
	return parseHash([]byte(stored))
}

// envPassword is the verifier of MAGICADS_ADMIN_PASSWORD.
func envPassword(plain string, log *slog.Logger) *Password {
	if len(plain) < 12 {
		log.Warn("MAGICADS_ADMIN_PASSWORD is shorter than 12 characters; choose a longer one")
	}
	return NewPassword(plain)
}

// LoadSharedPassword is LoadPassword for host nodes sharing one database
// (PostgreSQL): the generated password's hash is kept in the database's
// admin_password table (migration 000013), so every node accepts the
// same password. A non-empty plain (MAGICADS_ADMIN_PASSWORD) wins and the
// table is left alone. Otherwise the stored hash is used; without one, the
// hash of dataDir/admin.pw (an older version's) is moved into the table,
// or else a random password is generated and its hash stored. Nodes that
// start together each insert theirs only if the table has none (INSERT …
// ON CONFLICT DO NOTHING) and then read back the one that won: exactly one
// hash is kept, and only the node whose hash it is writes the password to
// out. An admin.pw the table supersedes is removed. No log line holds a
// password.
func LoadSharedPassword(ctx context.Context, db *sql.DB, plain, dataDir string, out io.Writer, log *slog.Logger) (*Password, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if plain != "" {
		return envPassword(plain, log), nil
	}
	file := filepath.Join(dataDir, PasswordFile)
	stored, found, err := readSharedHash(ctx, db)
	if err != nil {
		return nil, err
	}
	if found {
		p, err := parseHash([]byte(stored))
		if err != nil {
			return nil, fmt.Errorf("the admin password hash in the database (table admin_password) is unreadable (%v): delete its row to generate a new password at the next start, or set MAGICADS_ADMIN_PASSWORD", err)
		}
		if err := removeSuperseded(file, log); err != nil {
			return nil, err
		}
		log.Info("admin password: using the hash stored in the database, shared by every node; set MAGICADS_ADMIN_PASSWORD to use another password, or delete the row of table admin_password and restart to generate a new one")
		return p, nil
	}
	mine, generated := "", ""
	switch data, err := os.ReadFile(file); {
	case err == nil: // an older version's file: its password moves into the database
		if _, err := parseHash(data); err != nil {
			return nil, fmt.Errorf("admin password file %s is unreadable (%v): delete it to generate a new password, or set MAGICADS_ADMIN_PASSWORD", file, err)
		}
		mine = strings.TrimSpace(string(data)) + "\n"
	case errors.Is(err, fs.ErrNotExist):
		generated = rand.Text()
		if mine, err = hashPassword(generated, PBKDF2Iterations); err != nil {
			return nil, fmt.Errorf("hashing the admin password: %w", err)
		}
	default:
		return nil, fmt.Errorf("admin password file %s: %w", file, err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO admin_password (id, hash, created_ms) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING`,
		mine, time.Now().UnixMilli()); err != nil {
		return nil, fmt.Errorf("storing the admin password hash in the database: %w (check that the database is reachable and migrated)", err)
	}
	stored, found, err = readSharedHash(ctx, db)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, errors.New("the admin password hash stored in the database is gone again: another process deleted the row of table admin_password; restart the host")
	}
	p, err := parseHash([]byte(stored))
	if err != nil {
		return nil, fmt.Errorf("the admin password hash in the database (table admin_password) is unreadable (%v): delete its row to generate a new password at the next start, or set MAGICADS_ADMIN_PASSWORD", err)
	}
	won := stored == mine
	switch {
	case won && generated != "":
		if out != nil {
			fmt.Fprintf(out, "admin password: %s\n", generated)
			fmt.Fprintf(out, "  (user admin; shown only this once; stored hashed in the database, shared by every node; set MAGICADS_ADMIN_PASSWORD to choose your own)\n")
		}
	case won:
		log.Info("admin password: moved the hash of the data dir's admin.pw into the database, where every node shares it", "file", file)
	case generated == "":
		log.Warn("admin password: another node stored its admin password in the database first; that one is now every node's, and this data dir's admin.pw is no longer used", "file", file)
	}
	if err := removeSuperseded(file, log); err != nil {
		return nil, err
	}
	return p, nil
}

// readSharedHash reads the admin_password row.
func readSharedHash(ctx context.Context, db *sql.DB) (hash string, found bool, err error) {
	err = db.QueryRowContext(ctx, `SELECT hash FROM admin_password WHERE id = 1`).Scan(&hash)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("reading the admin password hash from the database: %w (check that the database is reachable and migrated)", err)
	}
	return hash, true, nil
}

// removeSuperseded removes a data dir's admin.pw once the database holds
// the shared hash: it no longer signs anyone in, and a secret kept for
// nothing is one more to leak.
func removeSuperseded(file string, log *slog.Logger) error {
	err := os.Remove(file)
	switch {
	case err == nil:
		log.Info("admin password: removed the data dir's admin.pw; the hash in the database replaces it", "file", file)
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("removing %s, which the admin password hash in the database replaces: %w (remove it by hand)", file, err)
	}
	return nil
}

func readHash(file string) (*Password, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	p, err := parseHash(data)
	if err != nil {
		return nil, fmt.Errorf("admin password file %s is unreadable (%v): delete it to generate a new password, or set MAGICADS_ADMIN_PASSWORD", file, err)
	}
	return p, nil
}

// writeNew writes data to file with mode 0600 unless file exists; it writes
// a temp file and links it into place, so no half-written file is seen.
func writeNew(file string, data []byte) (created bool, err error) {
	tmp, err := os.CreateTemp(filepath.Dir(file), ".admin.pw-*")
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return false, err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Close(); err != nil {
		return false, err
	}
	err = os.Link(tmp.Name(), file)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrExist):
		return false, nil
	}
	// No hard links on this file system: fall back to an exclusive create.
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	_, err = io.Copy(f, bytes.NewReader(data))
	return true, errors.Join(err, f.Sync(), f.Close())
}
