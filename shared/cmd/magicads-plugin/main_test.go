package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/magicads/r2storage/shared/catalog"
)

const repoRoot = "../../.."

var s3Bundle = filepath.Join(repoRoot, "plugin", "s3compat", "bundle")

// cmd runs the command with args and SOURCE_DATE_EPOCH set to epoch.
func cmd(t *testing.T, epoch string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr, func(k string) string {
		if k == "SOURCE_DATE_EPOCH" {
			return epoch
		}
		return ""
	})
	return code, stdout.String(), stderr.String()
}

func fakeBinary(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(p, []byte("fake plugin"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBadUsageExits2: every usage error exits 2 and says what to do.
func TestBadUsageExits2(t *testing.T) {
	bin := fakeBinary(t)
	out := t.TempDir()
	for _, c := range []struct {
		args  []string
		epoch string
		want  string
	}{
		{nil, "", "Usage:"},
		{[]string{"bogus"}, "", `unknown command "bogus"`},
		{[]string{"pack", "--main", "./x", "--out", out}, "", "--bundle is required"},
		{[]string{"pack", "--bundle", s3Bundle, "--main", "./x"}, "", "--out is required"},
		{[]string{"pack", "--bundle", s3Bundle, "--out", out}, "", "give --main PKG"},
		{[]string{"pack", "--bundle", s3Bundle, "--out", out, "--main", "./x", "--binary", "linux/amd64=" + bin}, "", "exclude each other"},
		{[]string{"pack", "--bundle", s3Bundle, "--out", out, "--binary", "linux-amd64:" + bin}, "", "must be OS/ARCH=FILE"},
		{[]string{"pack", "--bundle", s3Bundle, "--out", out, "--binary", "linux/amd64=" + bin, "--platform", "linux/amd64"}, "", "--platform goes with --main"},
		{[]string{"pack", "--bundle", s3Bundle, "--out", out, "--main", "./x", "--platform", "linux"}, "", "must be OS/ARCH"},
		{[]string{"pack", "--bundle", s3Bundle, "--out", out, "--binary", "linux/amd64=" + bin}, "yesterday", "SOURCE_DATE_EPOCH"},
		{[]string{"pack", "--bundle", s3Bundle, "--out", out, "--binary", "linux/amd64=" + bin, "stray"}, "", "unexpected arguments"},
		{[]string{"pack", "--nope"}, "", "flag provided but not defined"},
		{[]string{"catalog", "--keys", out}, "", "--dir is required"},
		{[]string{"catalog", "--dir", out}, "", "--keys is required"},
		{[]string{"catalog", "--dir", out, "--keys", out + "-keys", "--valid-for", "9000h"}, "", "--valid-for"},
		{[]string{"catalog", "--dir", out, "--keys", out + "-keys", "--checkout-base", "ftp://x"}, "", "checkout base"},
		{[]string{"verify", "--trusted-key", bin}, "", "exactly one of --dir"},
		{[]string{"verify", "--dir", out, "--url", "http://x/index.json", "--trusted-key", bin}, "", "exactly one of --dir"},
		{[]string{"verify", "--dir", out}, "", "--trusted-key is required"},
		{[]string{"keys"}, "", "--keys is required"},
	} {
		code, _, stderr := cmd(t, c.epoch, c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", c.args, code, stderr, c.want)
		}
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("bad usage wrote %d files", len(entries))
	}
	if code, stdout, _ := cmd(t, "", "help"); code != 0 || !strings.Contains(stdout, "magicads-plugin pack") {
		t.Errorf("help: %d %q", code, stdout)
	}
}

// TestPackCatalogVerify: both providers packed from their bundles into one
// folder, signed into one catalog and verified, through the command.
func TestPackCatalogVerify(t *testing.T) {
	bin := fakeBinary(t)
	out := filepath.Join(t.TempDir(), "dist")
	keys := filepath.Join(t.TempDir(), "keys")
	for _, bundle := range []string{repoRoot, s3Bundle} {
		code, stdout, stderr := cmd(t, "1700000000", "pack", "--bundle", bundle, "--binary", "linux/amd64="+bin, "--binary", "windows/amd64="+bin, "--out", out)
		if code != 0 {
			t.Fatalf("pack %s: exit %d: %s", bundle, code, stderr)
		}
		if !strings.Contains(stdout, "_windows_amd64.tar.gz.sha256\n") || !strings.Contains(stdout, "SHA256SUMS") {
			t.Errorf("pack stdout %q", stdout)
		}
	}
	sums, _ := os.ReadFile(filepath.Join(out, "SHA256SUMS"))
	if n := strings.Count(string(sums), "\n"); n != 4 {
		t.Errorf("SHA256SUMS has %d lines, want 4:\n%s", n, sums)
	}

	// A keys folder inside a forbidden folder is refused (exit 1), naming why.
	code, _, stderr := cmd(t, "", "catalog", "--dir", out, "--keys", filepath.Join(out, "keys"))
	if code != 1 || !strings.Contains(stderr, "inside") {
		t.Errorf("keys in the catalog: exit %d, %q", code, stderr)
	}
	code, stdout, stderr := cmd(t, "", "catalog", "--dir", out, "--keys", keys, "--checkout-base", "http://127.0.0.1:9999", "--forbid", filepath.Dir(keys)+"-repo")
	if code != 0 {
		t.Fatalf("catalog: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"cloudflare-r2 1.0.0 (paid), 2 platforms; checkout http://127.0.0.1:9999/checkout/cloudflare-r2", "s3-compatible 1.0.0 (free), 2 platforms", "2 plugins, serial", "(created, in "} {
		if !strings.Contains(stdout, want) {
			t.Errorf("catalog stdout lacks %q:\n%s", want, stdout)
		}
	}
	code, stdout, stderr = cmd(t, "", "verify", "--dir", out, "--trusted-key", filepath.Join(out, catalog.PublicKeyFile))
	if code != 0 || !strings.Contains(stdout, "verified: 2 plugins, 4 archives") {
		t.Fatalf("verify: exit %d: %s %s", code, stdout, stderr)
	}
	other := t.TempDir()
	if code, _, _ := cmd(t, "", "keys", "--keys", other); code != 0 {
		t.Fatal("keys failed")
	}
	code, _, stderr = cmd(t, "", "verify", "--dir", out, "--trusted-key", filepath.Join(other, catalog.PublicKeyFile))
	if code != 1 || !strings.Contains(stderr, "not trusted") {
		t.Errorf("verify with another key: exit %d, %q", code, stderr)
	}
	code, _, stderr = cmd(t, "", "keys", "--keys", filepath.Join(out, "k"), "--forbid", out)
	if code != 1 || !strings.Contains(stderr, "inside") {
		t.Errorf("keys inside: exit %d, %q", code, stderr)
	}
}
