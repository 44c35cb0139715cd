package settingsstore

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// KeyPrefix starts every APP_KEY: "base64:" followed by the standard
// base64 encoding of 32 random bytes.
const KeyPrefix = "base64:"

// KeySize is the length in bytes of an APP_KEY (AES-256).
const KeySize = 32

// KeyFileName is the file in the data directory that holds the generated
// APP_KEY when none is given.
const KeyFileName = "app.key"

// ErrInvalidKey is wrapped by every refusal of ParseKey. Its messages never
// repeat the refused value.
var ErrInvalidKey = errors.New("invalid key")

// keyFormat is appended to ParseKey's refusals: what a key must look like.
const keyFormat = `want "base64:" followed by the standard base64 of 32 random bytes, e.g. "base64:$(openssl rand -base64 32)"`

// Key is one APP_KEY: 32 secret bytes and their fingerprint. Printing or
// logging a Key shows only its ID.
type Key struct {
	raw  [KeySize]byte
	id   string
	aead cipher.AEAD
}

// ParseKey parses an APP_KEY value ("base64:" + base64 of exactly 32
// bytes; surrounding white space is ignored). A refusal wraps ErrInvalidKey
// and says what is wrong without echoing the value.
func ParseKey(s string) (Key, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Key{}, fmt.Errorf("%w: it is empty; %s", ErrInvalidKey, keyFormat)
	}
	rest, ok := strings.CutPrefix(s, KeyPrefix)
	if !ok {
		return Key{}, fmt.Errorf("%w: it does not start with %q; %s", ErrInvalidKey, KeyPrefix, keyFormat)
	}
	raw, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		// The decoder's error names an offset only, but it is not needed.
		return Key{}, fmt.Errorf("%w: the part after %q is not valid standard base64; %s", ErrInvalidKey, KeyPrefix, keyFormat)
	}
	defer clear(raw)
	if len(raw) != KeySize {
		return Key{}, fmt.Errorf("%w: it decodes to %d bytes, not %d; %s", ErrInvalidKey, len(raw), KeySize, keyFormat)
	}
	return newKey(raw)
}

// GenerateKey returns a new random key.
func GenerateKey() (Key, error) {
	raw := make([]byte, KeySize)
	defer clear(raw)
	if _, err := io.ReadFull(rand.Reader, raw); err != nil {
		return Key{}, fmt.Errorf("settingsstore: generate key: %w", err)
	}
	return newKey(raw)
}

// newKey builds a Key from exactly KeySize bytes.
func newKey(raw []byte) (Key, error) {
	var k Key
	copy(k.raw[:], raw)
	sum := sha256.Sum256(k.raw[:])
	k.id = hex.EncodeToString(sum[:8])
	block, err := aes.NewCipher(k.raw[:])
	if err != nil {
		return Key{}, fmt.Errorf("settingsstore: key %s: %w", k.id, err)
	}
	if k.aead, err = cipher.NewGCM(block); err != nil {
		return Key{}, fmt.Errorf("settingsstore: key %s: %w", k.id, err)
	}
	return k, nil
}

// ID returns the key's fingerprint: the first 16 hex characters of the
// SHA-256 of its bytes. It is stored beside every value the key encrypts.
func (k Key) ID() string { return k.id }

// valid reports whether k came from ParseKey or GenerateKey.
func (k Key) valid() bool { return k.aead != nil }

// Encode returns the key in APP_KEY form ("base64:…"). The result is the
// secret itself: write it only where APP_KEY belongs, never to a log.
func (k Key) Encode() string { return KeyPrefix + base64.StdEncoding.EncodeToString(k.raw[:]) }

// String shows the key's ID, never its bytes.
func (k Key) String() string { return "settingsstore.Key(" + k.id + ")" }

// GoString shows the key's ID, never its bytes.
func (k Key) GoString() string { return k.String() }

// Format prints the key's ID for every fmt verb, never its bytes.
func (k Key) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, k.String()) }

// LogValue logs the key's ID, never its bytes.
func (k Key) LogValue() slog.Value { return slog.StringValue(k.String()) }

