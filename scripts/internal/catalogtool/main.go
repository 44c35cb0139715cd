// Command catalogtool is the helper of scripts/catalog: it keeps the dev
// marketplace key pair and writes a signed marketplace catalog for the
// archives scripts/package built.
//
//	catalogtool keys -dir KEYS_DIR [-forbid DIR]...
//	catalogtool index -keys KEYS_DIR -dir OUT_DIR [-checkout-base URL] [-valid-for DURATION] [-serial N]
//
// keys creates KEYS_DIR/marketplace.key (0600) and marketplace.pub on first
// use, and refuses a KEYS_DIR inside any -forbid folder (the repository, the
// served catalog). index reads manifest.json (embedded), finds each
// platform's archive <id>_<version>_<os>_<arch>.tar.gz in OUT_DIR, signs it,
// and writes OUT_DIR/index.json, index.json.sig and marketplace.pub, then
// checks the result as the host would (catalog.Fetch, VerifyArchive,
// Download). The private key is never printed or copied.
//
// Every index carries a serial and an expiry, so a host can refuse an old
// index replayed to it and a frozen one. The serial is the build time in
// Unix seconds, raised above the serial of the index.json already in
// OUT_DIR, so it grows across rebuilds even within one second or after the
// clock went back (-serial sets it; it must still be above the previous
// one). The index expires -valid-for after the build (default 30 days, at
// most 366 days): rebuild or re-sign it before then, or hosts refuse it.
package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	r2storage "github.com/magicads/r2storage"
	"github.com/magicads/r2storage/shared/catalog"
)

// defaultCheckoutBase is where scripts/devmarket listens by default.
const defaultCheckoutBase = "http://127.0.0.1:8090"

// defaultValidFor is how long an index is valid by default: long enough
// that a host never sees an index expire while the marketplace re-signs it
// on schedule, short enough that a frozen index stops working in a month.
const defaultValidFor = 30 * 24 * time.Hour

// maxValidFor caps -valid-for: an index valid for years is a frozen
// catalog waiting to happen.
const maxValidFor = 366 * 24 * time.Hour

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "catalogtool:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: catalogtool keys|index ...")
	}
	switch args[0] {
	case "keys":
		return keysCmd(args[1:], stdout)
	case "index":
		return indexCmd(ctx, args[1:], stdout)
	default:
		return fmt.Errorf("unknown command %q", args[0])
	}
}

// multiFlag collects a repeated string flag.
type multiFlag []string

// String joins the values.
func (m *multiFlag) String() string { return strings.Join(*m, ",") }

// Set adds a value.
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func keysCmd(args []string, stdout io.Writer) error {
	fl := flag.NewFlagSet("keys", flag.ContinueOnError)
	dir := fl.String("dir", "", "folder of marketplace.key and marketplace.pub")
	var forbid multiFlag
	fl.Var(&forbid, "forbid", "refuse a key folder inside this folder (repeatable)")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("keys: -dir is required")
	}
	for _, f := range forbid {
		inside, err := isInside(*dir, f)
		if err != nil {
			return fmt.Errorf("keys: %w", err)
		}
		if inside {
			return fmt.Errorf("keys: the key folder %s is inside %s; keep private keys out of the repository and the served catalog (set MAGICADS_DEV_KEYS)", *dir, f)
		}
	}
	pub, created, err := ensureKeys(*dir)
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	state := "existing"
	if created {
		state = "created"
	}
	_, err = fmt.Fprintf(stdout, "marketplace key %s (%s) in %s\n", catalog.KeyID(pub), state, *dir)
	return err
}

// ensureKeys loads the key pair in dir, creating it if there is none, and
// (re)writes a missing marketplace.pub from the private key.
func ensureKeys(dir string) (ed25519.PublicKey, bool, error) {
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
	pub := priv.Public().(ed25519.PublicKey)
	keys, err := catalog.LoadPublicKeys(filepath.Join(dir, catalog.PublicKeyFile))
	if err != nil {
		return pub, err
	}
	if len(keys) != 1 || !keys[0].Equal(pub) {
		return nil, fmt.Errorf("%s does not match %s", filepath.Join(dir, catalog.PublicKeyFile), catalog.PrivateKeyFile)
	}
	return pub, nil
}

