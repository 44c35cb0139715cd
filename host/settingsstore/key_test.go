package settingsstore_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/magicads/r2storage/host/settingsstore"
)

// randomB64 returns "base64:" + the base64 of n random bytes.
func randomB64(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "base64:" + base64.StdEncoding.EncodeToString(b)
}

func newKey(t *testing.T) settingsstore.Key {
	t.Helper()
	k, err := settingsstore.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestParseKeyAccepts(t *testing.T) {
	s := randomB64(t, 32)
	k, err := settingsstore.ParseKey(s)
	if err != nil {
		t.Fatalf("ParseKey: %v", err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(k.ID()) {
		t.Errorf("ID %q is not 16 hex characters", k.ID())
	}
	if k.Encode() != s {
		t.Errorf("Encode does not give back the parsed value")
	}
	again, err := settingsstore.ParseKey("  " + s + "\n")
	if err != nil {
		t.Fatalf("ParseKey with surrounding white space: %v", err)
	}
	if again.ID() != k.ID() {
		t.Errorf("same key, different IDs %s and %s", again.ID(), k.ID())
	}
	if other := newKey(t); other.ID() == k.ID() {
		t.Errorf("two random keys share ID %s", k.ID())
	}
}

func TestParseKeyRefusals(t *testing.T) {
	payload := strings.TrimPrefix(randomB64(t, 32), "base64:")
	cases := []struct {
		name, in, want string
	}{
		{"empty", "", "empty"},
		{"no prefix", payload, `does not start with "base64:"`},
		{"wrong prefix", "hex:" + payload, `does not start with "base64:"`},
		{"prefix case", "BASE64:" + payload, `does not start with "base64:"`},
		{"bad base64", "base64:" + payload[:20] + "!*" + payload[22:], "not valid standard base64"},
		{"url-safe base64", "base64:" + strings.NewReplacer("+", "-", "/", "_").Replace(payload) + "-_", "not valid standard base64"},
		{"31 bytes", randomB64(t, 31), "decodes to 31 bytes, not 32"},
		{"33 bytes", randomB64(t, 33), "decodes to 33 bytes, not 32"},
		{"0 bytes", "base64:", "decodes to 0 bytes, not 32"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := settingsstore.ParseKey(c.in)
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, settingsstore.ErrInvalidKey) {
				t.Errorf("error %v does not wrap ErrInvalidKey", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, c.want) {
				t.Errorf("error %q does not say %q", msg, c.want)
			}
			// The message never echoes the value (or a recognisable part of it).
			secretPart := strings.TrimPrefix(strings.TrimPrefix(c.in, "hex:"), "BASE64:")
			secretPart = strings.TrimPrefix(secretPart, "base64:")
			if len(secretPart) >= 8 {
				for i := 0; i+8 <= len(secretPart); i++ {
					if strings.Contains(msg, secretPart[i:i+8]) {
						t.Fatalf("error %q echoes part of the input", msg)
					}
				}
			}
		})
	}
}

func TestKeyNeverPrintsItsBytes(t *testing.T) {
	k := newKey(t)
	enc := k.Encode()
	payload := strings.TrimPrefix(enc, "base64:")
	kr, err := settingsstore.NewKeyring(k)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	logger.Info("key", "k", k, "kr", kr)
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("key", "k", k, "kr", kr)
	out := fmt.Sprintf("%v %+v %#v %s %q %x %X %d %v %+v %#v %s %d", k, k, k, k, k, k, k, k, kr, kr, kr, *kr, kr) + logs.String()
	if strings.Contains(out, payload) {
		t.Fatal("printing a key shows its base64")
	}
	raw, _ := base64.StdEncoding.DecodeString(payload)
	if strings.Contains(out, fmt.Sprintf("%x", raw[:8])) || strings.Contains(out, strings.Trim(fmt.Sprint(raw[:6]), "[]")) {
		t.Fatalf("printing a key shows its bytes: %s", out)
	}
	if !strings.Contains(out, k.ID()) {
		t.Errorf("printing a key does not even show its ID: %s", out)
	}
}

func TestNewKeyringRefusesZeroKey(t *testing.T) {
	if _, err := settingsstore.NewKeyring(settingsstore.Key{}); err == nil {
		t.Error("zero current key accepted")
	}
	if _, err := settingsstore.NewKeyring(newKey(t), settingsstore.Key{}); err == nil {
		t.Error("zero previous key accepted")
	}
}

// logBuffer is a concurrency-safe log sink.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func testLogger() (*slog.Logger, *logBuffer) {
	buf := &logBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

func TestLoadKeyringGeneratesAndReusesKeyFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data") // does not exist yet
	logger, logs := testLogger()
	kr, generated, err := settingsstore.LoadKeyring("", "", dir, logger)
	if err != nil {
		t.Fatalf("LoadKeyring: %v", err)
	}
	if !generated {
		t.Error("first call: generated = false")
	}
	path := filepath.Join(dir, settingsstore.KeyFileName)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("key file: %v", err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fileKey, err := settingsstore.ParseKey(string(data))
	if err != nil {
		t.Fatalf("generated file does not parse: %v", err)
	}
	if fileKey.ID() != kr.CurrentID() {
		t.Errorf("file key %s, keyring current %s", fileKey.ID(), kr.CurrentID())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("data dir holds %d files, want only %s (no temporary left behind)", len(entries), settingsstore.KeyFileName)
	}

	kr2, generated, err := settingsstore.LoadKeyring("", "", dir, logger)
	if err != nil {
		t.Fatalf("second LoadKeyring: %v", err)
	}
	if generated {
		t.Error("second call: generated = true")
	}
	if kr2.CurrentID() != kr.CurrentID() {
		t.Errorf("second call uses key %s, first %s", kr2.CurrentID(), kr.CurrentID())
	}
	assertNoSecret(t, "logs", logs.String(), strings.TrimPrefix(strings.TrimSpace(string(data)), "base64:"))
	if !strings.Contains(logs.String(), kr.CurrentID()) {
		t.Errorf("logs do not name the key id: %s", logs.String())
	}
}

func TestLoadKeyringConcurrentFirstStartsAgree(t *testing.T) {
	dir := t.TempDir()
	const n = 12
	ids := make([]string, n)
	gens := make([]bool, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			kr, g, err := settingsstore.LoadKeyring("", "", dir, nil)
			errs[i], gens[i] = err, g
			if err == nil {
				ids[i] = kr.CurrentID()
			}
		})
	}
	close(start)
	wg.Wait()
	generatedCount := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		if ids[i] != ids[0] {
			t.Errorf("call %d got key %s, call 0 got %s", i, ids[i], ids[0])
		}
		if gens[i] {
			generatedCount++
		}
	}
	if generatedCount != 1 {
		t.Errorf("%d calls report generating the key, want 1", generatedCount)
	}
}