// Keyring is the current APP_KEY, which encrypts every write, and the
// previous keys still accepted for decryption while APP_KEY is rotated.
// Printing or logging a Keyring shows only key IDs.
type Keyring struct {
	current Key
	byID    map[string]Key
	ids     []string
}

// NewKeyring returns a keyring that encrypts with current and decrypts with
// current and every previous key. Previous keys equal to current or to an
// earlier one are ignored.
func NewKeyring(current Key, previous ...Key) (*Keyring, error) {
	if !current.valid() {
		return nil, errors.New("settingsstore: keyring: the current key is the zero Key; use ParseKey or GenerateKey")
	}
	kr := &Keyring{current: current, byID: map[string]Key{current.id: current}, ids: []string{current.id}}
	for i, k := range previous {
		if !k.valid() {
			return nil, fmt.Errorf("settingsstore: keyring: previous key %d is the zero Key; use ParseKey or GenerateKey", i+1)
		}
		if _, dup := kr.byID[k.id]; dup {
			continue
		}
		kr.byID[k.id] = k
		kr.ids = append(kr.ids, k.id)
	}
	return kr, nil
}

// CurrentID returns the ID of the key every write uses.
func (kr *Keyring) CurrentID() string { return kr.current.id }

// IDs returns the IDs of every key the keyring decrypts with, the current
// key first.
func (kr *Keyring) IDs() []string { return append([]string(nil), kr.ids...) }

// lookup returns the key with the ID.
func (kr *Keyring) lookup(id string) (Key, bool) {
	k, ok := kr.byID[id]
	return k, ok
}

// String lists the key IDs, never key bytes.
func (kr Keyring) String() string {
	return "settingsstore.Keyring(current " + kr.current.id + ", accepted " + strings.Join(kr.ids, ",") + ")"
}

// Format prints the key IDs for every fmt verb, never key bytes.
func (kr Keyring) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, kr.String()) }

// LogValue logs the key IDs, never key bytes.
func (kr Keyring) LogValue() slog.Value { return slog.StringValue(kr.String()) }

// LoadKeyring builds the host's keyring.
//
// env is the APP_KEY value. When it is empty the key is read from
// <dataDir>/app.key, or generated there (mode 0600, created atomically: a
// concurrent first start of another process never gets a different key) and
// generated is true so the caller can warn that the key must be backed up.
// When env is set and <dataDir>/app.key holds a different valid key, that
// key is still accepted for decryption, so moving from a generated key to
// an explicit APP_KEY keeps the stored settings readable until Rotate.
//
// previous is APP_KEY_PREVIOUS: an optional comma-separated list of older
// keys still accepted for decryption. Errors say which key is wrong and
// why, never its value; nothing secret is logged.
func LoadKeyring(env string, previous string, dataDir string, logger *slog.Logger) (*Keyring, bool, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var (
		current   Key
		generated bool
		extra     []Key
		err       error
	)
	path := ""
	if dataDir != "" {
		path = filepath.Join(dataDir, KeyFileName)
	}
	if strings.TrimSpace(env) != "" {
		if current, err = ParseKey(env); err != nil {
			return nil, false, fmt.Errorf("settingsstore: APP_KEY: %w", err)
		}
		if path != "" {
			if fileKey, ok := readKeyFileIfValid(path, logger); ok && fileKey.id != current.id {
				logger.Info("APP_KEY is set; the key in the data directory is still accepted for decryption until settings are rotated",
					"path", path, "file_key_id", fileKey.id, "app_key_id", current.id)
				extra = append(extra, fileKey)
			}
		}
	} else {
		if path == "" {
			return nil, false, errors.New("settingsstore: APP_KEY is not set and there is no data directory to keep a generated key in")
		}
		if current, generated, err = loadOrCreateKeyFile(path, logger); err != nil {
			return nil, false, err
		}
	}
	n := 0
	for item := range strings.SplitSeq(previous, ",") {
		if strings.TrimSpace(item) == "" {
			continue
		}
		n++
		k, err := ParseKey(item)
		if err != nil {
			return nil, false, fmt.Errorf("settingsstore: APP_KEY_PREVIOUS entry %d: %w", n, err)
		}
		extra = append(extra, k)
	}
	kr, err := NewKeyring(current, extra...)
	if err != nil {
		return nil, false, err
	}
	logger.Info("settings encryption keys loaded", "current_key_id", kr.CurrentID(), "accepted_key_ids", kr.IDs())
	return kr, generated, nil
}

