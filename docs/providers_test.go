// Package docs holds the project's guides and the test that follows
// docs/providers.md's quick start literally.
package docs

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// step is one annotated block of the guide: a file to write, commands to
// run, or a command to start in the background and wait for.
type step struct {
	kind string // "file", "run" or "background"
	arg  string // the file's path, or the URL a background step waits for
	body string
	line int
}

// annotation marks a block: <!-- guide:file PATH -->, <!-- guide:run -->,
// <!-- guide:background URL -->.
var annotation = regexp.MustCompile(`^<!-- guide:(file|run|background)\s*(\S*)\s*-->$`)

// parseGuide returns the annotated blocks of a markdown guide, in order.
func parseGuide(t *testing.T, path string) []step {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var steps []step
	var cur *step
	inBlock := false
	var body strings.Builder
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		switch {
		case cur == nil:
			if m := annotation.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
				cur = &step{kind: m[1], arg: m[2], line: n}
			}
		case !inBlock:
			if !strings.HasPrefix(line, "```") {
				t.Fatalf("%s:%d: an annotation must be followed by a fenced block", path, cur.line)
			}
			inBlock = true
			body.Reset()
		case line == "```":
			cur.body = body.String()
			steps = append(steps, *cur)
			cur, inBlock = nil, false
		default:
			body.WriteString(line + "\n")
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur != nil {
		t.Fatalf("%s:%d: unterminated block", path, cur.line)
	}
	return steps
}

// script turns the steps into one bash script, run as a reader would type
// it in one terminal: files are written below $GUIDE_ROOT, commands run in
// order in one shell (so a cd carries on), and a background command is
// started, waited for, and stopped with Ctrl-C (SIGINT) when the script
// ends.
func script(steps []step) string {
	var b strings.Builder
	b.WriteString("set -euo pipefail\ncd \"$GUIDE_ROOT\"\nbg=()\n")
	b.WriteString("stop_bg() { for p in \"${bg[@]}\"; do kill -INT \"$p\" 2>/dev/null || true; done; for p in \"${bg[@]}\"; do for i in $(seq 1 600); do kill -0 \"$p\" 2>/dev/null || break; sleep 0.1; done; done; }\n")
	b.WriteString("trap stop_bg EXIT\n")
	for i, s := range steps {
		fmt.Fprintf(&b, "echo '--- guide step %d (line %d): %s %s' >&2\n", i+1, s.line, s.kind, s.arg)
		switch s.kind {
		case "file":
			fmt.Fprintf(&b, "mkdir -p \"$GUIDE_ROOT/%s\"\ncat > \"$GUIDE_ROOT/%s\" <<'GUIDE_EOF'\n%sGUIDE_EOF\n", filepath.Dir(s.arg), s.arg, s.body)
		case "run":
			b.WriteString(s.body)
		case "background":
			fmt.Fprintf(&b, "( %s ) > \"$GUIDE_ROOT/background-%d.log\" 2>&1 &\nbg+=($!)\n", strings.TrimSpace(s.body), i+1)
			fmt.Fprintf(&b, "url=\"%s\"\nfor i in $(seq 1 1800); do curl -fs --max-time 2 \"$url\" >/dev/null 2>&1 && break; kill -0 \"${bg[-1]}\" 2>/dev/null || { cat \"$GUIDE_ROOT/background-%d.log\" >&2; echo \"the background step stopped before $url answered\" >&2; exit 1; }; sleep 0.5; done\n", s.arg, i+1)
			fmt.Fprintf(&b, "curl -fs --max-time 2 \"$url\" >/dev/null || { cat \"$GUIDE_ROOT/background-%d.log\" >&2; echo \"$url never answered\" >&2; exit 1; }\n", i+1)
		}
	}
	return b.String()
}

// freePort returns a port nothing listens on now.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
}

// TestProviderGuideQuickStart follows docs/providers.md's quick start word
// for word in a folder outside the repository: it writes the scratch
// provider module, runs its conformance test, packs it, starts
// scripts/demo with the archive in its catalog, and installs, configures
// and tests the provider through the admin API.
func TestProviderGuideQuickStart(t *testing.T) {
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	steps := parseGuide(t, "providers.md")
	kinds := map[string]int{}
	for _, s := range steps {
		kinds[s.kind]++
	}
	if kinds["file"] < 5 || kinds["run"] < 3 || kinds["background"] != 1 {
		t.Fatalf("the guide's annotated blocks changed shape: %v", kinds)
	}
	root, err := os.MkdirTemp("", "provider-guide-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if strings.HasPrefix(root, repo+string(filepath.Separator)) {
		t.Fatalf("scratch folder %s is inside the repository", root)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script(steps))
	cmd.Env = append(os.Environ(),
		"GUIDE_ROOT="+root,
		"MAGICADS_REPO="+repo,
		"DEMO_DIR="+filepath.Join(root, "demo"),
		"DEMO_HOST_PORT="+freePort(t),
		"DEMO_MARKET_PORT="+freePort(t),
		"DEMO_S3_PORT="+freePort(t),
		"DEMO_PUBLIC_PORT="+freePort(t),
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		logs, _ := filepath.Glob(filepath.Join(root, "demo", "logs", "*"))
		for _, l := range logs {
			if data, rerr := os.ReadFile(l); rerr == nil {
				t.Logf("%s:\n%s", l, tail(string(data), 40))
			}
		}
		t.Fatalf("following the guide failed: %v\n%s", err, tail(string(out), 120))
	}
	t.Logf("guide output:\n%s", tail(string(out), 40))
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// commands returns the commands of shell text: continuation lines joined,
// comments and blank lines dropped, white space folded.
func commands(sh string) []string {
	var out []string
	for _, line := range strings.Split(strings.ReplaceAll(sh, "\\\n", " "), "\n") {
		if i := strings.Index(line, " #"); i >= 0 {
			line = line[:i]
		}
		line = strings.Join(strings.Fields(line), " ")
		if line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out
}

// TestReadmeProviderCommandsAreTheGuides: every command of the README's
// "Building another storage provider" section is one of the commands of
// docs/providers.md's quick start, which TestProviderGuideQuickStart runs.
func TestReadmeProviderCommandsAreTheGuides(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	sec := string(readme)
	i := strings.Index(sec, "## Building another storage provider")
	if i < 0 {
		t.Fatal("README.md has no \"Building another storage provider\" section")
	}
	sec = sec[i:]
	if j := strings.Index(sec[3:], "\n## "); j >= 0 {
		sec = sec[:j+3]
	}
	start := strings.Index(sec, "```sh\n")
	if start < 0 {
		t.Fatal("the README's provider section has no sh block")
	}
	block := sec[start+len("```sh\n"):]
	block = block[:strings.Index(block, "```")]
	guide := map[string]bool{}
	for _, s := range parseGuide(t, "providers.md") {
		if s.kind != "file" {
			for _, c := range commands(s.body) {
				guide[c] = true
			}
		}
	}
	readmeCmds := commands(block)
	if len(readmeCmds) < 4 {
		t.Fatalf("the README's provider commands changed shape: %q", readmeCmds)
	}
	for _, c := range readmeCmds {
		if !guide[c] {
			t.Errorf("README command %q is not one of the guide's quick-start commands", c)
		}
	}
}
