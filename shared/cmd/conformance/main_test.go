package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/magicads/r2storage/shared/conformance"
	"github.com/magicads/r2storage/shared/sdk"
)

// secret is a value planted in settings files; it must never be printed.
const secret = "TOPSECRET-0123456789"

// TestMain makes the test binary double as a plugin: launched by go-plugin
// (which sets PLUGIN_PROTOCOL_VERSIONS), it serves testProvider.
func TestMain(m *testing.M) {
	if os.Getenv("PLUGIN_PROTOCOL_VERSIONS") != "" {
		sdk.Serve(newTestProvider())
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func writeFile(t *testing.T, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func self(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// runCmd runs the command in-process and returns its status and output.
func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), args, &stdout, &stderr)
	out, errOut := stdout.String(), stderr.String()
	if strings.Contains(out+errOut, secret) {
		t.Errorf("the output shows the secret from the settings file:\n%s\n%s", out, errOut)
	}
	return code, out, errOut
}

func TestUsageErrors(t *testing.T) {
	good := writeFile(t, "settings.json", `{"bucket":"b","secret_access_key":"`+secret+`"}`, 0o600)
	notExec := writeFile(t, "plugin", "#!/bin/sh\n", 0o644)
	exe := self(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no flags", nil, "--plugin is required"},
		{"no settings", []string{"--plugin", exe}, "--settings is required"},
		{"positional", []string{"--plugin", exe, "--settings", good, "extra"}, `unexpected argument "extra"`},
		{"unknown flag", []string{"--bogus"}, "flag provided but not defined"},
		{"bad timeout", []string{"--plugin", exe, "--settings", good, "--timeout", "0s"}, "--timeout must be positive"},
		{"bad regexp", []string{"--plugin", exe, "--settings", good, "--run", "("}, "not a valid regular expression"},
		{"no match", []string{"--plugin", exe, "--settings", good, "--run", "^nothing$"}, "matches no case"},
		{"missing plugin", []string{"--plugin", "/nonexistent/plugin", "--settings", good}, "no such file"},
		{"plugin not executable", []string{"--plugin", notExec, "--settings", good}, "not executable"},
		{"plugin is a directory", []string{"--plugin", t.TempDir(), "--settings", good}, "not a regular file"},
		{"missing settings", []string{"--plugin", exe, "--settings", "/nonexistent/settings.json"}, "reading the settings file"},
		{"settings not JSON", []string{"--plugin", exe, "--settings", writeFile(t, "s.json", `{"key": `+secret+`}`, 0o600)}, "not valid JSON (syntax error at byte"},
		{"settings an array", []string{"--plugin", exe, "--settings", writeFile(t, "s.json", `["`+secret+`"]`, 0o600)}, "must hold one JSON object"},
		{"settings null", []string{"--plugin", exe, "--settings", writeFile(t, "s.json", `null`, 0o600)}, "not null"},
		{"settings empty", []string{"--plugin", exe, "--settings", writeFile(t, "s.json", ``, 0o600)}, "empty or cut short"},
		{"settings trailing", []string{"--plugin", exe, "--settings", writeFile(t, "s.json", `{"a":"`+secret+`"} {}`, 0o600)}, "nothing after it"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCmd(t, tc.args...)
			if code != exitUsage {
				t.Errorf("exit status %d, want %d", code, exitUsage)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q does not mention %q", errOut, tc.want)
			}
			if out != "" {
				t.Errorf("stdout should be empty on a usage error, got %q", out)
			}
		})
	}
}

func TestList(t *testing.T) {
	code, out, _ := runCmd(t, "--list", "--run", "^object")
	if code != exitPass {
		t.Fatalf("exit status %d", code)
	}
	if got := strings.Fields(out); strings.Join(got, " ") != "object-5mib-plus-1 object-64mib-plus-1" {
		t.Errorf("--list --run ^object printed %q", got)
	}
}

func TestLaunchFails(t *testing.T) {
	notPlugin := writeFile(t, "not-a-plugin", "#!/bin/sh\necho hello\nexit 3\n", 0o755)
	settings := writeFile(t, "settings.json", `{"bucket":"b","secret_access_key":"`+secret+`"}`, 0o600)
	code, out, errOut := runCmd(t, "--plugin", notPlugin, "--settings", settings)
	if code != exitUsage {
		t.Errorf("exit status %d, want %d", code, exitUsage)
	}
	if !strings.Contains(errOut, "cannot launch the plugin") || !strings.Contains(errOut, "--plugin-logs") {
		t.Errorf("stderr %q does not explain the launch failure", errOut)
	}
	if out != "" {
		t.Errorf("stdout %q, want nothing", out)
	}
}

