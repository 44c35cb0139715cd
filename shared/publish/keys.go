package publish

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/magicads/r2storage/shared/catalog"
)

// EnsureKeys loads the marketplace key pair in dir (marketplace.key and
// marketplace.pub), creating both on first use (the private key 0600). A
// missing marketplace.pub is rewritten from the private key; a
// marketplace.pub without its private key, or of another key, is refused.
// It reports whether it created the pair.
func EnsureKeys(dir string) (ed25519.PublicKey, bool, error) {
	keyPath, pubPath := filepath.Join(dir, catalog.PrivateKeyFile), filepath.Join(dir, catalog.PublicKeyFile)
	_, kerr := os.Stat(keyPath)
	_, perr := os.Stat(pubPath)
	switch {
	case errors.Is(kerr, fs.ErrNotExist) && errors.Is(perr, fs.ErrNotExist):
		pub, _, err := catalog.GenerateKeyPair(dir)
		return pub, true, err
	case errors.Is(kerr, fs.ErrNotExist) && perr == nil:
		return nil, false, fmt.Errorf("%s exists without %s; restore the private key or remove the public key", pubPath, keyPath)
	case kerr != nil:
		return nil, false, kerr
	}
	pub, err := loadKeyPair(dir)
	if errors.Is(err, fs.ErrNotExist) && pub != nil {
		// The private key loaded but marketplace.pub is missing: rewrite it.
		pemData, merr := catalog.MarshalPublicKey(pub)
		if merr != nil {
			return nil, false, merr
		}
		return pub, false, writeFile(pubPath, pemData, 0o644)
	}
	return pub, false, err
}

// loadKeyPair loads dir's private key and checks marketplace.pub matches it.
// When only marketplace.pub fails to load, the private key's public key is
// returned with the error.
func loadKeyPair(dir string) (ed25519.PublicKey, error) {
	priv, err := catalog.LoadPrivateKey(filepath.Join(dir, catalog.PrivateKeyFile))
	if err != nil {
		return nil, err
	}
	pub, ok := priv.Public().(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("the private key is not ed25519")
	}
	keys, err := catalog.LoadPublicKeys(filepath.Join(dir, catalog.PublicKeyFile))
	if err != nil {
		return pub, err
	}
	if len(keys) != 1 || !keys[0].Equal(pub) {
		return nil, fmt.Errorf("%s does not match %s; restore the matching public key or delete it to have it rewritten", filepath.Join(dir, catalog.PublicKeyFile), catalog.PrivateKeyFile)
	}
	return pub, nil
}

// RefuseKeysInside returns an error when the keys folder is any of the
// forbidden folders or inside one (symbolic links resolved where they
// exist), so a private key never lands in a repository or a served
// catalog.
func RefuseKeysInside(keysDir string, forbidden ...string) error {
	for _, f := range forbidden {
		if f == "" {
			continue
		}
		inside, err := isInside(keysDir, f)
		if err != nil {
			return err
		}
		if inside {
			return fmt.Errorf("the key folder %s is inside %s; keep private keys out of the repository and the served catalog (pick a keys folder elsewhere, e.g. ~/.config/magicads/dev-marketplace, or set MAGICADS_DEV_KEYS)", keysDir, f)
		}
	}
	return nil
}

// isInside reports whether path is dir or inside it, following symlinks of
// the parts that exist.
func isInside(path, dir string) (bool, error) {
	p, err := resolve(path)
	if err != nil {
		return false, err
	}
	d, err := resolve(dir)
	if err != nil {
		return false, err
	}
	rel, err := filepath.Rel(d, p)
	if err != nil {
		return false, nil
	}
	return rel == "." || (rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))), nil
}

// resolve makes p absolute and resolves symlinks in its longest existing prefix.
func resolve(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	rest := ""
	for cur := abs; ; {
		if r, err := filepath.EvalSymlinks(cur); err == nil {
			return filepath.Join(r, rest), nil
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return abs, nil
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}
