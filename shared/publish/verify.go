package publish

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/magicads/r2storage/shared/catalog"
	"github.com/magicads/r2storage/shared/manifest"
)

// Unpack limits of Verify, the host's defaults (host/archive).
const (
	maxUnpackFiles      = 256
	maxUnpackFileBytes  = 256 << 20
	maxUnpackTotalBytes = 512 << 20
)

// VerifyOptions says which catalog Verify checks and with which keys.
type VerifyOptions struct {
	// Dir is a catalog folder (its index.json is read as a file:// URL).
	// Set Dir or URL.
	Dir string
	// URL is the http(s) or file URL of a catalog's index.json.
	URL string
	// TrustedKeys are the marketplace public keys the host would trust.
	TrustedKeys []ed25519.PublicKey
	// Client fetches http(s) URLs; nil is http.DefaultClient.
	Client *http.Client
	// Now is the clock the expiry is checked against; nil is time.Now.
	Now func() time.Time
}

// VerifiedArchive is one archive Verify checked.
type VerifiedArchive struct {
	// ID, Version and Platform name the archive in the catalog.
	ID, Version, Platform string
	// URL is where it was downloaded from.
	URL string
}

// VerifyResult is what Verify checked.
type VerifyResult struct {
	// Index is the verified index.
	Index *catalog.Index
	// Archives are the archives checked, in catalog order.
	Archives []VerifiedArchive
}

