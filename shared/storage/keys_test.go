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

func TestValidateLocation(t *testing.T) {
	for _, loc := range []Location{
		{Bucket: "r2:acc/media", Key: "magicads/images/a.png"},
		{Bucket: "127.0.0.1:9000/b", Key: strings.Repeat("k", MaxKeyBytes)},
		{Bucket: "memory:ünï", Key: "a"},
	} {
		if err := ValidateLocation(loc); err != nil {
			t.Errorf("ValidateLocation(%+v) = %v, want nil", loc, err)
		}
	}
	for _, c := range []struct {
		loc  Location
		want string
	}{
		{Location{Bucket: "", Key: "a.png"}, "bucket is empty"},
		{Location{Bucket: "b\x00", Key: "a.png"}, "control character"},
		{Location{Bucket: "b\n", Key: "a.png"}, "control character"},
		{Location{Bucket: "\xff", Key: "a.png"}, "not valid UTF-8"},
		{Location{Bucket: "b", Key: ""}, "empty"},
		{Location{Bucket: "b", Key: "a/../b"}, ".. segment"},
		{Location{Bucket: "b", Key: "/a"}, "starts with /"},
		{Location{Bucket: "b", Key: strings.Repeat("k", MaxKeyBytes+1)}, "longer than 1024 bytes"},
	} {
		err := ValidateLocation(c.loc)
		if Code(err) != InvalidArgument || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ValidateLocation(%q) = %v, want InvalidArgument mentioning %q", c.loc, err, c.want)
		}
		if err != nil && strings.ContainsAny(err.Error(), "\x00\n") {
			t.Errorf("error message for %q contains a control character", c.loc)
		}
	}
}

func TestPublicURL(t *testing.T) {
	for _, c := range []struct{ base, key, want string }{
		{"", "a/b.png", ""},
		{"https://pub.r2.dev", "media/a/b.png", "https://pub.r2.dev/media/a/b.png"},
		{"https://cdn.example.com/x/", "a b+c&d=%2F?#.png", "https://cdn.example.com/x/a%20b%2Bc&d=%252F%3F%23.png"},
		{"https://cdn.example.com", "ünï/日本.png", "https://cdn.example.com/%C3%BCn%C3%AF/%E6%97%A5%E6%9C%AC.png"},
	} {
		if got := PublicURL(c.base, c.key); got != c.want {
			t.Errorf("PublicURL(%q, %q) = %q, want %q", c.base, c.key, got, c.want)
		}
	}
}
