package pluginrt

import (
	"errors"
	"fmt"
	"io"
	"log"
	"sort"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// redactedText replaces every secret value in a log line or error message.
const redactedText = "[redacted]"

// scrubber replaces a fixed set of secret values in strings.
type scrubber struct {
	r *strings.Replacer // nil when there is nothing to scrub
}

// newScrubber returns a scrubber for the secrets secrets() returns now. A nil
// func, or one returning no non-empty value, gives a scrubber that changes
// nothing.
func newScrubber(secrets func() []string) scrubber {
	if secrets == nil {
		return scrubber{}
	}
	var vals []string
	for _, s := range secrets() {
		if s != "" {
			vals = append(vals, s)
		}
	}
	if len(vals) == 0 {
		return scrubber{}
	}
	// Longer secrets first, so a secret that contains another is replaced whole.
	sort.Slice(vals, func(i, j int) bool { return len(vals[i]) > len(vals[j]) })
	pairs := make([]string, 0, 2*len(vals))
	for _, v := range vals {
		pairs = append(pairs, v, redactedText)
	}
	return scrubber{r: strings.NewReplacer(pairs...)}
}

// str returns s with every secret replaced.
func (s scrubber) str(v string) string {
	if s.r == nil {
		return v
	}
	return s.r.Replace(v)
}

// args scrubs hclog key/value arguments (keys and values alike).
func (s scrubber) args(args []any) []any {
	if s.r == nil || len(args) == 0 {
		return args
	}
	out := make([]any, len(args))
	for i, a := range args {
		out[i] = s.value(a)
	}
	return out
}

// value scrubs one log argument. Strings, errors, Stringers, byte slices and
// the maps and slices go-plugin decodes from a plugin's JSON log line are
// scrubbed in place; any other value that prints a secret is replaced by its
// scrubbed text.
func (s scrubber) value(v any) any {
	if s.r == nil {
		return v
	}
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		return s.str(x)
	case hclog.Quote:
		return hclog.Quote(s.str(string(x)))
	case []byte:
		if r := s.str(string(x)); r != string(x) {
			return []byte(r)
		}
		return x
	case hclog.Format:
		if len(x) > 0 {
			if f, ok := x[0].(string); ok {
				return s.str(fmt.Sprintf(f, x[1:]...))
			}
		}
		return s.printed(x)
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, val := range x {
			m[s.str(k)] = s.value(val)
		}
		return m
	case []any:
		out := make([]any, len(x))
		for i, val := range x {
			out[i] = s.value(val)
		}
		return out
	case error:
		if r := s.str(x.Error()); r != x.Error() {
			return errors.New(r)
		}
		return x
	case fmt.Stringer:
		if r := s.str(x.String()); r != x.String() {
			return r
		}
		return x
	default:
		return s.printed(x)
	}
}

// printed returns v unchanged unless its printed form shows a secret, in
// which case it returns the scrubbed printed form.
func (s scrubber) printed(v any) any {
	for _, format := range []string{"%v", "%+v", "%#v"} {
		p := fmt.Sprintf(format, v)
		if r := s.str(p); r != p {
			return s.str(fmt.Sprintf("%+v", v))
		}
	}
	return v
}

// redactingLogger is an hclog.Logger that replaces the current secret values
// in every message and key/value argument before passing them on.
type redactingLogger struct {
	inner   hclog.Logger
	secrets func() []string
}

var _ hclog.Logger = (*redactingLogger)(nil)

// newRedactingLogger wraps inner so that every string secrets() returns at
// the time of a log call is replaced by "[redacted]".
func newRedactingLogger(inner hclog.Logger, secrets func() []string) hclog.Logger {
	return &redactingLogger{inner: inner, secrets: secrets}
}

// Log scrubs msg and args, then logs them at level.
func (l *redactingLogger) Log(level hclog.Level, msg string, args ...any) {
	s := newScrubber(l.secrets)
	l.inner.Log(level, s.str(msg), s.args(args)...)
}

// Trace logs at trace level, scrubbed.
func (l *redactingLogger) Trace(msg string, args ...any) { l.Log(hclog.Trace, msg, args...) }

