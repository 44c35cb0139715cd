package storage

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrorCode classifies a provider error so the host can decide what to do.
type ErrorCode int

// The error codes of the contract. Only Unavailable is worth retrying as is.
const (
	// Unknown is an error that carries no code; treat it as permanent.
	Unknown ErrorCode = iota
	// NotFound: the object does not exist (in a bucket that does; a
	// missing bucket is FailedPrecondition).
	NotFound
	// InvalidArgument: the request is malformed (a refused key, a range
	// starting past the object's end).
	InvalidArgument
	// InvalidSettings: the settings are wrong; Error.Fields says which.
	InvalidSettings
	// PermissionDenied: credentials were rejected or lack a permission.
	PermissionDenied
	// Unavailable: a transient failure (network, throttling, 5xx, plugin
	// restarting); retrying later may succeed.
	Unavailable
	// FailedPrecondition: the provider is not in a state to do this: not
	// configured, the configured bucket does not exist (the message names
	// it), a Location in another bucket, the wrong region. Fixing the
	// settings or the bucket, not retrying, helps.
	FailedPrecondition
	// Canceled: the caller cancelled or the deadline passed.
	Canceled
	// Unimplemented: the provider does not support this optional call.
	Unimplemented
)

var codeNames = map[ErrorCode]string{
	Unknown:            "unknown",
	NotFound:           "not found",
	InvalidArgument:    "invalid argument",
	InvalidSettings:    "invalid settings",
	PermissionDenied:   "permission denied",
	Unavailable:        "unavailable",
	FailedPrecondition: "failed precondition",
	Canceled:           "canceled",
	Unimplemented:      "unimplemented",
}

// String names the code in plain words.
func (c ErrorCode) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("ErrorCode(%d)", int(c))
}

// FieldError is a problem with one settings field.
type FieldError struct {
	Field   string
	Message string
}

// Error is the typed error every contract operation returns.
type Error struct {
	Code    ErrorCode
	Message string
	// Fields lists per-field problems when Code is InvalidSettings.
	Fields []FieldError
	// Err is the underlying cause, if any; it does not cross the plugin boundary.
	Err error
}

// Error returns the message, with the field problems appended.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Message)
	if e.Message == "" {
		b.WriteString(e.Code.String())
	}
	if len(e.Fields) > 0 {
		parts := make([]string, 0, len(e.Fields))
		for _, f := range e.Fields {
			parts = append(parts, f.Field+": "+f.Message)
		}
		sort.Strings(parts)
		b.WriteString(" (")
		b.WriteString(strings.Join(parts, "; "))
		b.WriteString(")")
	}
	return b.String()
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given code and a formatted message. A %w
// verb in format sets Err.
func Errorf(code ErrorCode, format string, args ...any) *Error {
	wrapped := fmt.Errorf(format, args...)
	return &Error{Code: code, Message: wrapped.Error(), Err: errors.Unwrap(wrapped)}
}

// SettingsError returns an InvalidSettings error listing the field problems.
func SettingsError(fields []FieldError) *Error {
	return &Error{Code: InvalidSettings, Message: "invalid settings", Fields: fields}
}

// Code returns the contract code of err: the code of the first *Error in its
// chain, Canceled for context errors, Unknown otherwise (and for nil).
func Code(err error) ErrorCode {
	if err == nil {
		return Unknown
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return Canceled
	}
	return Unknown
}

// IsNotFound reports whether err means the object does not exist.
func IsNotFound(err error) bool { return Code(err) == NotFound }

// IsRetryable reports whether retrying the same call later may succeed.
func IsRetryable(err error) bool { return Code(err) == Unavailable }

// FieldsOf returns the field problems carried by err, if any.
func FieldsOf(err error) []FieldError {
	var e *Error
	if errors.As(err, &e) {
		return e.Fields
	}
	return nil
}
