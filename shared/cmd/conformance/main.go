// Command conformance runs the storage-provider conformance suite against a
// plugin binary.
//
//	go run ./shared/cmd/conformance --plugin PATH_TO_PLUGIN_BINARY --settings SETTINGS.json
//
// It launches the plugin over go-plugin, configures it with the settings file
// (a JSON object, which may hold secrets and is never printed) through
// conformance.ConfigureFresh, whose checks of Describe and Health before
// Configure are reported first, as case "before-configure", runs every
// case of package conformance (telling it what Configure reported, which
// the locations and public-url cases check Put's StoredKey, Bucket and URL
// against), then conformance.CheckMissingBucket, reported last as case
// "missing-bucket" (the settings with their "bucket" field pointing at a
// bucket that does not exist; skipped when they have none), and prints
// one line per case:
//
//	PASS name (1.2s)
//	FAIL name: what was expected and what came back
//
// then a last line "N passed, N failed". Objects are written under
// conformance/<random>/ in the configured bucket and deleted afterwards.
//
// With --bundle DIR, it first checks the plugin's bundle folder (its
// manifest.json, the settings schema the manifest names, checked against
// the console's vocabulary, and its migrations folder, with
// manifest.CheckBundle, as the host does at install) and reports it as
// case "bundle": each problem names the file, the field and what is
// wrong, and the manifest's id must be the id the plugin describes itself
// with. The cases still run after a failed bundle. --bundle alone (no
// --plugin or --settings) checks only the bundle.
//
// Exit status: 0 when every case passed, 1 when any failed, 2 for a usage
// error or when the plugin cannot be launched or configured.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/magicads/r2storage/shared/conformance"
	"github.com/magicads/r2storage/shared/manifest"
	"github.com/magicads/r2storage/shared/sdk"
	"github.com/magicads/r2storage/shared/storage"
)

// Exit statuses.
const (
	exitPass  = 0
	exitFail  = 1
	exitUsage = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the parsed command-line flags.
type options struct {
	plugin     string
	settings   string
	timeout    time.Duration
	run        string
	pluginLogs bool
	list       bool
	bundle     string
}

// usageError is a usage problem found after the flags were parsed; errors
// from the flag package itself are already explained on stderr.
type usageError struct{ msg string }

// Error returns the problem.
func (e *usageError) Error() string { return e.msg }

// usagef returns a *usageError with a formatted message.
func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// parseFlags parses args.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("conformance", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.plugin, "plugin", "", "path to the storage-provider plugin binary (required)")
	fs.StringVar(&o.settings, "settings", "", "JSON file holding the provider's settings object (required; never printed)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "time limit for the whole run")
	fs.StringVar(&o.run, "run", "", "run only the cases whose name matches this regular expression")
	fs.BoolVar(&o.pluginLogs, "plugin-logs", false, "copy the plugin's own logs to stderr")
	fs.BoolVar(&o.list, "list", false, "list the cases and exit")
	fs.StringVar(&o.bundle, "bundle", "", "plugin bundle folder (manifest.json, settings schema, migrations) to check first, as case \"bundle\"; alone, only the bundle is checked")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: conformance --plugin PATH_TO_PLUGIN_BINARY --settings SETTINGS.json [--bundle DIR] [flags]\n"+
			"       conformance --bundle DIR\n\n"+
			"Runs the storage-provider conformance suite against a plugin binary, and checks its bundle folder.\n"+
			"Exit status: 0 all passed, 1 a case failed, 2 usage error or the plugin could not be launched or configured.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, usagef("unexpected argument %q (flags only)", fs.Arg(0))
	case o.list:
		return o, nil
	case o.bundle != "" && o.plugin == "" && o.settings == "":
		return o, nil
	case o.plugin == "":
		return o, usagef("--plugin is required: the path to the plugin binary")
	case o.settings == "":
		return o, usagef("--settings is required: a JSON file holding the provider's settings object")
	case o.timeout <= 0:
		return o, usagef("--timeout must be positive, got %v", o.timeout)
	}
	return o, nil
}

// selectCases returns the cases whose name matches pattern ("" selects all).
func selectCases(all []conformance.Case, pattern string) ([]conformance.Case, error) {
	if pattern == "" {
		return all, nil
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("--run %q is not a valid regular expression: %w", pattern, err)
	}
	var out []conformance.Case
	for _, c := range all {
		if re.MatchString(c.Name) {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--run %q matches no case (see --list)", pattern)
	}
	return out, nil
}

// loadSettings reads a settings file holding one JSON object. Its errors
// never quote the file's content, which may hold secrets; for that reason
// JSON decoding errors are described rather than wrapped.
func loadSettings(path string) (storage.Settings, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the settings file: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var s storage.Settings
	if err := dec.Decode(&s); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			return nil, fmt.Errorf("settings file %s is not valid JSON (syntax error at byte %d)", path, syn.Offset)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("settings file %s is empty or cut short; it must hold one JSON object", path)
		}
		return nil, fmt.Errorf("settings file %s must hold one JSON object", path)
	}
	if s == nil {
		return nil, fmt.Errorf("settings file %s must hold one JSON object, not null", path)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("settings file %s must hold one JSON object and nothing after it", path)
	}
	return s, nil
}

