package catalog

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"time"
)

// FetchTimeout bounds a whole Fetch (index and signature).
const FetchTimeout = 30 * time.Second

// maxSignatureFileBytes caps index.json.sig.
const maxSignatureFileBytes = 4096

// Fetch downloads index.json from indexURL (http://, https:// or file://)
// and index.json.sig next to it (the index URL's path + ".sig"), both
// size-capped and within FetchTimeout, verifies the signature over the exact
// bytes against the trusted keys, then parses and validates the index
// strictly. Every archive URL must resolve (ResolveURL). A missing signature
// file wraps ErrUnsigned. A nil client uses one with FetchTimeout. Whether
// the index is fresh (its serial not below one already accepted, not
// Expired) is the caller's to check.
func Fetch(ctx context.Context, client *http.Client, indexURL string, keys []ed25519.PublicKey) (*Index, error) {
	ctx, cancel := context.WithTimeout(ctx, FetchTimeout)
	defer cancel()
	if client == nil {
		client = &http.Client{Timeout: FetchTimeout}
	}
	u, err := parseLocation(indexURL)
	if err != nil {
		return nil, fmt.Errorf("fetch catalog: %w", err)
	}
	sigU := *u
	sigU.Path += ".sig"
	sigU.RawPath = ""
	data, err := get(ctx, client, u, MaxIndexBytes)
	if err != nil {
		return nil, fmt.Errorf("fetch catalog %s: %w", u.Redacted(), err)
	}
	sig, err := get(ctx, client, &sigU, maxSignatureFileBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("fetch catalog %s: %w: %w", sigU.Redacted(), ErrUnsigned, err)
	}
	if err != nil {
		return nil, fmt.Errorf("fetch catalog %s: %w", sigU.Redacted(), err)
	}
	if err := VerifyIndex(data, sig, keys); err != nil {
		return nil, fmt.Errorf("fetch catalog %s: %w", u.Redacted(), err)
	}
	idx, err := ParseIndex(data)
	if err != nil {
		return nil, fmt.Errorf("fetch catalog %s: %w", u.Redacted(), err)
	}
	for _, p := range idx.Plugins {
		for _, v := range p.Versions {
			for platform, a := range v.Archives {
				if _, err := ResolveURL(indexURL, a.URL); err != nil {
					return nil, fmt.Errorf("fetch catalog %s: %w: plugins[%s] %s %s: %w", u.Redacted(), ErrInvalid, p.ID, v.Version, platform, err)
				}
			}
		}
	}
	return idx, nil
}

// ResolveURL resolves an archive URL from the index against the index URL.
// The result is http(s), or file:// only when the index itself is a file://
// URL: a remote catalog can't point the host at its own files.
func ResolveURL(indexURL, archiveURL string) (string, error) {
	base, err := parseLocation(indexURL)
	if err != nil {
		return "", err
	}
	if archiveURL == "" {
		return "", errors.New("empty archive URL")
	}
	ref, err := url.Parse(archiveURL)
	if err != nil {
		return "", fmt.Errorf("archive URL: %w", err)
	}
	res := base.ResolveReference(ref)
	if res.Scheme == "file" && base.Scheme != "file" {
		return "", fmt.Errorf("archive URL %q: a file:// URL in a %s catalog", archiveURL, base.Scheme)
	}
	if _, err := parseLocation(res.String()); err != nil {
		return "", fmt.Errorf("archive URL %q: %w", archiveURL, err)
	}
	return res.String(), nil
}