func indexCmd(ctx context.Context, args []string, stdout io.Writer) error {
	fl := flag.NewFlagSet("index", flag.ContinueOnError)
	keysDir := fl.String("keys", "", "folder of marketplace.key and marketplace.pub")
	dir := fl.String("dir", "", "catalog folder holding the archives")
	checkoutBase := fl.String("checkout-base", defaultCheckoutBase, "base URL of the checkout (scripts/devmarket)")
	validFor := fl.Duration("valid-for", defaultValidFor, "how long hosts accept the index (at most 366 days); rebuild or re-sign it before then")
	serialFlag := fl.Int64("serial", 0, "the index serial; 0 is the build time in Unix seconds, raised above the previous index.json's serial")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *keysDir == "" || *dir == "" {
		return errors.New("index: -keys and -dir are required")
	}
	if *validFor <= 0 || *validFor > maxValidFor {
		return fmt.Errorf("index: -valid-for %s must be more than 0 and at most %s (e.g. 720h for 30 days)", *validFor, maxValidFor)
	}
	out, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	now := time.Now()
	serial, err := nextSerial(filepath.Join(out, catalog.IndexFile), *serialFlag, now)
	if err != nil {
		return fmt.Errorf("index: %w", err)
	}
	expires := now.Add(*validFor).UTC().Truncate(time.Second)
	pub, err := loadKeyPair(*keysDir)
	if err != nil {
		return fmt.Errorf("index: %w", err)
	}
	priv, err := catalog.LoadPrivateKey(filepath.Join(*keysDir, catalog.PrivateKeyFile))
	if err != nil {
		return fmt.Errorf("index: %w", err)
	}
	m, err := r2storage.LoadManifest()
	if err != nil {
		return fmt.Errorf("index: %w", err)
	}
	checkout, err := checkoutURL(*checkoutBase, m.ID)
	if err != nil {
		return fmt.Errorf("index: %w", err)
	}

	v := catalog.Version{
		Version:          m.Version,
		MinHostVersion:   m.MinHostVersion,
		ProtocolVersions: append([]int(nil), m.ProtocolVersions...),
		Archives:         map[string]catalog.Archive{},
	}
	for _, platform := range m.Platforms() {
		goos, goarch, _ := strings.Cut(platform, "/")
		name := fmt.Sprintf("%s_%s_%s_%s.tar.gz", m.ID, m.Version, goos, goarch)
		sum, size, err := hashFile(filepath.Join(out, name))
		if err != nil {
			return fmt.Errorf("index: %s: %w (run scripts/package %s first)", platform, err, out)
		}
		if err := checkSumFile(filepath.Join(out, name+".sha256"), sum); err != nil {
			return fmt.Errorf("index: %w", err)
		}
		sig, err := catalog.SignArchive(priv, m.ID, m.Version, platform, sum)
		if err != nil {
			return fmt.Errorf("index: %w", err)
		}
		v.Archives[platform] = catalog.Archive{URL: url.PathEscape(name), Size: size, SHA256: sum, Signature: sig}
	}
	p := catalog.Plugin{
		ID:          m.ID,
		Name:        m.Name,
		Description: m.Description,
		Kind:        m.Kind,
		Pricing:     catalog.Pricing{Model: m.Pricing.Model, FreeForExtendedLicense: m.Pricing.FreeForExtendedLicense},
		CheckoutURL: checkout,
		Versions:    []catalog.Version{v},
	}
	if m.Pricing.Price != nil {
		p.Pricing.Price = &catalog.Price{Amount: m.Pricing.Price.Amount, Currency: m.Pricing.Price.Currency}
	}
	idx := catalog.Index{SchemaVersion: catalog.SchemaVersion, Serial: serial, Expires: expires, Plugins: []catalog.Plugin{p}}
	data, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if _, err := catalog.ParseIndex(data); err != nil {
		return fmt.Errorf("index: the generated index is invalid: %w", err)
	}
	sig, err := catalog.SignIndex(priv, data)
	if err != nil {
		return fmt.Errorf("index: %w", err)
	}
	pubPEM, err := catalog.MarshalPublicKey(pub)
	if err != nil {
		return fmt.Errorf("index: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{catalog.PublicKeyFile, pubPEM}, {catalog.IndexFile, data}, {catalog.IndexSignatureFile, sig}} {
		if err := writeFile(filepath.Join(out, f.name), f.data, 0o644); err != nil {
			return fmt.Errorf("index: %w", err)
		}
	}
	if err := selfCheck(ctx, out, pub); err != nil {
		return fmt.Errorf("index: self-check of the written catalog failed: %w", err)
	}
	for _, name := range []string{catalog.IndexFile, catalog.IndexSignatureFile, catalog.PublicKeyFile} {
		if _, err := fmt.Fprintf(stdout, "wrote %s\n", filepath.Join(out, name)); err != nil {
			return err
		}
	}
	_, err = fmt.Fprintf(stdout, "catalog: %s %s, %d platforms, serial %d, expires %s, signed by key %s; checkout %s\n",
		m.ID, m.Version, len(v.Archives), serial, expires.Format(time.RFC3339), catalog.KeyID(pub), checkout)
	return err
}

// nextSerial returns the serial of the index about to be written at path:
// requested if set, else the build time in Unix seconds; either way above
// the serial of the index already at path (if it has one), so hosts that
// accepted that index accept this one.
func nextSerial(path string, requested int64, now time.Time) (int64, error) {
	var prev struct {
		Serial int64 `json:"serial"`
	}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return 0, err
	default:
		// An earlier index without a serial (or unreadable) counts as 0.
		_ = json.Unmarshal(data, &prev)
	}
	switch {
	case requested < 0:
		return 0, fmt.Errorf("-serial %d must be positive", requested)
	case requested == 0:
		return max(now.Unix(), prev.Serial+1), nil
	case requested <= prev.Serial:
		return 0, fmt.Errorf("-serial %d is not above %d, the serial of %s: hosts that accepted that index would refuse this one as stale; pass a larger -serial or leave it out", requested, prev.Serial, path)
	}
	return requested, nil
}