// readKeyFileIfValid reads an existing key file; a missing file is not
// reported, an unreadable or invalid one is logged and ignored.
func readKeyFileIfValid(path string, logger *slog.Logger) (Key, bool) {
	k, err := readKeyFile(path, logger)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Key{}, false
	case err != nil:
		logger.Warn("ignoring the key file in the data directory because APP_KEY is set", "path", path, "error", err)
		return Key{}, false
	}
	return k, true
}

// readKeyFile reads and parses a key file, warning when other users can
// read it.
func readKeyFile(path string, logger *slog.Logger) (Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Key{}, fmt.Errorf("settingsstore: read APP_KEY file %s: %w", path, err)
	}
	defer clear(data)
	k, err := ParseKey(string(data))
	if err != nil {
		return Key{}, fmt.Errorf("settingsstore: APP_KEY file %s: %w", path, err)
	}
	if runtime.GOOS != "windows" {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			logger.Warn("the APP_KEY file can be read by other users; run chmod 600 on it", "path", path, "mode", fi.Mode().Perm().String())
		}
	}
	return k, nil
}

// loadOrCreateKeyFile reads the key file, or creates it with a new key.
// The file appears complete or not at all: the key is written to a private
// temporary file which is then hard-linked into place, which fails rather
// than replaces when another process created the file first.
func loadOrCreateKeyFile(path string, logger *slog.Logger) (Key, bool, error) {
	k, err := readKeyFile(path, logger)
	if err == nil {
		logger.Info("APP_KEY is not set; using the key in the data directory", "path", path, "key_id", k.id)
		return k, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return Key{}, false, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Key{}, false, fmt.Errorf("settingsstore: create data directory for the APP_KEY file: %w", err)
	}
	k, err = GenerateKey()
	if err != nil {
		return Key{}, false, err
	}
	created, err := writeKeyFileAtomically(path, []byte(k.Encode()+"\n"))
	if err != nil {
		return Key{}, false, err
	}
	if !created {
		// Another process created the file between our read and our link.
		k, err = readKeyFile(path, logger)
		if err != nil {
			return Key{}, false, err
		}
		logger.Info("APP_KEY is not set; using the key another process just generated in the data directory", "path", path, "key_id", k.id)
		return k, false, nil
	}
	logger.Info("APP_KEY is not set; generated a new key in the data directory", "path", path, "key_id", k.id)
	return k, true, nil
}

// writeKeyFileAtomically creates path with data and mode 0600 unless it
// exists. created is false when path already existed.
func writeKeyFileAtomically(path string, data []byte) (created bool, err error) {
	defer clear(data)
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+KeyFileName+".tmp-*")
	if err != nil {
		return false, fmt.Errorf("settingsstore: create APP_KEY file in %s: %w", dir, err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)
	if err := writeSyncClose(tmp, data); err != nil {
		return false, fmt.Errorf("settingsstore: write APP_KEY file in %s: %w", dir, err)
	}
	linkErr := os.Link(tmpName, path)
	switch {
	case linkErr == nil:
	case errors.Is(linkErr, fs.ErrExist):
		return false, nil
	default:
		// No hard links on this file system: create the file exclusively
		// instead (still never replacing one another process wrote).
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("settingsstore: create APP_KEY file %s: %w (hard link: %v)", path, err, linkErr)
		}
		if err := writeSyncClose(f, data); err != nil {
			_ = os.Remove(path)
			return false, fmt.Errorf("settingsstore: write APP_KEY file %s: %w", path, err)
		}
	}
	syncDir(dir)
	return true, nil
}

// writeSyncClose writes data to f, flushes it to disk and closes f.
func writeSyncClose(f *os.File, data []byte) error {
	if runtime.GOOS != "windows" {
		if err := f.Chmod(0o600); err != nil {
			f.Close()
			return err
		}
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// syncDir flushes a directory entry to disk, best effort.
func syncDir(dir string) {
	if runtime.GOOS == "windows" {
		return
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}