// pluginPath checks the plugin binary exists and returns its absolute path,
// so a bare name is never looked up in PATH.
func pluginPath(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("plugin path %s: %w", p, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("plugin binary: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("plugin binary %s is not a regular file", abs)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("plugin binary %s is not executable", abs)
	}
	return abs, nil
}

// run is the whole command; it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	usage := func(err error) int {
		fmt.Fprintf(stderr, "conformance: %v\n", err)
		return exitUsage
	}
	o, err := parseFlags(args, stderr)
	if err != nil {
		var ue *usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "conformance: %v\n", err)
			fmt.Fprintln(stderr, "usage: conformance --plugin PATH_TO_PLUGIN_BINARY --settings SETTINGS.json [--bundle DIR] [--timeout 10m] [--run REGEXP]")
		}
		return exitUsage
	}
	// The before-configure checks run first, when the plugin is configured;
	// they are selected and listed like a case.
	fresh := conformance.Case{Name: conformance.FreshCaseName, Run: func(context.Context, storage.Provider, string) error { return nil }}
	missing := conformance.Case{Name: conformance.MissingBucketCaseName, Run: func(context.Context, storage.Provider, string) error { return nil }}
	all := append(append([]conformance.Case{fresh}, conformance.Cases()...), missing)
	cases, err := selectCases(all, o.run)
	if err != nil {
		return usage(err)
	}
	var bundle fs.FS
	if o.bundle != "" {
		if bundle, err = bundleDir(o.bundle); err != nil {
			return usage(err)
		}
	}
	if o.list {
		if bundle != nil {
			fmt.Fprintln(stdout, bundleCaseName)
		}
		for _, c := range cases {
			fmt.Fprintln(stdout, c.Name)
		}
		return exitPass
	}
	report := func(name string, err error, d time.Duration) {
		switch {
		case err == nil:
			fmt.Fprintf(stdout, "PASS %s (%.1fs)\n", name, d.Seconds())
		case conformance.IsSkip(err):
			fmt.Fprintf(stdout, "PASS %s (%.1fs) [%s]\n", name, d.Seconds(), oneLine(err.Error()))
		default:
			fmt.Fprintf(stdout, "FAIL %s: %s\n", name, oneLine(err.Error()))
		}
	}
	if o.plugin == "" {
		// --bundle alone.
		start := time.Now()
		_, err := checkBundle(bundle)
		report(bundleCaseName, err, time.Since(start))
		if err != nil {
			fmt.Fprintln(stdout, "0 passed, 1 failed")
			return exitFail
		}
		fmt.Fprintln(stdout, "1 passed, 0 failed")
		return exitPass
	}
	path, err := pluginPath(o.plugin)
	if err != nil {
		return usage(err)
	}
	settings, err := loadSettings(o.settings)
	if err != nil {
		return usage(err)
	}

	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	cfg := sdk.LaunchConfig{Path: path}
	if o.pluginLogs {
		cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "plugin", Output: stderr, Level: hclog.Debug})
	}
	client, err := sdk.Launch(ctx, cfg)
	if err != nil {
		hint := ""
		if !o.pluginLogs {
			hint = " (rerun with --plugin-logs to see what the plugin said)"
		}
		return usage(fmt.Errorf("cannot launch the plugin: %w%s", err, hint))
	}
	defer client.Close()
	reportFresh := cases[0].Name == conformance.FreshCaseName
	if reportFresh {
		cases = cases[1:]
	}
	checkMissing := len(cases) > 0 && cases[len(cases)-1].Name == conformance.MissingBucketCaseName
	if checkMissing {
		cases = cases[:len(cases)-1]
	}
	start := time.Now()
	configured, ok, freshErr := conformance.ConfigureFresh(ctx, client, settings)
	if !ok {
		return usage(fmt.Errorf("configuring the plugin with the settings in %s: %w", o.settings, freshErr))
	}
	info, infoErr := client.Describe(ctx)
	if infoErr == nil {
		n := len(cases) + map[bool]int{true: 1}[reportFresh] + map[bool]int{true: 1}[checkMissing] + map[bool]int{true: 1}[bundle != nil]
		fmt.Fprintf(stderr, "conformance: testing %s (%s %s), %d cases\n", info.Name, info.ID, info.Version, n)
	}
	var passed, failed int
	if bundle != nil {
		bstart := time.Now()
		m, err := checkBundle(bundle)
		if err == nil && infoErr == nil && m.ID != info.ID {
			err = fmt.Errorf("%s: id: %q, but the plugin describes itself as %q; the manifest's id is the plugin's", manifest.Path, m.ID, info.ID)
		}
		report(bundleCaseName, err, time.Since(bstart))
		if err != nil {
			failed++
		} else {
			passed++
		}
	}
	if reportFresh {
		report(conformance.FreshCaseName, freshErr, time.Since(start))
		if freshErr != nil {
			failed++
		} else {
			passed++
		}
	}
	p, f := conformance.RunCases(ctx, client, cases, report, conformance.Configured(configured))
	passed, failed = passed+p, failed+f
	if checkMissing {
		start := time.Now()
		err := conformance.CheckMissingBucket(ctx, client, settings)
		report(conformance.MissingBucketCaseName, err, time.Since(start))
		if err != nil && !conformance.IsSkip(err) {
			failed++
		} else {
			passed++
		}
	}
	fmt.Fprintf(stdout, "%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		return exitFail
	}
	return exitPass
}

// oneLine flattens a multi-line error message onto one line.
func oneLine(s string) string {
	return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ")
}
