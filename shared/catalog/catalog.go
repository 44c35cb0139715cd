// Package catalog is the MagicAds plugin marketplace format: the signed
// index (index.json and index.json.sig), the signed plugin archives it
// lists, purchase receipts and the ed25519 keys that sign all three.
//
// Trust model (after Terraform's provider package authentication and
// Mattermost's plugin signatures): the host trusts one or more marketplace
// public keys. It fetches index.json and index.json.sig, verifies the
// signature over the exact bytes before parsing them (so pricing and
// checkout URLs can't be tampered with), then parses strictly. Each archive
// carries its own signature over ArchiveMessage (plugin id, version,
// platform and the archive's sha256), so a signature can't be moved to
// another plugin, version or platform. The installer downloads the archive
// with Download, which hashes while streaming, and compares the result with
// the signed sha256 (CheckDownload).
//
// Signatures are base64 of an 8-byte key id (the first 8 bytes of the
// SHA-256 of the 32-byte public key, as in minisign) followed by the 64-byte
// ed25519 signature. The key id lets a verifier tell "signed by a key I
// don't trust" (ErrUnknownKey) from "tampered" (ErrBadSignature). To check
// one with openssl, drop the first 8 decoded bytes:
//
//	base64 -d index.json.sig | tail -c 64 > sig.bin
//	openssl pkeyutl -verify -pubin -inkey marketplace.pub -rawin -in index.json -sigfile sig.bin
//
// Key files. A public key file (marketplace.pub) holds one or more PEM
// blocks of type "PUBLIC KEY" (PKIX, as `openssl pkey -pubout` writes), or
// one or more lines of standard base64 of the raw 32-byte key (blank lines
// and lines starting with # ignored). A private key file (marketplace.key)
// holds one PEM block of type "PRIVATE KEY" (PKCS#8, as `openssl genpkey
// -algorithm ed25519` writes), or one line of standard base64 of the 32-byte
// seed; on Unix it must not be readable by group or others.
package catalog

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"
)

// File names of a marketplace directory.
const (
	// IndexFile is the marketplace index.
	IndexFile = "index.json"
	// IndexSignatureFile is the detached signature of IndexFile, next to it.
	IndexSignatureFile = "index.json.sig"
	// PublicKeyFile is the marketplace public key (PEM, PKIX "PUBLIC KEY").
	PublicKeyFile = "marketplace.pub"
	// PrivateKeyFile is the marketplace private key (PEM, PKCS#8 "PRIVATE KEY", mode 0600).
	PrivateKeyFile = "marketplace.key"
)

// SchemaVersion is the only index.json schema_version this package reads and writes.
const SchemaVersion = 1

// MaxIndexBytes caps the size of index.json.
const MaxIndexBytes = 1 << 20

// Pricing models.
const (
	// PricingFree plugins install without a purchase.
	PricingFree = "free"
	// PricingPaid plugins need a purchase receipt (or an Extended License
	// when FreeForExtendedLicense is set).
	PricingPaid = "paid"
)

// Errors. Every error this package returns for a document or signature that
// must not be used wraps one of these (test with errors.Is).
var (
	// ErrUnsigned means there is no signature at all (missing .sig file, empty signature).
	ErrUnsigned = errors.New("not signed")
	// ErrBadSignature means a signature is malformed, or was made by a trusted key but does not match the data (tampered).
	ErrBadSignature = errors.New("bad signature")
	// ErrUnknownKey means the signature was made by a key that is not among the trusted keys.
	ErrUnknownKey = errors.New("signed by a key that is not trusted")
	// ErrInvalid means a document is malformed or fails validation.
	ErrInvalid = errors.New("invalid")
	// ErrTooLarge means a download or document exceeds its size cap.
	ErrTooLarge = errors.New("too large")
	// ErrChecksum means downloaded bytes do not match the signed size or sha256.
	ErrChecksum = errors.New("checksum mismatch")
)

// Index is index.json, the marketplace catalog.
type Index struct {
	// SchemaVersion is SchemaVersion.
	SchemaVersion int `json:"schema_version"`
	// Serial orders the marketplace's indexes: every index it signs carries
	// a larger serial than the one before (scripts/catalog uses the build
	// time in Unix seconds). A host refuses an index whose serial is lower
	// than one it has accepted, so an old index can't be replayed.
	Serial int64 `json:"serial"`
	// Expires is when the index stops being valid (RFC 3339). A host refuses
	// it from then on, so a frozen catalog can't be served forever; the
	// marketplace re-signs its index before then.
	Expires time.Time `json:"expires"`
	// Plugins are the plugins on offer.
	Plugins []Plugin `json:"plugins"`
}

