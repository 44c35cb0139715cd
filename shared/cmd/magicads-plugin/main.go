// Command magicads-plugin packs, signs and verifies MagicAds plugins: the
// one packaging command for any provider (the project's scripts/package
// and scripts/catalog run it). It is a thin front to shared/publish, whose
// documentation describes the archive layout and the catalog format.
//
//	magicads-plugin pack --bundle DIR (--main PKG [--main-dir DIR] [--platform OS/ARCH]... | --binary OS/ARCH=FILE...) --out DIR
//	magicads-plugin catalog --dir DIR --keys KEYS_DIR [--checkout-base URL] [--valid-for DURATION] [--serial N] [--forbid DIR]...
//	magicads-plugin verify (--dir DIR | --url URL) --trusted-key FILE...
//	magicads-plugin keys --keys KEYS_DIR [--forbid DIR]...
//
// pack writes <id>_<version>_<os>_<arch>.tar.gz and .sha256 per platform
// and rewrites SHA256SUMS (SOURCE_DATE_EPOCH sets the entries' mtime).
// catalog signs every archive of DIR into index.json, index.json.sig and
// marketplace.pub, creating the key pair in KEYS_DIR on first use. verify
// checks a catalog as a host would. keys creates or checks the key pair
// only. Exit status: 0 done, 1 failed, 2 bad usage.
package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/magicads/r2storage/shared/catalog"
	"github.com/magicads/r2storage/shared/publish"
)

// usage is the command's help text.
const usage = `magicads-plugin packs, signs and verifies MagicAds plugins.

Usage:
  magicads-plugin pack --bundle DIR --main PKG [--main-dir DIR] [--platform OS/ARCH]... --out DIR
  magicads-plugin pack --bundle DIR --binary OS/ARCH=FILE... --out DIR
  magicads-plugin catalog --dir DIR --keys KEYS_DIR [--checkout-base URL] [--valid-for DURATION] [--serial N] [--forbid DIR]...
  magicads-plugin verify (--dir DIR | --url URL) --trusted-key FILE...
  magicads-plugin keys --keys KEYS_DIR [--forbid DIR]...

pack     checks the bundle (manifest.json, its settings schema and migrations),
         builds the Go main package for each platform of the manifest's
         executables (or the --platform ones; or takes --binary files) and
         writes <id>_<version>_<os>_<arch>.tar.gz + .sha256 into --out, then
         rewrites --out/SHA256SUMS. SOURCE_DATE_EPOCH sets the archive mtime.
catalog  signs every archive in --dir (any plugins and versions) into
         index.json, index.json.sig and marketplace.pub, creating the key pair
         in --keys on first use, and verifies the result.
verify   checks a catalog as a host does: signatures, sha256, unpack, bundle.
keys     creates (or checks) the key pair in --keys.

Run "magicads-plugin COMMAND -h" for a command's flags.
`

// errUsage marks a usage error: exit status 2.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// run runs the command and returns its exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "pack":
		err = packCmd(ctx, args[1:], stdout, stderr, getenv)
	case "catalog":
		err = catalogCmd(ctx, args[1:], stdout, stderr)
	case "verify":
		err = verifyCmd(ctx, args[1:], stdout, stderr)
	case "keys":
		err = keysCmd(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "magicads-plugin: unknown command %q; use pack, catalog, verify or keys\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "magicads-plugin %s: %v\n", args[0], err)
		return 2
	default:
		fmt.Fprintf(stderr, "magicads-plugin %s: %v\n", args[0], err)
		return 1
	}
}

// usageErr returns a usage error (exit status 2) with the given message.
func usageErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, a...))
}

// multiFlag collects a repeated string flag.
type multiFlag []string

// String joins the values.
func (m *multiFlag) String() string { return strings.Join(*m, ",") }

// Set adds a value.
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// newFlags returns a flag set that reports its errors as usage errors.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fl := flag.NewFlagSet("magicads-plugin "+name, flag.ContinueOnError)
	fl.SetOutput(stderr)
	return fl
}

// parse parses args, turning a flag error into a usage error.
func parse(fl *flag.FlagSet, args []string) error {
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageErr("%v (see -h)", err)
	}
	if fl.NArg() != 0 {
		return usageErr("unexpected arguments %q; every value goes with a flag (see -h)", fl.Args())
	}
	return nil
}