// Verify checks a catalog as a host does before installing from it: the
// index.json signature against the trusted keys, its strict parse and its
// expiry; then for every version and platform of every plugin the
// archive's signature, a download checked against the signed size and
// sha256, a safe unpack into a temporary folder, manifest.CheckBundle, the
// manifest's id and version against the catalog's, and the platform's
// executable (a regular file, executable outside Windows).
func Verify(ctx context.Context, o VerifyOptions) (*VerifyResult, error) {
	if (o.Dir == "") == (o.URL == "") {
		return nil, errors.New("verify: give a catalog folder or an index URL, not both or neither")
	}
	if len(o.TrustedKeys) == 0 {
		return nil, errors.New("verify: no trusted key; pass the marketplace.pub hosts trust")
	}
	indexURL := o.URL
	if o.Dir != "" {
		var err error
		if indexURL, err = FileURL(filepath.Join(o.Dir, catalog.IndexFile)); err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	idx, err := catalog.Fetch(ctx, o.Client, indexURL, o.TrustedKeys)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	if idx.Expired(now()) {
		return nil, fmt.Errorf("verify: the index (serial %d) expired at %s; re-sign it (magicads-plugin catalog)", idx.Serial, idx.Expires.Format(time.RFC3339))
	}
	tmp, err := os.MkdirTemp("", "magicads-verify-")
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	res := &VerifyResult{Index: idx}
	n := 0
	for _, p := range idx.Plugins {
		for _, v := range p.Versions {
			platforms := make([]string, 0, len(v.Archives))
			for pl := range v.Archives {
				platforms = append(platforms, pl)
			}
			sort.Strings(platforms)
			for _, platform := range platforms {
				a := v.Archives[platform]
				n++
				u, err := verifyArchive(ctx, o, indexURL, p.ID, v.Version, platform, a, filepath.Join(tmp, fmt.Sprint(n)))
				if err != nil {
					return nil, fmt.Errorf("verify: %s %s %s: %w", p.ID, v.Version, platform, err)
				}
				res.Archives = append(res.Archives, VerifiedArchive{ID: p.ID, Version: v.Version, Platform: platform, URL: u})
			}
		}
	}
	return res, nil
}

// verifyArchive checks one archive of the catalog, working in dir.
func verifyArchive(ctx context.Context, o VerifyOptions, indexURL, id, version, platform string, a catalog.Archive, dir string) (string, error) {
	if err := catalog.VerifyArchive(a, id, version, platform, o.TrustedKeys); err != nil {
		return "", err
	}
	u, err := catalog.ResolveURL(indexURL, a.URL)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	file := filepath.Join(dir, "archive.tar.gz")
	f, err := os.Create(file)
	if err != nil {
		return "", err
	}
	sum, size, err := catalog.Download(ctx, o.Client, u, a.Size, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return u, fmt.Errorf("download %s: %w", u, err)
	}
	if err := catalog.CheckDownload(a, sum, size); err != nil {
		return u, err
	}
	root := filepath.Join(dir, "root")
	if err := unpack(file, root); err != nil {
		return u, fmt.Errorf("unpack: %w", err)
	}
	man, err := manifest.CheckBundle(os.DirFS(root))
	if err != nil {
		return u, err
	}
	if man.ID != id || man.Version != version {
		return u, fmt.Errorf("the manifest says %s %s, the catalog %s %s", man.ID, man.Version, id, version)
	}
	exe, ok := man.Executables[platform]
	if !ok {
		return u, fmt.Errorf("the manifest names no executable for %s", platform)
	}
	fi, err := os.Lstat(filepath.Join(root, filepath.FromSlash(exe)))
	if err != nil || !fi.Mode().IsRegular() {
		return u, fmt.Errorf("the archive lacks the %s executable %s", platform, exe)
	}
	if !strings.HasPrefix(platform, "windows/") && fi.Mode()&0o111 == 0 {
		return u, fmt.Errorf("the executable %s is not executable", exe)
	}
	return u, nil
}

// unpack extracts a plugin archive into root, refusing what the host
// refuses: anything but regular files and folders, absolute or ".." paths,
// duplicates, and more files or bytes than the host's limits.
func unpack(file, root string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("not a gzip archive: %w", err)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return err
	}
	tr := tar.NewReader(gz)
	seen := map[string]bool{}
	files := 0
	var total int64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("not a tar archive: %w", err)
		}
		name := strings.TrimSuffix(h.Name, "/")
		if !fs.ValidPath(name) || name == "." || strings.Contains(name, `\`) {
			return fmt.Errorf("entry %q is not a relative path inside the archive", h.Name)
		}
		if seen[name] {
			return fmt.Errorf("entry %q appears twice", name)
		}
		seen[name] = true
		dst := filepath.Join(root, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			files++
			total += h.Size
			switch {
			case files > maxUnpackFiles:
				return fmt.Errorf("more than %d files", maxUnpackFiles)
			case h.Size > maxUnpackFileBytes:
				return fmt.Errorf("%s is %d bytes, over %d", name, h.Size, maxUnpackFileBytes)
			case total > maxUnpackTotalBytes:
				return fmt.Errorf("more than %d bytes in all", maxUnpackTotalBytes)
			}
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			mode := os.FileMode(0o644)
			if h.Mode&0o111 != 0 {
				mode = 0o755
			}
			if err := writeEntry(dst, tr, h.Size, mode); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		default:
			return fmt.Errorf("entry %q is a %s, not a file or folder", name, typeName(h.Typeflag))
		}
	}
}

// writeEntry copies exactly size bytes of r to a new file dst.
func writeEntry(dst string, r io.Reader, size int64, mode os.FileMode) error {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = io.CopyN(out, r, size)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// typeName names a tar entry type for messages.
func typeName(t byte) string {
	switch t {
	case tar.TypeSymlink:
		return "symbolic link"
	case tar.TypeLink:
		return "hard link"
	case tar.TypeChar, tar.TypeBlock:
		return "device"
	case tar.TypeFifo:
		return "named pipe"
	}
	return fmt.Sprintf("tar entry of type %q", t)
}

// FileURL returns the file:// URL of a local path, as catalog.Fetch reads it.
func FileURL(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	s := filepath.ToSlash(abs)
	if !strings.HasPrefix(s, "/") { // Windows: C:/… → /C:/…
		s = "/" + s
	}
	return (&url.URL{Scheme: "file", Path: s}).String(), nil
}
