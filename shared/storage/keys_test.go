package storage

import (
	"strings"
	"testing"
)

func TestValidateKey(t *testing.T) {
	good := []string{"a", "images/gemini/0b6f.png", "my file+1%2F&=?#.png", "ünï cødé/日本.png", strings.Repeat("k", MaxKeyBytes), "a/.hidden/b", "a..b"}
	for _, k := range good {
		if err := ValidateKey(k); err != nil {
			t.Errorf("ValidateKey(%q) = %v, want nil", k, err)
		}
	}
	bad := []string{"", "/leading", "trailing/", "a//b", "../x", "a/../b", "a/./b", ".", "..", "a\x00b", "a\nb", "a\\b", "\xff", strings.Repeat("k", MaxKeyBytes+1)}
	for _, k := range bad {
		err := ValidateKey(k)
		if Code(err) != InvalidArgument {
			t.Errorf("ValidateKey(%q) = %v, want InvalidArgument", k, err)
		}
		if err != nil && strings.ContainsRune(err.Error(), 0) {
			t.Errorf("error message for %q contains a NUL", k)
		}
	}
}

func TestErrorCodes(t *testing.T) {
	err := Errorf(Unavailable, "put %s: %w", "k", ErrTest)
	if !IsRetryable(err) || Code(err) != Unavailable || err.Unwrap() != ErrTest {
		t.Fatalf("Errorf: %v code %v", err, Code(err))
	}
	se := SettingsError([]FieldError{{"bucket", "is required"}, {"access_key_id", "is required"}})
	if got := se.Error(); got != "invalid settings (access_key_id: is required; bucket: is required)" {
		t.Fatalf("SettingsError message %q", got)
	}
	if Code(nil) != Unknown || IsNotFound(nil) {
		t.Fatal("nil has a code")
	}
}

var ErrTest = &Error{Code: Unknown, Message: "cause"}

func TestUnimplementedCode(t *testing.T) {
	if got := Unimplemented.String(); got != "unimplemented" {
		t.Errorf("Unimplemented.String() = %q, want %q", got, "unimplemented")
	}
	err := &Error{Code: Unimplemented, Message: "abort uploads: not supported"}
	if Code(err) != Unimplemented || IsRetryable(err) {
		t.Errorf("Code = %v, retryable %v; want Unimplemented, not retryable", Code(err), IsRetryable(err))
	}
}

func TestValidateAbortKeys(t *testing.T) {
	if err := ValidateAbortKeys(nil); err != nil {
		t.Errorf("no keys: %v, want nil", err)
	}
	full := make([]string, MaxAbortKeys)
	for i := range full {
		full[i] = strings.Repeat("k", MaxKeyBytes)
	}
	if err := ValidateAbortKeys(full); err != nil {
		t.Errorf("%d keys of %d bytes: %v, want nil", MaxAbortKeys, MaxKeyBytes, err)
	}
	over := append(full, "one-more")
	if err := ValidateAbortKeys(over); Code(err) != InvalidArgument || !strings.Contains(err.Error(), "1001 keys") {
		t.Errorf("%d keys: %v, want InvalidArgument naming the count", len(over), err)
	}
	err := ValidateAbortKeys([]string{"fine/a.png", "a//b", "../x"})
	if Code(err) != InvalidArgument || !strings.Contains(err.Error(), "invalid key a//b") {
		t.Errorf("a bad key among good ones: %v, want InvalidArgument naming it", err)
	}
}
