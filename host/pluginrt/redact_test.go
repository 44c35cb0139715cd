package pluginrt

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/magicads/r2storage/internal/plugintest"
)

type secretStringer struct{ v string }

func (s secretStringer) String() string { return "stringer " + s.v }

type secretStruct struct {
	Name  string
	inner []byte
}

func TestRedactingLogger(t *testing.T) {
	const secret = "hunter2-very-secret"
	current := []string{secret, "", "hunter2"} // a secret inside another is replaced whole
	for _, jsonFormat := range []bool{false, true} {
		t.Run(fmt.Sprintf("json=%v", jsonFormat), func(t *testing.T) {
			logs := &plugintest.Logs{}
			inner := hclog.New(&hclog.LoggerOptions{Name: "host", Output: logs, Level: hclog.Trace, JSONFormat: jsonFormat})
			l := newRedactingLogger(inner, func() []string { return current })

			l.Info("msg "+secret, "k", secret, secret, "v")
			l.With("implied", secret).Named("sub").Warn("with", "err", errors.New("e "+secret))
			l.ResetNamed("other").Error("reset", "s", secretStringer{secret}, "b", []byte(secret))
			l.Debug("format", "f", hclog.Fmt("%s/%d", secret, 7), "q", hclog.Quote(secret))
			l.Trace("nested", "m", map[string]any{"a": []any{secret, 1}, secret: true}, "st", secretStruct{Name: secret}, "n", 42)
			l.Log(hclog.Info, "log", "x", secret)
			l.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}).Printf("[WARN] std %s", secret)
			if _, err := l.StandardWriter(nil).Write([]byte("writer " + secret + "\n")); err != nil {
				t.Fatal(err)
			}
			out := logs.String()
			if strings.Contains(out, "hunter2") {
				t.Fatalf("secret logged:\n%s", out)
			}
			for _, want := range []string{"msg [redacted]", "sub", "other", "stringer [redacted]", "[redacted]/7", "std [redacted]", "writer [redacted]", "42"} {
				if !strings.Contains(out, want) {
					t.Errorf("log lacks %q:\n%s", want, out)
				}
			}
			if args := l.With("a", secret).ImpliedArgs(); fmt.Sprint(args) != "[a [redacted]]" {
				t.Errorf("implied args %v", args)
			}
			if l.Name() != "host" || l.GetLevel() != hclog.Trace || !l.IsTrace() || !l.IsDebug() || !l.IsInfo() || !l.IsWarn() || !l.IsError() {
				t.Error("level or name not passed through")
			}
		})
	}
}

func TestRedactionWithoutSecrets(t *testing.T) {
	logs := &plugintest.Logs{}
	inner := hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Info})
	newRedactingLogger(inner, nil).Info("plain", "k", "v")
	newRedactingLogger(inner, func() []string { return []string{""} }).Info("empty secret", "k", "v")
	if out := logs.String(); !strings.Contains(out, "plain: k=v") || !strings.Contains(out, "empty secret: k=v") {
		t.Fatalf("log: %s", out)
	}
	base := errors.New("boom")
	if err := redactError(base, nil); err != base {
		t.Fatalf("unchanged error was wrapped: %v", err)
	}
	if err := redactError(nil, nil); err != nil {
		t.Fatal(err)
	}
	wrapped := fmt.Errorf("key abc: %w", base)
	err := redactError(wrapped, func() []string { return []string{"abc"} })
	if err.Error() != "key [redacted]: boom" || !errors.Is(err, base) {
		t.Fatalf("redacted error %q lost its message or chain", err)
	}
}

func TestBackoff(t *testing.T) {
	for n := 1; n <= 12; n++ {
		d := backoff(500*time.Millisecond, 30*time.Second, n)
		want := min(500*time.Millisecond<<(n-1), 30*time.Second)
		if d < want*4/5 || d > want*6/5 || d > 30*time.Second {
			t.Fatalf("backoff %d = %s, want about %s", n, d, want)
		}
	}
}
