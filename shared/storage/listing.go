package storage

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Lister is implemented by providers that can list what is in their
// configured bucket under their key prefix: the stored objects, and the
// incomplete uploads (e.g. S3 multipart uploads) nobody completed or
// aborted. The host uses it to find objects no result refers to (orphans)
// and stale uploads that keep costing storage, and to clean them up.
//
// It is optional: a provider says it has it with Capabilities.Listing. A
// provider reached through a plugin that lacks it returns Unimplemented.
//
// Both calls list only the configured bucket, and only keys under the
// provider's key prefix: an object or upload outside the prefix is never
// listed. They page: a page holds at most the limit asked for (at most
// MaxListLimit), and Next is the cursor of the following page, "" after
// the last one. A cursor is opaque: give back exactly the Next a page
// returned. Objects and uploads created or removed while a listing pages
// may or may not be listed.
type Lister interface {
	// List returns one page of the objects under the key prefix whose key
	// (as given to Put, without the key prefix) starts with
	// ListOptions.Prefix, in ascending order of stored key. Each
	// ObjectInfo has Key (as Get would take it), StoredKey (the full key
	// in the bucket), Bucket, Size and ModTime; the other fields may be
	// empty. A bad ListOptions gives InvalidArgument (see
	// ValidateListOptions); a configured bucket that does not exist,
	// FailedPrecondition naming it.
	List(ctx context.Context, opts ListOptions) (ListPage, error)
	// ListUploads returns one page of the incomplete uploads under the
	// key prefix, starting at cursor ("" for the first page), at most
	// MaxListLimit of them.
	ListUploads(ctx context.Context, cursor string) (UploadPage, error)
}

// MaxListLimit is the most objects or uploads one page of a Lister holds.
// At three 1024-byte keys an entry, a full page stays far below gRPC's
// 4 MiB message limit.
const MaxListLimit = 500

// MaxCursorBytes is the longest listing cursor the contract carries.
const MaxCursorBytes = 4096

// ListOptions select a page of List.
type ListOptions struct {
	// Prefix keeps only keys (as given to Put, without the key prefix)
	// that start with it; "" lists everything under the key prefix. It
	// is not a key: it may end with "/" or in the middle of a segment.
	Prefix string
	// Cursor is the Next of the previous page; "" starts the listing.
	Cursor string
	// Limit is the most objects the page holds; 0 (or anything over
	// MaxListLimit) means MaxListLimit. A page may hold fewer even when
	// more follow; only Next == "" says the listing is done.
	Limit int
}

// ListPage is one page of List.
type ListPage struct {
	// Objects are the listed objects (see Lister.List for their fields).
	Objects []ObjectInfo
	// Next is the cursor of the next page; "" when this is the last.
	Next string
}

// UploadInfo describes an incomplete upload.
type UploadInfo struct {
	// Key is the upload's key as given to Put (without the key prefix),
	// the key UploadAborter.AbortUploads takes.
	Key string
	// StoredKey is the full key in the bucket.
	StoredKey string
	// Bucket is the identity of the bucket (ConfigureResult.Bucket); ""
	// when the provider does not say.
	Bucket string
	// Initiated is when the upload started.
	Initiated time.Time
}

// UploadPage is one page of ListUploads.
type UploadPage struct {
	// Uploads are the listed incomplete uploads.
	Uploads []UploadInfo
	// Next is the cursor of the next page; "" when this is the last.
	Next string
}

// ValidateListOptions checks opts and returns them with Limit set to what
// the page may hold (0 and values over MaxListLimit become MaxListLimit).
// A negative Limit, a Prefix that is not valid UTF-8, holds a control
// character or a backslash, starts with "/" or is longer than
// MaxKeyBytes, or a cursor longer than MaxCursorBytes give an
// InvalidArgument *Error.
func ValidateListOptions(opts ListOptions) (ListOptions, error) {
	switch {
	case opts.Limit < 0:
		return opts, &Error{Code: InvalidArgument, Message: fmt.Sprintf("list: negative limit %d; give 0 (the largest page) to %d", opts.Limit, MaxListLimit)}
	case len(opts.Prefix) > MaxKeyBytes:
		return opts, &Error{Code: InvalidArgument, Message: fmt.Sprintf("list: the prefix is %d bytes, over the %d-byte key limit", len(opts.Prefix), MaxKeyBytes)}
	case !utf8.ValidString(opts.Prefix) || strings.IndexFunc(opts.Prefix, isControl) >= 0 || strings.Contains(opts.Prefix, `\`):
		return opts, &Error{Code: InvalidArgument, Message: "list: the prefix " + quoteKey(opts.Prefix) + " is not valid UTF-8 or holds a control character or a backslash"}
	case strings.HasPrefix(opts.Prefix, "/"):
		return opts, &Error{Code: InvalidArgument, Message: "list: the prefix " + quoteKey(opts.Prefix) + " starts with /; keys never do"}
	}
	if err := ValidateCursor("list", opts.Cursor); err != nil {
		return opts, err
	}
	if opts.Limit == 0 || opts.Limit > MaxListLimit {
		opts.Limit = MaxListLimit
	}
	return opts, nil
}

// ValidateCursor refuses a cursor longer than MaxCursorBytes, or not
// valid UTF-8, with InvalidArgument; op names the call.
func ValidateCursor(op, cursor string) error {
	if len(cursor) > MaxCursorBytes || !utf8.ValidString(cursor) {
		return &Error{Code: InvalidArgument, Message: fmt.Sprintf("%s: the cursor is not one a page returned (over %d bytes or not UTF-8); start again with an empty cursor", op, MaxCursorBytes)}
	}
	return nil
}