func packCmd(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fl := newFlags("pack", stderr)
	bundle := fl.String("bundle", "", "bundle folder holding manifest.json, its settings schema and migrations (required)")
	mainPkg := fl.String("main", "", "Go main package of the plugin, built per platform (e.g. ./cmd/my-plugin)")
	mainDir := fl.String("main-dir", "", "folder go build runs in (the module of --main); default the current folder")
	out := fl.String("out", "", "folder to write the archives, .sha256 files and SHA256SUMS to (required)")
	var platforms, binaries multiFlag
	fl.Var(&platforms, "platform", "OS/ARCH to build, a key of the manifest's executables (repeatable; default all)")
	fl.Var(&binaries, "binary", "OS/ARCH=FILE, a prebuilt binary for that platform (repeatable; instead of --main)")
	if err := parse(fl, args); err != nil {
		return err
	}
	switch {
	case *bundle == "":
		return usageErr("--bundle is required: the folder holding manifest.json")
	case *out == "":
		return usageErr("--out is required: the folder to write the archives to")
	case *mainPkg == "" && len(binaries) == 0:
		return usageErr("give --main PKG to build the plugin, or --binary OS/ARCH=FILE for each prebuilt binary")
	case *mainPkg != "" && len(binaries) > 0:
		return usageErr("--main and --binary exclude each other: build from source or pack prebuilt binaries")
	case len(binaries) > 0 && len(platforms) > 0:
		return usageErr("--platform goes with --main; with --binary the platforms are the binaries' OS/ARCH")
	case *mainDir != "" && *mainPkg == "":
		return usageErr("--main-dir goes with --main")
	}
	bins := map[string]string{}
	for _, b := range binaries {
		platform, file, ok := strings.Cut(b, "=")
		if !ok || !catalog.ValidPlatform(platform) || file == "" {
			return usageErr("--binary %q must be OS/ARCH=FILE, e.g. linux/amd64=build/my-plugin", b)
		}
		if _, dup := bins[platform]; dup {
			return usageErr("--binary gives %s twice", platform)
		}
		bins[platform] = file
	}
	for _, p := range platforms {
		if !catalog.ValidPlatform(p) {
			return usageErr("--platform %q must be OS/ARCH, e.g. linux/amd64", p)
		}
	}
	mtime, err := publish.ModTimeFromEnv(getenv("SOURCE_DATE_EPOCH"))
	if err != nil {
		return usageErr("%v", err)
	}
	o := publish.PackOptions{BundleDir: *bundle, Main: *mainPkg, MainDir: *mainDir, Platforms: platforms, OutDir: *out, ModTime: mtime, Log: stderr}
	if len(bins) > 0 {
		o.Binaries = bins
	}
	res, err := publish.Pack(ctx, o)
	if err != nil {
		return err
	}
	for _, a := range res.Archives {
		fmt.Fprintf(stdout, "wrote %s\nwrote %s.sha256\n", a.Path, a.Path)
	}
	_, err = fmt.Fprintf(stdout, "wrote %s\n", res.Sums)
	return err
}

func catalogCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := newFlags("catalog", stderr)
	dir := fl.String("dir", "", "catalog folder holding the archives; receives index.json, index.json.sig, marketplace.pub (required)")
	keys := fl.String("keys", "", "folder of marketplace.key and marketplace.pub, created on first use, outside the catalog and the repository (required)")
	base := fl.String("checkout-base", publish.DefaultCheckoutBase, "base URL of the checkout: checkout_url is BASE/checkout/<id>")
	validFor := fl.Duration("valid-for", publish.DefaultValidFor, "how long hosts accept the index (at most 366 days, e.g. 720h); re-sign it before then")
	serial := fl.Int64("serial", 0, "the index serial; 0 is the build time in Unix seconds, raised above the previous index.json's")
	var forbid multiFlag
	fl.Var(&forbid, "forbid", "refuse a keys folder inside this folder, e.g. the repository (repeatable)")
	if err := parse(fl, args); err != nil {
		return err
	}
	switch {
	case *dir == "":
		return usageErr("--dir is required: the folder holding the packed archives")
	case *keys == "":
		return usageErr("--keys is required: a folder outside the repository for the signing key, e.g. ~/.config/magicads/dev-marketplace")
	case *validFor <= 0 || *validFor > publish.MaxValidFor:
		return usageErr("--valid-for %s must be more than 0 and at most %s (e.g. 720h for 30 days)", *validFor, publish.MaxValidFor)
	case *serial < 0:
		return usageErr("--serial %d must be positive (or 0 for the build time)", *serial)
	}
	if _, err := publish.CheckoutURL(*base, "x"); err != nil {
		return usageErr("--checkout-base: %v", err)
	}
	res, err := publish.Catalog(ctx, publish.CatalogOptions{Dir: *dir, KeysDir: *keys, Forbid: forbid, CheckoutBase: *base, ValidFor: *validFor, Serial: *serial})
	if err != nil {
		return err
	}
	for _, f := range res.Files {
		fmt.Fprintf(stdout, "wrote %s\n", f)
	}
	for _, p := range res.Index.Plugins {
		for _, v := range p.Versions {
			fmt.Fprintf(stdout, "catalog: %s %s (%s), %d platforms; checkout %s\n", p.ID, v.Version, p.Pricing.Model, len(v.Archives), p.CheckoutURL)
		}
	}
	state := "existing"
	if res.KeysCreated {
		state = "created"
	}
	_, err = fmt.Fprintf(stdout, "catalog: %d plugins, serial %d, expires %s, signed by key %s (%s, in %s)\n",
		len(res.Index.Plugins), res.Index.Serial, res.Index.Expires.Format(time.RFC3339), res.KeyID, state, *keys)
	return err
}

func verifyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := newFlags("verify", stderr)
	dir := fl.String("dir", "", "catalog folder to check")
	rawURL := fl.String("url", "", "http(s) or file URL of the catalog's index.json to check")
	var trusted multiFlag
	fl.Var(&trusted, "trusted-key", "public key file the host trusts, e.g. marketplace.pub (repeatable; required)")
	if err := parse(fl, args); err != nil {
		return err
	}
	switch {
	case (*dir == "") == (*rawURL == ""):
		return usageErr("give exactly one of --dir DIR or --url URL")
	case len(trusted) == 0:
		return usageErr("--trusted-key is required: the marketplace.pub hosts are configured with")
	}
	var keys []ed25519.PublicKey
	for _, f := range trusted {
		k, err := catalog.LoadPublicKeys(f)
		if err != nil {
			return fmt.Errorf("--trusted-key %s: %w", f, err)
		}
		keys = append(keys, k...)
	}
	res, err := publish.Verify(ctx, publish.VerifyOptions{Dir: *dir, URL: *rawURL, TrustedKeys: keys})
	if err != nil {
		return err
	}
	for _, a := range res.Archives {
		fmt.Fprintf(stdout, "ok %s %s %s\n", a.ID, a.Version, a.Platform)
	}
	_, err = fmt.Fprintf(stdout, "verified: %d plugins, %d archives, serial %d, expires %s\n",
		len(res.Index.Plugins), len(res.Archives), res.Index.Serial, res.Index.Expires.Format(time.RFC3339))
	return err
}

func keysCmd(args []string, stdout, stderr io.Writer) error {
	fl := newFlags("keys", stderr)
	keys := fl.String("keys", "", "folder of marketplace.key and marketplace.pub (required)")
	var forbid multiFlag
	fl.Var(&forbid, "forbid", "refuse a keys folder inside this folder (repeatable)")
	if err := parse(fl, args); err != nil {
		return err
	}
	if *keys == "" {
		return usageErr("--keys is required: a folder outside the repository for the signing key")
	}
	if err := publish.RefuseKeysInside(*keys, forbid...); err != nil {
		return err
	}
	pub, created, err := publish.EnsureKeys(*keys)
	if err != nil {
		return err
	}
	state := "existing"
	if created {
		state = "created"
	}
	_, err = fmt.Fprintf(stdout, "marketplace key %s (%s) in %s\n", catalog.KeyID(pub), state, *keys)
	return err
}