// Download streams url (http://, https:// or file://) into w, hashing while
// streaming, and returns the lowercase hex sha256 and the byte count. It
// refuses (ErrTooLarge) a body over maxBytes, whatever Content-Length says,
// having written at most maxBytes to w; on any error the caller must discard
// what was written. ctx cancels the transfer. A nil client uses a default
// one without an overall timeout (ctx bounds it).
func Download(ctx context.Context, client *http.Client, rawURL string, maxBytes int64, w io.Writer) (string, int64, error) {
	if maxBytes <= 0 {
		return "", 0, errors.New("download: maxBytes must be positive")
	}
	if client == nil {
		client = &http.Client{}
	}
	u, err := parseLocation(rawURL)
	if err != nil {
		return "", 0, fmt.Errorf("download: %w", err)
	}
	rc, size, err := open(ctx, client, u)
	if err != nil {
		return "", 0, fmt.Errorf("download %s: %w", u.Redacted(), err)
	}
	defer func() { _ = rc.Close() }()
	if size > maxBytes {
		return "", 0, fmt.Errorf("download %s: %w: %d bytes, the limit is %d", u.Redacted(), ErrTooLarge, size, maxBytes)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(h, w), io.LimitReader(rc, maxBytes))
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			err = cerr
		}
		return "", n, fmt.Errorf("download %s: %w", u.Redacted(), err)
	}
	if n == maxBytes {
		var one [1]byte
		k, err := io.ReadFull(rc, one[:])
		if k > 0 {
			return "", n, fmt.Errorf("download %s: %w: over the limit of %d bytes", u.Redacted(), ErrTooLarge, maxBytes)
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return "", n, fmt.Errorf("download %s: %w", u.Redacted(), err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// parseLocation parses an http(s) URL with a host or a file:// URL with an absolute path.
func parseLocation(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%w: URL: %w", ErrInvalid, err)
	}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return nil, fmt.Errorf("%w: URL %q has no host", ErrInvalid, u.Redacted())
		}
	case "file":
		if _, err := filePath(u); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%w: URL %q: scheme must be http, https or file", ErrInvalid, u.Redacted())
	}
	return u, nil
}

// filePath returns the local path of a file:// URL.
func filePath(u *url.URL) (string, error) {
	if u.Opaque != "" || (u.Host != "" && u.Host != "localhost") {
		return "", fmt.Errorf("%w: %q: a file URL must be file:///absolute/path", ErrInvalid, u.String())
	}
	p := u.Path
	if runtime.GOOS == "windows" && len(p) >= 3 && p[0] == '/' && p[2] == ':' {
		p = p[1:]
	}
	p = filepath.FromSlash(p)
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("%w: %q: a file URL must be file:///absolute/path", ErrInvalid, u.String())
	}
	return p, nil
}

// open opens u for reading and returns its declared size (-1 if unknown).
// A missing resource (no file, HTTP 404 or 410) wraps fs.ErrNotExist.
func open(ctx context.Context, client *http.Client, u *url.URL) (io.ReadCloser, int64, error) {
	if u.Scheme == "file" {
		p, err := filePath(u)
		if err != nil {
			return nil, 0, err
		}
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		f, err := os.Open(p)
		if err != nil {
			return nil, 0, err
		}
		fi, err := f.Stat()
		if err != nil {
			_ = f.Close()
			return nil, 0, err
		}
		if !fi.Mode().IsRegular() {
			_ = f.Close()
			return nil, 0, fmt.Errorf("%s is not a regular file", p)
		}
		return &ctxFile{ctx: ctx, f: f}, fi.Size(), nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		_ = resp.Body.Close()
		return nil, 0, fmt.Errorf("HTTP %s: %w", resp.Status, fs.ErrNotExist)
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		_ = resp.Body.Close()
		return nil, 0, fmt.Errorf("HTTP %s", resp.Status)
	}
	return resp.Body, resp.ContentLength, nil
}

// get reads all of u, refusing more than max bytes.
func get(ctx context.Context, client *http.Client, u *url.URL, max int64) ([]byte, error) {
	rc, size, err := open(ctx, client, u)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rc.Close() }()
	if size > max {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, size, max)
	}
	var b bytes.Buffer
	n, err := io.Copy(&b, io.LimitReader(rc, max+1))
	if err != nil {
		return nil, err
	}
	if n > max {
		return nil, fmt.Errorf("%w: over the limit of %d bytes", ErrTooLarge, max)
	}
	return b.Bytes(), nil
}

// ctxFile is a file whose reads stop once ctx is done.
type ctxFile struct {
	ctx context.Context
	f   *os.File
}

// Read reads from the file unless ctx is done.
func (c *ctxFile) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.f.Read(p)
}

// Close closes the file.
func (c *ctxFile) Close() error { return c.f.Close() }