// Plugin is one plugin of the catalog.
type Plugin struct {
	// ID is the stable plugin id, e.g. "cloudflare-r2".
	ID string `json:"id"`
	// Name is the display name.
	Name string `json:"name"`
	// Description is the marketplace card text.
	Description string `json:"description"`
	// Kind is what the plugin plugs into, e.g. "storage-provider".
	Kind string `json:"kind"`
	// Pricing says how the plugin is sold.
	Pricing Pricing `json:"pricing"`
	// CheckoutURL is the absolute http(s) URL of the plugin's checkout page; required for paid plugins.
	CheckoutURL string `json:"checkout_url,omitempty"`
	// Versions are the published versions, in any order.
	Versions []Version `json:"versions"`
}

// Pricing is a plugin's pricing block, as in manifest.json.
type Pricing struct {
	// Model is PricingFree or PricingPaid.
	Model string `json:"model"`
	// Price is the list price; required for paid plugins.
	Price *Price `json:"price,omitempty"`
	// FreeForExtendedLicense lets Extended License holders install a paid plugin without buying it.
	FreeForExtendedLicense bool `json:"free_for_extended_license"`
}

// Price is an amount in a currency, e.g. {"amount": "29.00", "currency": "USD"}.
type Price struct {
	// Amount is a decimal string with two decimals.
	Amount string `json:"amount"`
	// Currency is an ISO 4217 code.
	Currency string `json:"currency"`
}

// Version is one published version of a plugin.
type Version struct {
	// Version is the plugin's semantic version.
	Version string `json:"version"`
	// MinHostVersion is the oldest host version the plugin runs on.
	MinHostVersion string `json:"min_host_version"`
	// ProtocolVersions are the plugin protocol versions the binary speaks.
	ProtocolVersions []int `json:"protocol_versions"`
	// Archives maps "os/arch" to that platform's archive.
	Archives map[string]Archive `json:"archives"`
}

// Archive is one downloadable plugin archive.
type Archive struct {
	// URL is relative to the index URL, or absolute (http, https, or file for a file:// index).
	URL string `json:"url"`
	// Size is the archive's size in bytes.
	Size int64 `json:"size"`
	// SHA256 is the archive's sha256, 64 lowercase hex digits.
	SHA256 string `json:"sha256"`
	// Signature is the base64 signature (key id + ed25519) over ArchiveMessage.
	Signature string `json:"signature"`
}

