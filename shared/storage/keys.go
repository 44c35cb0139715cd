package storage

import (
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// MaxKeyBytes is the longest key the contract accepts, in bytes. S3-compatible
// stores limit the full object key to 1024 bytes; a provider that adds a
// prefix checks the full key too.
const MaxKeyBytes = 1024

// ValidateKey reports whether key is an acceptable object key: non-empty
// valid UTF-8 of at most MaxKeyBytes bytes, slash-separated segments that are
// neither empty, "." nor "..", no leading or trailing slash, no backslash and
// no control characters (NUL included). It returns an InvalidArgument *Error
// naming the problem, or nil.
func ValidateKey(key string) error {
	if msg := keyProblem(key); msg != "" {
		return &Error{Code: InvalidArgument, Message: "invalid key " + quoteKey(key) + ": " + msg}
	}
	return nil
}

// ValidateAbortKeys checks the keys of an AbortUploads call: at most
// MaxAbortKeys of them, each accepted by ValidateKey. It returns an
// InvalidArgument *Error naming the first problem, or nil.
func ValidateAbortKeys(keys []string) error {
	if len(keys) > MaxAbortKeys {
		return &Error{Code: InvalidArgument, Message: fmt.Sprintf("abort uploads: %d keys in one call, over the limit of %d; split them into several calls", len(keys), MaxAbortKeys)}
	}
	for _, k := range keys {
		if err := ValidateKey(k); err != nil {
			return err
		}
	}
	return nil
}

// ValidateLocation reports whether loc can name a stored object: a
// non-empty Bucket of valid UTF-8 without control characters, and a Key
// accepted by ValidateKey. It returns an InvalidArgument *Error naming the
// problem, or nil.
func ValidateLocation(loc Location) error {
	switch {
	case loc.Bucket == "":
		return &Error{Code: InvalidArgument, Message: "invalid location of key " + quoteKey(loc.Key) + ": the bucket is empty; give the ObjectInfo.Bucket that Put reported"}
	case !utf8.ValidString(loc.Bucket) || strings.IndexFunc(loc.Bucket, isControl) >= 0:
		return &Error{Code: InvalidArgument, Message: "invalid location of key " + quoteKey(loc.Key) + ": the bucket " + quoteKey(loc.Bucket) + " is not valid UTF-8 or contains a control character"}
	}
	if msg := keyProblem(loc.Key); msg != "" {
		return &Error{Code: InvalidArgument, Message: "invalid location in bucket " + quoteKey(loc.Bucket) + ": key " + quoteKey(loc.Key) + ": " + msg}
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

func keyProblem(key string) string {
	switch {
	case key == "":
		return "empty"
	case len(key) > MaxKeyBytes:
		return "longer than 1024 bytes"
	case !utf8.ValidString(key):
		return "not valid UTF-8"
	case strings.HasPrefix(key, "/"):
		return "starts with /"
	case strings.HasSuffix(key, "/"):
		return "ends with /"
	case strings.Contains(key, `\`):
		return `contains a backslash`
	}
	if strings.IndexFunc(key, isControl) >= 0 {
		return "contains a control character"
	}
	for _, seg := range strings.Split(key, "/") {
		switch seg {
		case "":
			return "contains an empty segment (//)"
		case ".", "..":
			return "contains a " + seg + " segment"
		}
	}
	return ""
}

// quoteKey shortens and quotes a key for an error message.
func quoteKey(key string) string {
	const max = 80
	if len(key) > max {
		key = strings.ToValidUTF8(key[:max], "") + "…"
	}
	return strings.ToValidUTF8(strings.Map(func(r rune) rune {
		if isControl(r) {
			return '?'
		}
		return r
	}, key), "?")
}

// PublicURL is the public URL of the object at storedKey under a provider's
// public base URL (ConfigureResult.PublicBaseURL): each key segment is
// path-escaped ("+" too, which some S3 front ends read as a space). It is ""
// when base is "". Providers and the host build URLs with it, so a URL the
// host rebuilds after the admin moved the public base is the one the
// provider would give.
func PublicURL(base, storedKey string) string {
	if base == "" {
		return ""
	}
	segs := strings.Split(storedKey, "/")
	for i, seg := range segs {
		segs[i] = strings.ReplaceAll(url.PathEscape(seg), "+", "%2B")
	}
	return strings.TrimRight(base, "/") + "/" + strings.Join(segs, "/")
}