// checkoutURL is base + "/checkout/" + id; base must be an http(s) URL.
func checkoutURL(base, id string) (string, error) {
	u, err := url.Parse(strings.TrimRight(base, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("checkout base %q must be an http(s) URL without query, e.g. %s", base, defaultCheckoutBase)
	}
	return u.String() + "/checkout/" + url.PathEscape(id), nil
}

// selfCheck verifies the written catalog the way the host does.
func selfCheck(ctx context.Context, dir string, pub ed25519.PublicKey) error {
	keys := []ed25519.PublicKey{pub}
	indexPath := filepath.ToSlash(filepath.Join(dir, catalog.IndexFile))
	if !strings.HasPrefix(indexPath, "/") { // Windows: C:/… → /C:/…
		indexPath = "/" + indexPath
	}
	indexURL := (&url.URL{Scheme: "file", Path: indexPath}).String()
	idx, err := catalog.Fetch(ctx, nil, indexURL, keys)
	if err != nil {
		return err
	}
	if idx.Expired(time.Now()) {
		return fmt.Errorf("the index expired at %s", idx.Expires.Format(time.RFC3339))
	}
	for _, p := range idx.Plugins {
		for _, v := range p.Versions {
			for platform, a := range v.Archives {
				if err := catalog.VerifyArchive(a, p.ID, v.Version, platform, keys); err != nil {
					return err
				}
				u, err := catalog.ResolveURL(indexURL, a.URL)
				if err != nil {
					return err
				}
				sum, n, err := catalog.Download(ctx, nil, u, a.Size, io.Discard)
				if err != nil {
					return err
				}
				if err := catalog.CheckDownload(a, sum, n); err != nil {
					return fmt.Errorf("%s: %w", platform, err)
				}
			}
		}
	}
	return nil
}

// hashFile returns a file's sha256 (hex) and size.
func hashFile(name string) (string, int64, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", 0, err
	}
	defer func() { _ = f.Close() }()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// checkSumFile compares an archive's .sha256 file, when present, with sum.
func checkSumFile(name, sum string) error {
	data, err := os.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	fields := strings.Fields(string(data))
	if len(fields) == 0 || fields[0] != sum {
		return fmt.Errorf("%s does not match the archive's sha256 %s", name, sum)
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

// writeFile writes data to name through a temporary file in the same folder.
func writeFile(name string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), ".catalogtool-*")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := io.Copy(tmp, bytes.NewReader(data)); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), mode); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}