var (
	idRE       = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,62}$`)
	kindRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	platformRE = regexp.MustCompile(`^[a-z0-9]{1,16}/[a-z0-9]{1,16}$`)
	sha256RE   = regexp.MustCompile(`^[0-9a-f]{64}$`)
	semverRE   = regexp.MustCompile(`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(?:-((?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*)?$`)
	amountRE   = regexp.MustCompile(`^(?:0|[1-9][0-9]{0,8})\.[0-9]{2}$`)
	currencyRE = regexp.MustCompile(`^[A-Z]{3}$`)
)

// ValidID reports whether id is a valid plugin id (2–63 lowercase letters, digits or hyphens).
func ValidID(id string) bool { return idRE.MatchString(id) }

// ValidPlatform reports whether p is an "os/arch" key such as "linux/amd64".
func ValidPlatform(p string) bool { return platformRE.MatchString(p) }

// ValidVersion reports whether v is a semantic version such as "1.0.0".
func ValidVersion(v string) bool { return len(v) <= 128 && semverRE.MatchString(v) }

// validSHA256 reports whether s is 64 lowercase hex digits.
func validSHA256(s string) bool { return sha256RE.MatchString(s) }

// ParseIndex parses index.json strictly (unknown fields, trailing data and
// oversized input are refused) and validates it: an index without a serial
// or an expiry is invalid. It does not verify the signature (call
// VerifyIndex first, or use Fetch), nor whether the index is fresh: the
// caller compares Serial with the highest it has accepted and checks
// Expired.
func ParseIndex(data []byte) (*Index, error) {
	if len(data) > MaxIndexBytes {
		return nil, fmt.Errorf("%s is %d bytes, over %d: %w", IndexFile, len(data), MaxIndexBytes, ErrTooLarge)
	}
	var idx Index
	if err := decodeStrict(data, &idx); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalid, IndexFile, err)
	}
	if err := idx.Validate(); err != nil {
		return nil, err
	}
	return &idx, nil
}

// decodeStrict decodes exactly one JSON value into v, refusing unknown fields and trailing data.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// invalid builds an ErrInvalid error for a field path.
func invalid(path, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalid, path, fmt.Sprintf(format, args...))
}

// Validate checks every field of the index; errors wrap ErrInvalid and name the field.
func (idx *Index) Validate() error {
	if idx.SchemaVersion != SchemaVersion {
		return invalid("schema_version", "is %d, this host reads %d", idx.SchemaVersion, SchemaVersion)
	}
	switch {
	case idx.Serial == 0:
		return invalid("serial", "is missing: without a serial an old index could be replayed; rebuild and re-sign the index with scripts/catalog")
	case idx.Serial < 0:
		return invalid("serial", "is %d; it must be a positive integer that grows with every index", idx.Serial)
	case idx.Expires.IsZero():
		return invalid("expires", "is missing: without an expiry a frozen index would be accepted forever; rebuild and re-sign the index with scripts/catalog")
	}
	seen := map[string]bool{}
	for i := range idx.Plugins {
		p := &idx.Plugins[i]
		path := fmt.Sprintf("plugins[%d]", i)
		if err := p.validate(path); err != nil {
			return err
		}
		if seen[p.ID] {
			return invalid(path+".id", "duplicate plugin id %q", p.ID)
		}
		seen[p.ID] = true
	}
	return nil
}

func (p *Plugin) validate(path string) error {
	if !ValidID(p.ID) {
		return invalid(path+".id", "%q must be 2–63 lowercase letters, digits or hyphens", p.ID)
	}
	path = fmt.Sprintf("plugins[%s]", p.ID)
	if p.Name == "" || len(p.Name) > 200 {
		return invalid(path+".name", "must be 1–200 bytes")
	}
	if len(p.Description) > 4000 {
		return invalid(path+".description", "must be at most 4000 bytes")
	}
	if !kindRE.MatchString(p.Kind) {
		return invalid(path+".kind", "%q must be lowercase letters, digits or hyphens", p.Kind)
	}
	if err := p.Pricing.validate(path + ".pricing"); err != nil {
		return err
	}
	if p.CheckoutURL != "" {
		if err := checkHTTPURL(p.CheckoutURL); err != nil {
			return invalid(path+".checkout_url", "%v", err)
		}
	} else if p.Pricing.Model == PricingPaid {
		return invalid(path+".checkout_url", "is required for a paid plugin")
	}
	if len(p.Versions) == 0 {
		return invalid(path+".versions", "must list at least one version")
	}
	seen := map[string]bool{}
	for i := range p.Versions {
		v := &p.Versions[i]
		if err := v.validate(fmt.Sprintf("%s.versions[%d]", path, i)); err != nil {
			return err
		}
		if seen[v.Version] {
			return invalid(fmt.Sprintf("%s.versions[%d].version", path, i), "duplicate version %q", v.Version)
		}
		seen[v.Version] = true
	}
	return nil
}

func (pr *Pricing) validate(path string) error {
	switch pr.Model {
	case PricingFree, PricingPaid:
	default:
		return invalid(path+".model", "%q must be %q or %q", pr.Model, PricingFree, PricingPaid)
	}
	if pr.Price == nil {
		if pr.Model == PricingPaid {
			return invalid(path+".price", "is required for a paid plugin")
		}
		return nil
	}
	if !amountRE.MatchString(pr.Price.Amount) {
		return invalid(path+".price.amount", "%q must be a decimal amount with two decimals such as 29.00", pr.Price.Amount)
	}
	if !currencyRE.MatchString(pr.Price.Currency) {
		return invalid(path+".price.currency", "%q must be a three-letter ISO 4217 code such as USD", pr.Price.Currency)
	}
	return nil
}

func (v *Version) validate(path string) error {
	if !ValidVersion(v.Version) {
		return invalid(path+".version", "%q must be a semantic version such as 1.0.0", v.Version)
	}
	if !ValidVersion(v.MinHostVersion) {
		return invalid(path+".min_host_version", "%q must be a semantic version such as 1.0.0", v.MinHostVersion)
	}
	if len(v.ProtocolVersions) == 0 {
		return invalid(path+".protocol_versions", "must list at least one protocol version")
	}
	seen := map[int]bool{}
	for _, pv := range v.ProtocolVersions {
		if pv < 1 || seen[pv] {
			return invalid(path+".protocol_versions", "must be distinct integers ≥ 1")
		}
		seen[pv] = true
	}
	if len(v.Archives) == 0 {
		return invalid(path+".archives", "must list at least one platform")
	}
	for _, platform := range sortedKeys(v.Archives) {
		a := v.Archives[platform]
		ap := fmt.Sprintf("%s.archives[%q]", path, platform)
		if !ValidPlatform(platform) {
			return invalid(ap, "platform must be os/arch such as linux/amd64")
		}
		if a.URL == "" || len(a.URL) > 2048 {
			return invalid(ap+".url", "must be 1–2048 bytes")
		}
		if _, err := url.Parse(a.URL); err != nil {
			return invalid(ap+".url", "%v", err)
		}
		if a.Size <= 0 {
			return invalid(ap+".size", "must be positive")
		}
		if !validSHA256(a.SHA256) {
			return invalid(ap+".sha256", "must be 64 lowercase hex digits")
		}
		if len(a.Signature) > 1024 {
			return invalid(ap+".signature", "is too long")
		}
	}
	return nil
}

// checkHTTPURL accepts only an absolute http(s) URL with a host and no user info.
func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q must be an absolute http(s) URL", s)
	}
	if u.Host == "" || u.User != nil {
		return fmt.Errorf("%q must have a host and no user info", s)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Expired reports whether the index is no longer valid at now: its Expires
// is not after now. There is no grace period; compare against a clock
// kept right (NTP).
func (idx *Index) Expired(now time.Time) bool { return !now.Before(idx.Expires) }

// Plugin returns the plugin with the given id.
func (idx *Index) Plugin(id string) (*Plugin, bool) {
	for i := range idx.Plugins {
		if idx.Plugins[i].ID == id {
			return &idx.Plugins[i], true
		}
	}
	return nil, false
}

// Latest returns the plugin's highest version by semantic-version precedence.
func (p *Plugin) Latest() (*Version, bool) {
	var best *Version
	for i := range p.Versions {
		v := &p.Versions[i]
		if best == nil {
			best = v
			continue
		}
		if c, err := CompareVersions(v.Version, best.Version); err == nil && c > 0 {
			best = v
		}
	}
	return best, best != nil
}

// CompareVersions compares two semantic versions by precedence (build
// metadata ignored): -1 if a < b, 0 if equal, +1 if a > b.
func CompareVersions(a, b string) (int, error) {
	ma, mb := semverRE.FindStringSubmatch(a), semverRE.FindStringSubmatch(b)
	if ma == nil || len(a) > 128 {
		return 0, fmt.Errorf("%w: %q is not a semantic version", ErrInvalid, a)
	}
	if mb == nil || len(b) > 128 {
		return 0, fmt.Errorf("%w: %q is not a semantic version", ErrInvalid, b)
	}
	for i := 1; i <= 3; i++ {
		if c := compareNumeric(ma[i], mb[i]); c != 0 {
			return c, nil
		}
	}
	pa, pb := ma[4], mb[4]
	switch {
	case pa == pb:
		return 0, nil
	case pa == "":
		return 1, nil
	case pb == "":
		return -1, nil
	}
	fa, fb := strings.Split(pa, "."), strings.Split(pb, ".")
	for i := 0; i < len(fa) && i < len(fb); i++ {
		da, db := isDigits(fa[i]), isDigits(fb[i])
		switch {
		case da && db:
			if c := compareNumeric(fa[i], fb[i]); c != 0 {
				return c, nil
			}
		case da:
			return -1, nil
		case db:
			return 1, nil
		case fa[i] != fb[i]:
			return cmpOrder(fa[i] < fb[i]), nil
		}
	}
	switch {
	case len(fa) < len(fb):
		return -1, nil
	case len(fa) > len(fb):
		return 1, nil
	}
	return 0, nil
}

func cmpOrder(less bool) int {
	if less {
		return -1
	}
	return 1
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// compareNumeric compares two decimal strings without leading zeros, of any length.
func compareNumeric(a, b string) int {
	if len(a) != len(b) {
		return cmpOrder(len(a) < len(b))
	}
	return strings.Compare(a, b)
}

// CheckDownload compares a downloaded archive's sha256 (hex) and size with
// the signed values of a; a mismatch wraps ErrChecksum.
func CheckDownload(a Archive, sha256hex string, n int64) error {
	if n != a.Size {
		return fmt.Errorf("%w: downloaded %d bytes, the catalog says %d", ErrChecksum, n, a.Size)
	}
	got, err := hex.DecodeString(sha256hex)
	if err != nil || len(got) != 32 {
		return fmt.Errorf("%w: %q is not a sha256", ErrChecksum, sha256hex)
	}
	want, err := hex.DecodeString(a.SHA256)
	if err != nil || !bytes.Equal(got, want) {
		return fmt.Errorf("%w: downloaded sha256 %s, the catalog says %s", ErrChecksum, strings.ToLower(sha256hex), a.SHA256)
	}
	return nil
}

// b64 is the strict standard base64 encoding used in index.json and .sig files.
func b64() *base64.Encoding { return base64.StdEncoding.Strict() }
