package main

import (
	"context"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/magicads/r2storage/shared/conformance"
	"github.com/magicads/r2storage/shared/storage"
)

// uploadCases are the cases about what a put must refuse. long-reader is
// not among them: over the plugin the host's client never commits an
// over-long body, so whether a plugin that commits without the commit
// message gets to see the bytes first is a race (the in-process tests of
// package conformance cover that case).
var uploadCases = regexp.MustCompile(`^(put-sha256|short-reader|failed-overwrite|invalid-keys|one-byte)$`)

// TestSameVerdictInProcessAndOverPlugin: a provider that does none of the
// upload checks itself passes both in-process (conformance.RunCases) and
// over the plugin (the command), since both run it through storage.Guard;
// a provider that stops reading at the declared size, so the guard never
// sees the excess or the wrong sha256, fails the same cases both ways.
func TestSameVerdictInProcessAndOverPlugin(t *testing.T) {
	tests := []struct {
		mode     string
		wantFail []string
	}{
		{"skip-upload-checks", nil},
		{"stop-at-declared-size", []string{"failed-overwrite", "one-byte", "put-sha256"}},
	}
	for _, tc := range tests {
		t.Run(tc.mode, func(t *testing.T) {
			settings := storage.Settings{"bucket": "b", "mode": tc.mode}
			raw, err := json.Marshal(settings)
			if err != nil {
				t.Fatal(err)
			}
			path := writeFile(t, "settings.json", string(raw), 0o600)
			code, out, errOut := runCmd(t, "--plugin", self(t), "--settings", path, "--run", uploadCases.String())
			var overPlugin []string
			for _, line := range strings.Split(out, "\n") {
				if name, ok := strings.CutPrefix(line, "FAIL "); ok {
					overPlugin = append(overPlugin, strings.SplitN(name, ":", 2)[0])
				}
			}
			slices.Sort(overPlugin)
			if wantCode := map[bool]int{true: exitPass, false: exitFail}[len(tc.wantFail) == 0]; code != wantCode {
				t.Errorf("over the plugin: exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", code, wantCode, out, errOut)
			}

			p := newTestProvider()
			if _, err := p.Configure(t.Context(), settings); err != nil {
				t.Fatal(err)
			}
			var cases []conformance.Case
			for _, c := range conformance.Cases() {
				if uploadCases.MatchString(c.Name) {
					cases = append(cases, c)
				}
			}
			var inProcess []string
			conformance.RunCases(context.Background(), p, cases, func(name string, err error, _ time.Duration) {
				if err != nil && !conformance.IsSkip(err) {
					inProcess = append(inProcess, name)
					t.Logf("in-process %s: %v", name, err)
				}
			})
			slices.Sort(inProcess)
			if !slices.Equal(overPlugin, tc.wantFail) {
				t.Errorf("over the plugin failed %q, want %q\n%s", overPlugin, tc.wantFail, out)
			}
			if !slices.Equal(inProcess, tc.wantFail) {
				t.Errorf("in-process failed %q, want %q", inProcess, tc.wantFail)
			}
		})
	}
}
