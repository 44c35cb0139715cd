package sdk

import (
	"context"
	"time"

	"github.com/magicads/r2storage/shared/storage"
	"github.com/magicads/r2storage/shared/storagepb"
)

// List serves the optional call: Unimplemented when the provider does not
// implement storage.Lister, InvalidArgument for bad options
// (storage.ValidateListOptions).
func (s *server) List(ctx context.Context, req *storagepb.ListRequest) (*storagepb.ListResponse, error) {
	l, ok := s.impl.(storage.Lister)
	if !ok {
		return nil, toStatus(&storage.Error{Code: storage.Unimplemented, Message: "list: the provider does not support this optional call"})
	}
	limit := req.GetLimit()
	if limit > storage.MaxListLimit {
		limit = storage.MaxListLimit
	}
	opts, err := storage.ValidateListOptions(storage.ListOptions{Prefix: req.GetPrefix(), Cursor: req.GetCursor(), Limit: int(limit)})
	if err != nil {
		return nil, toStatus(err)
	}
	page, err := l.List(ctx, opts)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &storagepb.ListResponse{NextCursor: page.Next, Objects: make([]*storagepb.ObjectInfo, 0, len(page.Objects))}
	for _, o := range page.Objects {
		// A listed object carries no URL: it keeps a full page far below
		// gRPC's message limit.
		o.URL = ""
		out.Objects = append(out.Objects, infoToPB(o))
	}
	return out, nil
}

// ListUploads serves the optional call: Unimplemented when the provider
// does not implement storage.Lister.
func (s *server) ListUploads(ctx context.Context, req *storagepb.ListUploadsRequest) (*storagepb.ListUploadsResponse, error) {
	l, ok := s.impl.(storage.Lister)
	if !ok {
		return nil, toStatus(&storage.Error{Code: storage.Unimplemented, Message: "list uploads: the provider does not support this optional call"})
	}
	page, err := l.ListUploads(ctx, req.GetCursor())
	if err != nil {
		return nil, toStatus(err)
	}
	out := &storagepb.ListUploadsResponse{NextCursor: page.Next, Uploads: make([]*storagepb.UploadInfo, 0, len(page.Uploads))}
	for _, u := range page.Uploads {
		pb := &storagepb.UploadInfo{Key: u.Key, StoredKey: u.StoredKey, Bucket: u.Bucket}
		if !u.Initiated.IsZero() {
			pb.InitiatedUnixNano = u.Initiated.UnixNano()
		}
		out.Uploads = append(out.Uploads, pb)
	}
	return out, nil
}

// checkListing returns an Unimplemented *storage.Error when the plugin did
// not declare Capabilities.Listing; such a plugin, one built with an SDK
// that predates the calls for one, is never asked.
func (c *rpcClient) checkListing(ctx context.Context, op string) error {
	f, err := c.pluginFeatures(ctx)
	if err != nil {
		return err
	}
	if !f.listing {
		return &storage.Error{Code: storage.Unimplemented, Message: op + ": the plugin does not support this optional call (it does not declare Capabilities.Listing; a newer plugin version may)"}
	}
	return nil
}

// List asks the plugin for one page of its objects (storage.Lister). The
// options are checked first (storage.ValidateListOptions); the plugin is
// asked only when its Describe declared Capabilities.Listing, otherwise
// the answer is an Unimplemented *storage.Error.
func (c *rpcClient) List(ctx context.Context, opts storage.ListOptions) (storage.ListPage, error) {
	opts, err := storage.ValidateListOptions(opts)
	if err != nil {
		return storage.ListPage{}, err
	}
	if err := c.checkListing(ctx, "list"); err != nil {
		return storage.ListPage{}, err
	}
	r, err := c.c.List(ctx, &storagepb.ListRequest{Prefix: opts.Prefix, Cursor: opts.Cursor, Limit: int64(opts.Limit)})
	if err != nil {
		return storage.ListPage{}, fromStatus(ctx, "list", err)
	}
	page := storage.ListPage{Next: r.GetNextCursor(), Objects: make([]storage.ObjectInfo, 0, len(r.GetObjects()))}
	for _, o := range r.GetObjects() {
		page.Objects = append(page.Objects, infoFromPB(o))
	}
	return page, nil
}

// ListUploads asks the plugin for one page of its incomplete uploads
// (storage.Lister); Unimplemented without asking a plugin that did not
// declare Capabilities.Listing.
func (c *rpcClient) ListUploads(ctx context.Context, cursor string) (storage.UploadPage, error) {
	if err := storage.ValidateCursor("list uploads", cursor); err != nil {
		return storage.UploadPage{}, err
	}
	if err := c.checkListing(ctx, "list uploads"); err != nil {
		return storage.UploadPage{}, err
	}
	r, err := c.c.ListUploads(ctx, &storagepb.ListUploadsRequest{Cursor: cursor})
	if err != nil {
		return storage.UploadPage{}, fromStatus(ctx, "list uploads", err)
	}
	page := storage.UploadPage{Next: r.GetNextCursor(), Uploads: make([]storage.UploadInfo, 0, len(r.GetUploads()))}
	for _, u := range r.GetUploads() {
		ui := storage.UploadInfo{Key: u.GetKey(), StoredKey: u.GetStoredKey(), Bucket: u.GetBucket()}
		if ns := u.GetInitiatedUnixNano(); ns != 0 {
			ui.Initiated = time.Unix(0, ns).UTC()
		}
		page.Uploads = append(page.Uploads, ui)
	}
	return page, nil
}

// lister returns the provider's storage.Lister, or an Unimplemented error
// when it has none.
func (c *Client) lister(verb string) (storage.Lister, error) {
	l, ok := c.Provider.(storage.Lister)
	if !ok {
		return nil, &storage.Error{Code: storage.Unimplemented, Message: verb + ": the plugin does not support this optional call"}
	}
	return l, nil
}

// List asks the plugin for one page of its objects (storage.Lister);
// Unimplemented when it did not declare Capabilities.Listing.
func (c *Client) List(ctx context.Context, opts storage.ListOptions) (storage.ListPage, error) {
	l, err := c.lister("list")
	if err != nil {
		return storage.ListPage{}, err
	}
	return l.List(ctx, opts)
}

// ListUploads asks the plugin for one page of its incomplete uploads
// (storage.Lister); Unimplemented when it did not declare
// Capabilities.Listing.
func (c *Client) ListUploads(ctx context.Context, cursor string) (storage.UploadPage, error) {
	l, err := c.lister("list uploads")
	if err != nil {
		return storage.UploadPage{}, err
	}
	return l.ListUploads(ctx, cursor)
}

var (
	_ storage.Lister = (*rpcClient)(nil)
	_ storage.Lister = (*Client)(nil)
)
