// Package publish packs, signs and verifies MagicAds plugin archives: the
// packaging library behind the magicads-plugin command
// (shared/cmd/magicads-plugin), which the project's own scripts/package and
// scripts/catalog use for its providers and which any outside provider
// author can use for theirs. It imports only shared/* and the standard
// library.
//
// # Bundle
//
// A bundle is a folder holding manifest.json (see shared/manifest) and the
// files it names: the settings schema (settings_schema, e.g.
// "schema/settings.schema.json") and the migrations folder (migrations,
// e.g. "migrations", golang-migrate SQL files in up/down pairs; it may be
// empty). Pack checks it with manifest.CheckBundle, the check the host runs
// at install, before building anything. Nothing else in the folder is read,
// so a bundle may live at the root of a Go module.
//
// # Archive layout
//
// Pack writes one archive per platform ("os/arch", a key of the manifest's
// executables) into the out folder:
//
//	<id>_<version>_<os>_<arch>.tar.gz         e.g. acme-store_1.2.0_linux_amd64.tar.gz
//	<id>_<version>_<os>_<arch>.tar.gz.sha256  "<sha256 hex>  <archive name>\n"
//	SHA256SUMS                                the same line for every *.tar.gz in the folder, by name
//
// The archive is a gzip-compressed USTAR tar holding, at these paths:
//
//	manifest.json                     the bundle's, byte for byte
//	<settings_schema>                 the bundle's settings schema
//	<migrations>/<file>               every file of the migrations folder
//	<executables[os/arch]>            the plugin binary for the platform
//
// plus an entry for every parent folder of those paths (and for the
// migrations folder itself, even when empty). Nothing else: no links, no
// devices, no absolute or ".." paths. Entries are sorted by name; folders
// and the binary have mode 0755, other files 0644; owner and group are 0
// with no names; every mtime is the same (SOURCE_DATE_EPOCH in the
// command, else 2000-01-01T00:00:00Z); the gzip header carries no name and
// no time. Built from the same tree, two packs give byte-identical
// archives: Pack builds with CGO_ENABLED=0, -trimpath, -buildvcs=false and
// -ldflags "-s -w".
//
// # Catalog
//
// Catalog signs every archive of a folder, of any number of plugins and
// versions, and writes next to them (see shared/catalog for the format and
// the trust model):
//
//	index.json       {"schema_version":1,"serial":N,"expires":"RFC 3339","plugins":[…]}
//	index.json.sig   base64 of key id + ed25519 signature over index.json's exact bytes
//	marketplace.pub  the public key hosts must trust (--trusted-key)
//
// Each plugin of index.json (sorted by id) takes id, name, description,
// kind and pricing from the manifest inside its newest archive, and
// checkout_url from the checkout base: "<base>/checkout/<id>". Each version
// (oldest first) takes version, min_host_version and protocol_versions from
// its manifest, and lists one archive per platform: url (the archive's file
// name, relative to index.json), size, sha256 and signature (over
// catalog.ArchiveMessage: id, version, platform, sha256).
//
// The serial is the build time in Unix seconds, raised above the serial of
// the index.json already in the folder, so it grows across rebuilds (hosts
// refuse a lower serial than one they accepted). The index expires after
// ValidFor (default 30 days, at most 366): re-sign it before then. The key
// pair (marketplace.key, mode 0600, and marketplace.pub) is created in the
// keys folder on first use; a keys folder inside the catalog folder or any
// forbidden folder (the repository) is refused. The private key is never
// copied or printed.
//
// # Verify
//
// Verify checks a catalog folder or URL with trusted keys as the host does
// before it installs: the index signature, parsing and expiry, then for
// every archive its signature, its download against the signed size and
// sha256, a safe unpack into a temporary folder, manifest.CheckBundle, that
// the manifest's id and version are the catalog's, and that the platform's
// executable is a regular, executable file. Catalog runs it on what it
// wrote.
package publish
