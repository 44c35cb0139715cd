package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testManifest is a valid manifest.json for the test provider.
const testManifest = `{
  "id": "test-memory",
  "name": "Test memory provider",
  "description": "The conformance command's test provider.",
  "version": "0.0.1",
  "kind": "storage-provider",
  "protocol_versions": [1],
  "min_host_version": "1.0.0",
  "executables": {"linux/amd64": "bin/test-memory"},
  "settings_schema": "schema/settings.schema.json",
  "migrations": "migrations",
  "pricing": {"model": "free"}
}`

// testSchema is a valid settings schema for the test provider.
const testSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "bucket": {"type": "string", "title": "Bucket"},
    "secret_access_key": {"type": "string", "title": "Secret", "writeOnly": true}
  }
}`

// writeBundle lays out a bundle folder with the given manifest and schema.
func writeBundle(t *testing.T, manifestJSON, schemaJSON string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range map[string]string{
		"manifest.json":                   manifestJSON,
		"schema/settings.schema.json":     schemaJSON,
		"migrations/000001_init.up.sql":   "-- nothing\n",
		"migrations/000001_init.down.sql": "-- nothing\n",
	} {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestBundleGood: a good bundle passes as case "bundle", first, alone or
// before the cases.
func TestBundleGood(t *testing.T) {
	dir := writeBundle(t, testManifest, testSchema)
	code, out, errOut := runCmd(t, "--bundle", dir)
	if code != exitPass || !strings.HasPrefix(out, "PASS bundle (") || !strings.HasSuffix(out, "\n1 passed, 0 failed\n") {
		t.Errorf("bundle alone: exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitPass, out, errOut)
	}
	settings := writeFile(t, "settings.json", `{"bucket":"b","secret_access_key":"`+secret+`"}`, 0o600)
	code, out, errOut = runCmd(t, "--bundle", dir, "--plugin", self(t), "--settings", settings, "--run", "^(before-configure|describe)$")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != exitPass || len(lines) != 4 || !strings.HasPrefix(lines[0], "PASS bundle (") || !strings.HasPrefix(lines[1], "PASS before-configure (") ||
		!strings.HasPrefix(lines[2], "PASS describe (") || lines[3] != "3 passed, 0 failed" {
		t.Errorf("bundle and cases: exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitPass, out, errOut)
	}
	code, out, _ = runCmd(t, "--bundle", dir, "--list", "--run", "^describe$")
	if code != exitPass || out != "bundle\ndescribe\n" {
		t.Errorf("--list with --bundle: %d, %q", code, out)
	}
}

// TestBundleBad: a bad manifest field and a settings schema with an
// unknown x- keyword fail case "bundle", naming file, field and problem,
// and the cases still run.
func TestBundleBad(t *testing.T) {
	badManifest := strings.Replace(testManifest, `"version": "0.0.1"`, `"version": "one"`, 1)
	badSchema := strings.Replace(testSchema, `"title": "Bucket"`, `"title": "Bucket", "x-colour": "blue"`, 1)
	for _, c := range []struct {
		name          string
		manifest, sch string
		want, wantNot []string
	}{
		{"bad manifest", badManifest, testSchema, []string{"manifest.json is invalid", "version:"}, []string{"x-colour"}},
		{"unknown x- keyword", testManifest, badSchema, []string{"schema/settings.schema.json is invalid", "properties.bucket", "x-colour"}, []string{"manifest.json is invalid"}},
		{"both", badManifest, badSchema, []string{"manifest.json is invalid", "version:", "schema/settings.schema.json is invalid", "x-colour"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := writeBundle(t, c.manifest, c.sch)
			code, out, errOut := runCmd(t, "--bundle", dir)
			if code != exitFail || !strings.HasPrefix(out, "FAIL bundle: ") || !strings.HasSuffix(out, "\n0 passed, 1 failed\n") {
				t.Fatalf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitFail, out, errOut)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("output does not mention %q:\n%s", w, out)
				}
			}
			for _, w := range c.wantNot {
				if strings.Contains(out, w) {
					t.Errorf("output mentions %q:\n%s", w, out)
				}
			}
		})
	}
	settings := writeFile(t, "settings.json", `{"bucket":"b","secret_access_key":"`+secret+`"}`, 0o600)
	code, out, errOut := runCmd(t, "--bundle", writeBundle(t, badManifest, testSchema), "--plugin", self(t), "--settings", settings, "--run", "^describe$")
	if code != exitFail || !strings.HasPrefix(out, "FAIL bundle: ") || !strings.Contains(out, "\nPASS describe (") || !strings.HasSuffix(out, "\n1 passed, 1 failed\n") {
		t.Errorf("bad bundle and a case: exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitFail, out, errOut)
	}
}

// TestBundleIDMustMatchThePlugin: the manifest's id is the id the plugin
// describes itself with.
func TestBundleIDMustMatchThePlugin(t *testing.T) {
	dir := writeBundle(t, strings.Replace(testManifest, `"id": "test-memory"`, `"id": "other-store"`, 1), testSchema)
	settings := writeFile(t, "settings.json", `{"bucket":"b","secret_access_key":"`+secret+`"}`, 0o600)
	code, out, errOut := runCmd(t, "--bundle", dir, "--plugin", self(t), "--settings", settings, "--run", "^describe$")
	if code != exitFail || !strings.HasPrefix(out, `FAIL bundle: manifest.json: id: "other-store", but the plugin describes itself as "test-memory"`) {
		t.Errorf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitFail, out, errOut)
	}
}

func TestBundleUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--bundle", "/nonexistent/bundle"}, "--bundle"},
		{[]string{"--bundle", writeFile(t, "file", "x", 0o644)}, "not a folder"},
		{[]string{"--bundle", t.TempDir(), "--plugin", self(t)}, "--settings is required"},
	} {
		code, out, errOut := runCmd(t, c.args...)
		if code != exitUsage || !strings.Contains(errOut, c.want) || out != "" {
			t.Errorf("%v: exit status %d, stderr %q, stdout %q; want %d mentioning %q", c.args, code, errOut, out, exitUsage, c.want)
		}
	}
}