func TestLoadKeyringFromEnvAndPrevious(t *testing.T) {
	cur, old1, old2 := newKey(t), newKey(t), newKey(t)
	dir := t.TempDir()
	logger, logs := testLogger()
	kr, generated, err := settingsstore.LoadKeyring(cur.Encode(), " "+old1.Encode()+" ,, "+old2.Encode()+","+cur.Encode(), dir, logger)
	if err != nil {
		t.Fatal(err)
	}
	if generated {
		t.Error("generated with APP_KEY set")
	}
	if kr.CurrentID() != cur.ID() {
		t.Errorf("current %s, want %s", kr.CurrentID(), cur.ID())
	}
	if got, want := strings.Join(kr.IDs(), ","), cur.ID()+","+old1.ID()+","+old2.ID(); got != want {
		t.Errorf("IDs %s, want %s", got, want)
	}
	if _, err := os.Stat(filepath.Join(dir, settingsstore.KeyFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a key file was written although APP_KEY is set (stat: %v)", err)
	}
	for _, k := range []settingsstore.Key{cur, old1, old2} {
		assertNoSecret(t, "logs", logs.String(), strings.TrimPrefix(k.Encode(), "base64:"))
	}
}

func TestLoadKeyringKeepsGeneratedKeyWhenAppKeyIsSet(t *testing.T) {
	dir := t.TempDir()
	first, _, err := settingsstore.LoadKeyring("", "", dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	cur := newKey(t)
	kr, _, err := settingsstore.LoadKeyring(cur.Encode(), "", dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(kr.IDs(), ","), cur.ID()+","+first.CurrentID(); got != want {
		t.Errorf("IDs %s, want %s (APP_KEY, then the generated key from app.key)", got, want)
	}
}

func TestLoadKeyringRefusals(t *testing.T) {
	good := newKey(t).Encode()
	bad := randomB64(t, 31)
	badPayload := strings.TrimPrefix(bad, "base64:")

	_, _, err := settingsstore.LoadKeyring(bad, "", t.TempDir(), nil)
	if err == nil || !strings.Contains(err.Error(), "APP_KEY") || !errors.Is(err, settingsstore.ErrInvalidKey) {
		t.Errorf("bad APP_KEY: %v", err)
	}
	assertNoSecret(t, "error", fmt.Sprint(err), badPayload)

	_, _, err = settingsstore.LoadKeyring(good, newKey(t).Encode()+","+bad, t.TempDir(), nil)
	if err == nil || !strings.Contains(err.Error(), "APP_KEY_PREVIOUS entry 2") {
		t.Errorf("bad APP_KEY_PREVIOUS: %v", err)
	}
	assertNoSecret(t, "error", fmt.Sprint(err), badPayload)

	if _, _, err = settingsstore.LoadKeyring("", "", "", nil); err == nil {
		t.Error("no APP_KEY and no data dir accepted")
	}

	dir := t.TempDir()
	path := filepath.Join(dir, settingsstore.KeyFileName)
	if err := os.WriteFile(path, []byte(bad+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = settingsstore.LoadKeyring("", "", dir, nil)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("bad app.key: %v", err)
	}
	assertNoSecret(t, "error", fmt.Sprint(err), badPayload)
	// With APP_KEY set, an invalid app.key is ignored (logged), not fatal.
	logger, logs := testLogger()
	if _, _, err := settingsstore.LoadKeyring(good, "", dir, logger); err != nil {
		t.Errorf("APP_KEY set, bad app.key: %v", err)
	}
	assertNoSecret(t, "logs", logs.String(), badPayload)
}

// assertNoSecret fails if text contains secret.
func assertNoSecret(t *testing.T, what, text, secret string) {
	t.Helper()
	if secret != "" && strings.Contains(text, secret) {
		t.Fatalf("%s contain a secret", what)
	}
}
