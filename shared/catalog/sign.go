package catalog

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
)

// keyIDSize is the length of the key id that prefixes every signature.
const keyIDSize = 8

// signatureSize is the decoded length of a signature: key id + ed25519 signature.
const signatureSize = keyIDSize + ed25519.SignatureSize

// archiveDomain starts every ArchiveMessage.
const archiveDomain = "magicads-archive-v1\n"

// ArchiveMessage returns the exact bytes signed for an archive: the domain
// "magicads-archive-v1", the plugin id, version, platform ("os/arch") and
// the archive's sha256 in lowercase hex, each followed by "\n". Binding all
// four means a signature can't be reused for another plugin, version or
// platform.
func ArchiveMessage(id, version, platform, sha256hex string) []byte {
	var b bytes.Buffer
	b.WriteString(archiveDomain)
	for _, s := range []string{id, version, platform, sha256hex} {
		b.WriteString(s)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// KeyID returns the hex id of a public key: the first 8 bytes of its SHA-256.
func KeyID(pub ed25519.PublicKey) string {
	id := keyID(pub)
	return hex.EncodeToString(id[:])
}

func keyID(pub ed25519.PublicKey) [keyIDSize]byte {
	sum := sha256.Sum256(pub)
	var id [keyIDSize]byte
	copy(id[:], sum[:keyIDSize])
	return id
}

// sign returns key id + ed25519 signature of msg.
func sign(priv ed25519.PrivateKey, msg []byte) ([]byte, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, errors.New("not an ed25519 private key")
	}
	pub, ok := priv.Public().(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("not an ed25519 private key")
	}
	id := keyID(pub)
	return append(id[:], ed25519.Sign(priv, msg)...), nil
}

// verify checks raw (key id + signature) over msg against the trusted keys.
func verify(raw, msg []byte, keys []ed25519.PublicKey) error {
	if len(raw) != signatureSize {
		return fmt.Errorf("%w: a signature is %d bytes, got %d", ErrBadSignature, signatureSize, len(raw))
	}
	if len(keys) == 0 {
		return fmt.Errorf("%w: no trusted keys are configured", ErrUnknownKey)
	}
	var id [keyIDSize]byte
	copy(id[:], raw[:keyIDSize])
	known := false
	for _, k := range keys {
		if len(k) != ed25519.PublicKeySize || keyID(k) != id {
			continue
		}
		known = true
		if ed25519.Verify(k, msg, raw[keyIDSize:]) {
			return nil
		}
	}
	if !known {
		return fmt.Errorf("%w: key %s", ErrUnknownKey, hex.EncodeToString(id[:]))
	}
	return fmt.Errorf("%w: does not match the data signed by key %s", ErrBadSignature, hex.EncodeToString(id[:]))
}

// decodeSig decodes a standard-base64 signature; "" is ErrUnsigned.
func decodeSig(s string) ([]byte, error) {
	if s == "" {
		return nil, ErrUnsigned
	}
	raw, err := b64().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: not base64", ErrBadSignature)
	}
	return raw, nil
}

// SignIndex returns the contents of index.json.sig for the exact bytes of
// index.json: one line of base64 (key id + ed25519 signature).
func SignIndex(priv ed25519.PrivateKey, data []byte) ([]byte, error) {
	raw, err := sign(priv, data)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", IndexFile, err)
	}
	return []byte(b64().EncodeToString(raw) + "\n"), nil
}

// VerifyIndex verifies sig (the contents of index.json.sig: base64, surrounding
// whitespace ignored) over the exact bytes of index.json against the trusted keys.
func VerifyIndex(data, sig []byte, keys []ed25519.PublicKey) error {
	if len(sig) > 4096 {
		return fmt.Errorf("%s: %w: too long", IndexSignatureFile, ErrBadSignature)
	}
	raw, err := decodeSig(string(bytes.TrimSpace(sig)))
	if err != nil {
		return fmt.Errorf("%s: %w", IndexSignatureFile, err)
	}
	if err := verify(raw, data, keys); err != nil {
		return fmt.Errorf("%s: %w", IndexSignatureFile, err)
	}
	return nil
}

// checkArchiveFields validates the fields that make up an ArchiveMessage, so
// the message is unambiguous.
func checkArchiveFields(id, version, platform, sha256hex string) error {
	switch {
	case !ValidID(id):
		return fmt.Errorf("%w: plugin id %q", ErrInvalid, id)
	case !ValidVersion(version):
		return fmt.Errorf("%w: version %q", ErrInvalid, version)
	case !ValidPlatform(platform):
		return fmt.Errorf("%w: platform %q", ErrInvalid, platform)
	case !validSHA256(sha256hex):
		return fmt.Errorf("%w: sha256 %q must be 64 lowercase hex digits", ErrInvalid, sha256hex)
	}
	return nil
}

// SignArchive returns the Archive.Signature for an archive of plugin id at
// version for platform whose sha256 is sha256hex.
func SignArchive(priv ed25519.PrivateKey, id, version, platform, sha256hex string) (string, error) {
	if err := checkArchiveFields(id, version, platform, sha256hex); err != nil {
		return "", fmt.Errorf("sign archive: %w", err)
	}
	raw, err := sign(priv, ArchiveMessage(id, version, platform, sha256hex))
	if err != nil {
		return "", fmt.Errorf("sign archive: %w", err)
	}
	return b64().EncodeToString(raw), nil
}

// VerifyArchive verifies a.Signature over ArchiveMessage(id, version,
// platform, a.SHA256) against the trusted keys. The caller must separately
// check that the downloaded bytes match a.SHA256 and a.Size (CheckDownload).
func VerifyArchive(a Archive, id, version, platform string, keys []ed25519.PublicKey) error {
	if err := checkArchiveFields(id, version, platform, a.SHA256); err != nil {
		return fmt.Errorf("archive %s %s %s: %w", id, version, platform, err)
	}
	raw, err := decodeSig(a.Signature)
	if err != nil {
		return fmt.Errorf("archive %s %s %s: %w", id, version, platform, err)
	}
	if err := verify(raw, ArchiveMessage(id, version, platform, a.SHA256), keys); err != nil {
		return fmt.Errorf("archive %s %s %s: %w", id, version, platform, err)
	}
	return nil
}