func TestConfigureFails(t *testing.T) {
	settings := writeFile(t, "settings.json", `{"secret_access_key":"`+secret+`"}`, 0o600)
	code, out, errOut := runCmd(t, "--plugin", self(t), "--settings", settings)
	if code != exitUsage {
		t.Errorf("exit status %d, want %d", code, exitUsage)
	}
	if !strings.Contains(errOut, "configuring the plugin") || !strings.Contains(errOut, "bucket: required") {
		t.Errorf("stderr %q does not explain the settings problem", errOut)
	}
	if out != "" {
		t.Errorf("stdout %q, want nothing", out)
	}
}

func TestEndToEndPass(t *testing.T) {
	settings := writeFile(t, "settings.json", `{"bucket":"b","secret_access_key":"`+secret+`","max":12345678901234567890}`, 0o600)
	code, out, errOut := runCmd(t, "--plugin", self(t), "--settings", settings, "--timeout", "5m")
	if code != exitPass {
		t.Errorf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitPass, out, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	names := []string{conformance.FreshCaseName}
	for _, c := range conformance.Cases() {
		names = append(names, c.Name)
	}
	names = append(names, conformance.MissingBucketCaseName)
	n := len(names)
	if len(lines) != n+1 {
		t.Fatalf("%d lines, want one per case (%d) and a summary:\n%s", len(lines), n, out)
	}
	for i, c := range names {
		if !strings.HasPrefix(lines[i], "PASS "+c+" (") {
			t.Errorf("line %d = %q, want PASS %s (...)", i+1, lines[i], c)
		}
	}
	if want := fmt.Sprintf("%d passed, 0 failed", n); lines[n] != want {
		t.Errorf("last line %q, want %q", lines[n], want)
	}
	if !strings.Contains(errOut, "testing Test memory provider (test-memory 0.0.1)") {
		t.Errorf("stderr %q does not name the provider", errOut)
	}
}

// TestEndToEndChecksWhatConfigureReported: the command tells the suite
// what Configure reported, so a plugin whose puts go to another bucket
// than it reported fails the locations case; with a key prefix it passes.
func TestEndToEndChecksWhatConfigureReported(t *testing.T) {
	settings := writeFile(t, "settings.json", `{"bucket":"b","key_prefix":"media/prod","secret_access_key":"`+secret+`"}`, 0o600)
	code, out, errOut := runCmd(t, "--plugin", self(t), "--settings", settings, "--run", "^locations$")
	if code != exitPass || !strings.HasPrefix(out, "PASS locations (") {
		t.Errorf("with a key prefix: exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitPass, out, errOut)
	}
	settings = writeFile(t, "settings.json", `{"bucket":"b","mode":"misreport-bucket","secret_access_key":"`+secret+`"}`, 0o600)
	code, out, errOut = runCmd(t, "--plugin", self(t), "--settings", settings, "--run", "^locations$")
	if code != exitFail || !strings.HasPrefix(out, "FAIL locations: ") || !strings.Contains(out, `but Configure reported Bucket "memory:elsewhere"`) {
		t.Errorf("misreported bucket: exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitFail, out, errOut)
	}
}

func TestEndToEndFail(t *testing.T) {
	settings := writeFile(t, "settings.json", `{"bucket":"b","mode":"ignore-content-type","secret_access_key":"`+secret+`"}`, 0o600)
	code, out, errOut := runCmd(t, "--plugin", self(t), "--settings", settings, "--run", "^(describe|content-type)$")
	if code != exitFail {
		t.Errorf("exit status %d, want %d\nstderr:\n%s", code, exitFail, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "PASS describe (") ||
		!strings.HasPrefix(lines[1], `FAIL content-type: `) || !strings.Contains(lines[1], `want "image/png"`) ||
		lines[2] != "1 passed, 1 failed" {
		t.Errorf("output:\n%s", out)
	}
}

// TestEndToEndMissingBucket: the command checks, last, a bucket that does
// not exist, with the settings' "bucket" pointing at a made-up one; a
// plugin that makes every bucket it is configured for fails it.
func TestEndToEndMissingBucket(t *testing.T) {
	settings := writeFile(t, "settings.json", `{"bucket":"b","secret_access_key":"`+secret+`"}`, 0o600)
	code, out, errOut := runCmd(t, "--plugin", self(t), "--settings", settings, "--run", "^(not-found|missing-bucket)$")
	if code != exitPass || !strings.Contains(out, "PASS not-found (") || !strings.Contains(out, "\nPASS missing-bucket (") {
		t.Errorf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitPass, out, errOut)
	}
	settings = writeFile(t, "settings.json", `{"bucket":"b","mode":"makes-every-bucket","secret_access_key":"`+secret+`"}`, 0o600)
	code, out, errOut = runCmd(t, "--plugin", self(t), "--settings", settings, "--run", "^missing-bucket$")
	if code != exitFail || !strings.HasPrefix(out, "FAIL missing-bucket: ") || !strings.Contains(out, `in bucket "conformance-missing-`) || !strings.Contains(out, "succeeded") {
		t.Errorf("a plugin with every bucket: exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitFail, out, errOut)
	}
}
