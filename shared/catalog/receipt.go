package catalog

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// receiptDomain prefixes the signed bytes of a receipt, so no other
// marketplace signature can pass for one.
const receiptDomain = "magicads-receipt-v1\n"

// MaxReceiptBytes caps a compact receipt.
const MaxReceiptBytes = 8 << 10

// maxReceiptField caps each receipt string field.
const maxReceiptField = 256

// Receipt is a purchase receipt issued by the marketplace's checkout.
type Receipt struct {
	// PluginID is the bought plugin's id; required.
	PluginID string `json:"plugin_id"`
	// Buyer names who bought it (e.g. an email address).
	Buyer string `json:"buyer,omitempty"`
	// License is the license the purchase grants, e.g. "regular".
	License string `json:"license,omitempty"`
	// IssuedAt is when the checkout issued the receipt.
	IssuedAt time.Time `json:"issued_at"`
	// Nonce makes each receipt unique (random hex).
	Nonce string `json:"nonce,omitempty"`
}

// validate checks the receipt's fields.
func (r Receipt) validate() error {
	if !ValidID(r.PluginID) {
		return fmt.Errorf("%w: receipt plugin_id %q must be a plugin id", ErrInvalid, r.PluginID)
	}
	for name, v := range map[string]string{"buyer": r.Buyer, "license": r.License, "nonce": r.Nonce} {
		if len(v) > maxReceiptField {
			return fmt.Errorf("%w: receipt %s is over %d bytes", ErrInvalid, name, maxReceiptField)
		}
	}
	return nil
}

// b64url is the unpadded, strict base64url encoding of compact receipts.
func b64url() *base64.Encoding { return base64.RawURLEncoding.Strict() }

// SignReceipt returns the compact form of r, base64url(JSON) + "." +
// base64url(key id + ed25519 signature), unpadded. The signature covers
// "magicads-receipt-v1\n" followed by the JSON bytes. The compact form is
// URL-safe, so it can travel as a query parameter.
func SignReceipt(priv ed25519.PrivateKey, r Receipt) (string, error) {
	if err := r.validate(); err != nil {
		return "", fmt.Errorf("sign receipt: %w", err)
	}
	payload, err := json.Marshal(r)
	if err != nil {
		return "", fmt.Errorf("sign receipt: %w", err)
	}
	raw, err := sign(priv, append([]byte(receiptDomain), payload...))
	if err != nil {
		return "", fmt.Errorf("sign receipt: %w", err)
	}
	return b64url().EncodeToString(payload) + "." + b64url().EncodeToString(raw), nil
}

// VerifyReceipt verifies a compact receipt (surrounding whitespace ignored)
// against the trusted keys, then parses it strictly (unknown fields refused,
// plugin id required). Errors wrap ErrUnsigned (no signature part),
// ErrBadSignature, ErrUnknownKey, ErrInvalid or ErrTooLarge.
func VerifyReceipt(s string, keys []ed25519.PublicKey) (Receipt, error) {
	s = strings.TrimSpace(s)
	if len(s) > MaxReceiptBytes {
		return Receipt{}, fmt.Errorf("receipt: %w: over %d bytes", ErrTooLarge, MaxReceiptBytes)
	}
	if s == "" {
		return Receipt{}, fmt.Errorf("receipt: %w: empty", ErrInvalid)
	}
	payloadPart, sigPart, _ := strings.Cut(s, ".")
	if sigPart == "" {
		return Receipt{}, fmt.Errorf("receipt: %w", ErrUnsigned)
	}
	if strings.Contains(sigPart, ".") {
		return Receipt{}, fmt.Errorf("receipt: %w: want two dot-separated parts", ErrInvalid)
	}
	payload, err := b64url().DecodeString(payloadPart)
	if err != nil || len(payload) == 0 {
		return Receipt{}, fmt.Errorf("receipt: %w: payload is not base64url", ErrInvalid)
	}
	raw, err := b64url().DecodeString(sigPart)
	if err != nil {
		return Receipt{}, fmt.Errorf("receipt: %w: not base64url", ErrBadSignature)
	}
	if err := verify(raw, append([]byte(receiptDomain), payload...), keys); err != nil {
		return Receipt{}, fmt.Errorf("receipt: %w", err)
	}
	var r Receipt
	if err := decodeStrict(payload, &r); err != nil {
		return Receipt{}, fmt.Errorf("receipt: %w: %w", ErrInvalid, err)
	}
	if err := r.validate(); err != nil {
		return Receipt{}, fmt.Errorf("receipt: %w", err)
	}
	return r, nil
}