// Debug logs at debug level, scrubbed.
func (l *redactingLogger) Debug(msg string, args ...any) { l.Log(hclog.Debug, msg, args...) }

// Info logs at info level, scrubbed.
func (l *redactingLogger) Info(msg string, args ...any) { l.Log(hclog.Info, msg, args...) }

// Warn logs at warn level, scrubbed.
func (l *redactingLogger) Warn(msg string, args ...any) { l.Log(hclog.Warn, msg, args...) }

// Error logs at error level, scrubbed.
func (l *redactingLogger) Error(msg string, args ...any) { l.Log(hclog.Error, msg, args...) }

// IsTrace reports the wrapped logger's setting.
func (l *redactingLogger) IsTrace() bool { return l.inner.IsTrace() }

// IsDebug reports the wrapped logger's setting.
func (l *redactingLogger) IsDebug() bool { return l.inner.IsDebug() }

// IsInfo reports the wrapped logger's setting.
func (l *redactingLogger) IsInfo() bool { return l.inner.IsInfo() }

// IsWarn reports the wrapped logger's setting.
func (l *redactingLogger) IsWarn() bool { return l.inner.IsWarn() }

// IsError reports the wrapped logger's setting.
func (l *redactingLogger) IsError() bool { return l.inner.IsError() }

// ImpliedArgs returns the implied arguments, scrubbed.
func (l *redactingLogger) ImpliedArgs() []any {
	return newScrubber(l.secrets).args(l.inner.ImpliedArgs())
}

// With returns a scrubbing logger implying args, scrubbed with the secrets known now.
func (l *redactingLogger) With(args ...any) hclog.Logger {
	return &redactingLogger{inner: l.inner.With(newScrubber(l.secrets).args(args)...), secrets: l.secrets}
}

// Name returns the wrapped logger's name.
func (l *redactingLogger) Name() string { return l.inner.Name() }

// Named returns a scrubbing sub-logger.
func (l *redactingLogger) Named(name string) hclog.Logger {
	return &redactingLogger{inner: l.inner.Named(name), secrets: l.secrets}
}

// ResetNamed returns a scrubbing logger with the name replaced.
func (l *redactingLogger) ResetNamed(name string) hclog.Logger {
	return &redactingLogger{inner: l.inner.ResetNamed(name), secrets: l.secrets}
}

// SetLevel sets the wrapped logger's level.
func (l *redactingLogger) SetLevel(level hclog.Level) { l.inner.SetLevel(level) }

// GetLevel returns the wrapped logger's level.
func (l *redactingLogger) GetLevel() hclog.Level { return l.inner.GetLevel() }

// StandardLogger returns a standard logger writing through StandardWriter.
func (l *redactingLogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(l.StandardWriter(opts), "", 0)
}

// StandardWriter returns a writer that scrubs each write before logging it.
func (l *redactingLogger) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	if opts == nil {
		opts = &hclog.StandardLoggerOptions{} // hclog's own logger panics on nil
	}
	return &redactingWriter{w: l.inner.StandardWriter(opts), secrets: l.secrets}
}

// redactingWriter scrubs each write (a standard logger writes whole lines).
type redactingWriter struct {
	w       io.Writer
	secrets func() []string
}

// Write scrubs p and writes it on.
func (w *redactingWriter) Write(p []byte) (int, error) {
	s := newScrubber(w.secrets)
	if s.r == nil {
		return w.w.Write(p)
	}
	if _, err := io.WriteString(w.w, s.str(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// redactedError is an error whose message has the secrets scrubbed; it still
// wraps the original for errors.Is and errors.As.
type redactedError struct {
	msg string
	err error
}

// Error returns the scrubbed message.
func (e *redactedError) Error() string { return e.msg }

// Unwrap returns the original error.
func (e *redactedError) Unwrap() error { return e.err }

// redactError returns err with its message scrubbed, or err itself when it
// shows no secret.
func redactError(err error, secrets func() []string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if r := newScrubber(secrets).str(msg); r != msg {
		return &redactedError{msg: r, err: err}
	}
	return err
}
