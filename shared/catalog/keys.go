package catalog

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// maxKeyFileBytes caps a key file.
const maxKeyFileBytes = 64 << 10

// LoadPublicKeys reads trusted marketplace public keys from files (see the
// package documentation for the format); a file may hold several keys.
func LoadPublicKeys(paths ...string) ([]ed25519.PublicKey, error) {
	if len(paths) == 0 {
		return nil, errors.New("load public keys: no key file given")
	}
	var keys []ed25519.PublicKey
	for _, p := range paths {
		data, err := readKeyFile(p)
		if err != nil {
			return nil, fmt.Errorf("load public key: %w", err)
		}
		ks, err := ParsePublicKeys(data)
		if err != nil {
			return nil, fmt.Errorf("load public key %s: %w", p, err)
		}
		keys = append(keys, ks...)
	}
	return keys, nil
}

// ParsePublicKeys parses the contents of a public key file (see LoadPublicKeys).
func ParsePublicKeys(data []byte) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	if bytes.Contains(data, []byte("-----BEGIN")) {
		rest := data
		for {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			if block.Type != "PUBLIC KEY" {
				return nil, fmt.Errorf("%w: PEM block %q, want \"PUBLIC KEY\"", ErrInvalid, block.Type)
			}
			k, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
			}
			ek, ok := k.(ed25519.PublicKey)
			if !ok {
				return nil, fmt.Errorf("%w: a %T public key, want ed25519", ErrInvalid, k)
			}
			keys = append(keys, ek)
		}
		if len(bytes.TrimSpace(rest)) != 0 {
			return nil, fmt.Errorf("%w: unreadable data after the PEM blocks", ErrInvalid)
		}
	} else {
		for i, line := range strings.Split(string(data), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			raw, err := b64().DecodeString(line)
			if err != nil || len(raw) != ed25519.PublicKeySize {
				return nil, fmt.Errorf("%w: line %d is not base64 of a 32-byte ed25519 public key", ErrInvalid, i+1)
			}
			keys = append(keys, ed25519.PublicKey(raw))
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no public key found", ErrInvalid)
	}
	return keys, nil
}

// MarshalPublicKey returns pub as a PEM "PUBLIC KEY" (PKIX) block, the
// format of marketplace.pub.
func MarshalPublicKey(pub ed25519.PublicKey) ([]byte, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: not an ed25519 public key", ErrInvalid)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("marshal public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// LoadPrivateKey reads a marketplace private key file (see the package
// documentation). Errors never include the file's contents.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	if runtime.GOOS != "windows" {
		fi, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("load private key: %w", err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("load private key %s: mode %04o is readable by others; run chmod 600 %s", path, fi.Mode().Perm(), path)
		}
	}
	data, err := readKeyFile(path)
	if err != nil {
		return nil, fmt.Errorf("load private key: %w", err)
	}
	k, err := parsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("load private key %s: %w", path, err)
	}
	return k, nil
}

func parsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	if bytes.Contains(data, []byte("-----BEGIN")) {
		block, rest := pem.Decode(data)
		if block == nil || block.Type != "PRIVATE KEY" {
			return nil, fmt.Errorf("%w: want one PEM \"PRIVATE KEY\" (PKCS#8) block", ErrInvalid)
		}
		if len(bytes.TrimSpace(rest)) != 0 {
			return nil, fmt.Errorf("%w: unreadable data after the PEM block", ErrInvalid)
		}
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: not a PKCS#8 private key", ErrInvalid)
		}
		ek, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%w: a %T private key, want ed25519", ErrInvalid, k)
		}
		return ek, nil
	}
	seed, err := b64().DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%w: neither PEM PKCS#8 nor base64 of a 32-byte ed25519 seed", ErrInvalid)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// readKeyFile reads a small regular file.
func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxKeyFileBytes {
		return nil, fmt.Errorf("%s: %w (over %d bytes)", path, ErrTooLarge, maxKeyFileBytes)
	}
	return data, nil
}

// GenerateKeyPair creates a new marketplace key pair in dir (created 0700 if
// missing): marketplace.key (PEM PKCS#8, 0600) and marketplace.pub (PEM
// PKIX, 0644). It refuses to overwrite an existing key (the error wraps
// fs.ErrExist).
func GenerateKeyPair(dir string) (ed25519.PublicKey, ed25519.PrivateKey, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("generate key pair: %w", err)
	}
	keyPath, pubPath := filepath.Join(dir, PrivateKeyFile), filepath.Join(dir, PublicKeyFile)
	for _, p := range []string{keyPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return nil, nil, fmt.Errorf("generate key pair: %s: %w", p, fs.ErrExist)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("generate key pair: %w", err)
		}
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key pair: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key pair: %w", err)
	}
	pubPEM, err := MarshalPublicKey(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key pair: %w", err)
	}
	if err := writeNew(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, nil, fmt.Errorf("generate key pair: %w", err)
	}
	if err := writeNew(pubPath, pubPEM, 0o644); err != nil {
		_ = os.Remove(keyPath)
		return nil, nil, fmt.Errorf("generate key pair: %w", err)
	}
	return pub, priv, nil
}

// writeNew creates name (failing if it exists), writes data, syncs and sets mode.
func writeNew(name string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	cerr := f.Close()
	if werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(name, mode)
	}
	if werr != nil {
		_ = os.Remove(name)
		return fmt.Errorf("write %s: %w", name, werr)
	}
	return nil
}
