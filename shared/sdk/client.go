package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/magicads/r2storage/shared/storage"
	"github.com/magicads/r2storage/shared/storagepb"
)

// rpcClient is the host side of the gRPC service: a storage.Provider whose
// calls run in the plugin process.
type rpcClient struct {
	c storagepb.StorageProviderClient

	mu       sync.Mutex
	features *features // what the plugin's SDK declared; nil until a Describe succeeds
}

// features are what a plugin's SDK declares in Describe. They are fixed for
// the life of the plugin process, so the first successful answer is kept.
type features struct {
	localFiles   bool // the SDK accepts local-file puts
	abortUploads bool // the provider implements storage.UploadAborter
	locations    bool // the provider implements storage.Locator
	listing      bool // the provider implements storage.Lister
}

var (
	_ storage.Provider      = (*rpcClient)(nil)
	_ storage.UploadAborter = (*rpcClient)(nil)
	_ storage.Locator       = (*rpcClient)(nil)
)

func (c *rpcClient) Describe(ctx context.Context) (storage.Info, error) {
	r, err := c.describe(ctx)
	if err != nil {
		return storage.Info{}, err
	}
	caps := r.GetCapabilities()
	return storage.Info{
		ID: r.GetId(), Name: r.GetName(), Version: r.GetVersion(), Contract: int(r.GetContractRevision()),
		Capabilities: storage.Capabilities{
			PublicURLs:    caps.GetPublicUrls(),
			RangeReads:    caps.GetRangeReads(),
			MaxObjectSize: caps.GetMaxObjectSize(),
			AbortUploads:  caps.GetAbortUploads(),
			Locations:     caps.GetLocations(),
			Listing:       caps.GetListing(),
		},
	}, nil
}

// describe calls Describe and keeps the features the answer declares.
func (c *rpcClient) describe(ctx context.Context) (*storagepb.DescribeResponse, error) {
	r, err := c.c.Describe(ctx, &storagepb.DescribeRequest{})
	if err != nil {
		return nil, fromStatus(ctx, "describe", err)
	}
	c.mu.Lock()
	if c.features == nil {
		caps := r.GetCapabilities()
		c.features = &features{localFiles: r.GetSdkLocalFilePuts(), abortUploads: caps.GetAbortUploads(), locations: caps.GetLocations(), listing: caps.GetListing()}
	}
	c.mu.Unlock()
	return r, nil
}

// pluginFeatures returns what the plugin declared, asking it with Describe
// only when no answer is kept yet (a failed Describe is not kept).
func (c *rpcClient) pluginFeatures(ctx context.Context) (features, error) {
	c.mu.Lock()
	f := c.features
	c.mu.Unlock()
	if f != nil {
		return *f, nil
	}
	if _, err := c.describe(ctx); err != nil {
		return features{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return *c.features, nil
}

// AbortUploads asks the plugin to abort the incomplete uploads of keys. It
// calls the plugin only when its Describe declared the call
// (Capabilities.AbortUploads); a plugin that did not, such as one built
// with an SDK that predates the call, gets no request and the answer is an
// Unimplemented *storage.Error. Keys are checked first (ValidateAbortKeys:
// at most storage.MaxAbortKeys, each a valid key).
func (c *rpcClient) AbortUploads(ctx context.Context, keys []string) (int, error) {
	if err := storage.ValidateAbortKeys(keys); err != nil {
		return 0, err
	}
	f, err := c.pluginFeatures(ctx)
	if err != nil {
		return 0, err
	}
	if !f.abortUploads {
		return 0, &storage.Error{Code: storage.Unimplemented, Message: "abort uploads: the plugin does not support this optional call (it does not declare Capabilities.AbortUploads; a newer plugin version may)"}
	}
	if len(keys) == 0 {
		return 0, nil
	}
	r, err := c.c.AbortUploads(ctx, &storagepb.AbortUploadsRequest{Keys: keys})
	if err != nil {
		return 0, fromStatus(ctx, "abort uploads", err)
	}
	return int(max(r.GetAborted(), 0)), nil
}

func encodeSettings(s storage.Settings) ([]byte, error) {
	if s == nil {
		s = storage.Settings{}
	}
	data, err := json.Marshal(s)
	if err != nil {
		return nil, &storage.Error{Code: storage.InvalidSettings, Message: "settings cannot be encoded as JSON: " + err.Error(), Err: err}
	}
	return data, nil
}

func (c *rpcClient) ValidateSettings(ctx context.Context, s storage.Settings) ([]storage.FieldError, error) {
	data, err := encodeSettings(s)
	if err != nil {
		return nil, err
	}
	r, err := c.c.ValidateSettings(ctx, &storagepb.SettingsRequest{SettingsJson: data})
	if err != nil {
		return nil, fromStatus(ctx, "validate settings", err)
	}
	return fieldsFromPB(r.GetFields()), nil
}

func (c *rpcClient) Configure(ctx context.Context, s storage.Settings) (storage.ConfigureResult, error) {
	data, err := encodeSettings(s)
	if err != nil {
		return storage.ConfigureResult{}, err
	}
	r, err := c.c.Configure(ctx, &storagepb.SettingsRequest{SettingsJson: data})
	if err != nil {
		return storage.ConfigureResult{}, fromStatus(ctx, "configure", err)
	}
	return storage.ConfigureResult{PublicBaseURL: r.GetPublicBaseUrl(), Bucket: r.GetBucket(), KeyPrefix: r.GetKeyPrefix()}, nil
}

func (c *rpcClient) TestConnection(ctx context.Context) (storage.TestResult, error) {
	r, err := c.c.TestConnection(ctx, &storagepb.TestConnectionRequest{})
	if err != nil {
		return storage.TestResult{}, fromStatus(ctx, "test connection", err)
	}
	return storage.TestResult{OK: r.GetOk(), Step: r.GetStep(), Message: r.GetMessage(), ProbeKey: r.GetProbeKey()}, nil
}

// Put streams r to the plugin in chunks of at most ChunkSize and commits with
// the size sent; the plugin checks opts.SHA256 when set. If r fails or ctx ends first, the
// stream is cancelled without a commit and the plugin writes nothing.
func (c *rpcClient) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) (storage.ObjectInfo, error) {
	if err := storage.ValidateKey(key); err != nil {
		return storage.ObjectInfo{}, err
	}
	size := opts.Size
	if size < 0 {
		size = -1
	}
	streamCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.c.Put(streamCtx)
	if err != nil {
		return storage.ObjectInfo{}, fromStatus(ctx, "put "+key, err)
	}
	// closeWithError fetches the plugin's own error when a send fails because
	// the plugin already ended the call.
	closeWithError := func(sendErr error) error {
		if errors.Is(sendErr, io.EOF) {
			_, err := stream.CloseAndRecv()
			return fromStatus(ctx, "put "+key, err)
		}
		return fromStatus(ctx, "put "+key, sendErr)
	}
	h := &storagepb.PutHeader{Key: key, ContentType: opts.ContentType, Size: size, Sha256: opts.SHA256}
	var fileSize int64
	if c.supportsLocalFiles(ctx) {
		h.Source, fileSize = localSource(r, size)
	}
	if h.Source != nil {
		h.Size = fileSize
	}
	if err := stream.Send(&storagepb.PutRequest{Msg: &storagepb.PutRequest_Header{Header: h}}); err != nil {
		return storage.ObjectInfo{}, closeWithError(err)
	}
	if h.Source != nil {
		return c.commitLocalFile(ctx, key, stream, r.(*os.File), h, closeWithError)
	}
	var sent int64
	// The buffer is reused: SendMsg encodes the message before it returns,
	// and no stats handler that reads messages lazily is installed.
	buf := make([]byte, ChunkSize)
	chunk := &storagepb.PutRequest_Chunk{}
	msg := &storagepb.PutRequest{Msg: chunk}
	for {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			sent += int64(n)
			chunk.Chunk = buf[:n]
			if err := stream.Send(msg); err != nil {
				return storage.ObjectInfo{}, closeWithError(err)
			}
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			cancel() // abandon the stream: no commit, nothing written
			if ctxErr := ctx.Err(); ctxErr != nil {
				return storage.ObjectInfo{}, &storage.Error{Code: storage.Canceled, Message: fmt.Sprintf("put %s: %v", key, ctxErr), Err: ctxErr}
			}
			return storage.ObjectInfo{}, &storage.Error{Code: storage.Code(rerr), Message: fmt.Sprintf("put %s: reading the content: %v", key, rerr), Err: rerr}
		}
		if err := ctx.Err(); err != nil {
			return storage.ObjectInfo{}, &storage.Error{Code: storage.Canceled, Message: fmt.Sprintf("put %s: %v", key, err), Err: err}
		}
	}
	if size >= 0 && sent != size {
		cancel()
		return storage.ObjectInfo{}, &storage.Error{Code: storage.InvalidArgument, Message: fmt.Sprintf("put %s: the content had %d bytes but %d were declared; nothing was written", key, sent, size)}
	}
	if err := ctx.Err(); err != nil {
		return storage.ObjectInfo{}, &storage.Error{Code: storage.Canceled, Message: fmt.Sprintf("put %s: %v", key, err), Err: err}
	}
	commit := &storagepb.PutRequest{Msg: &storagepb.PutRequest_Commit{Commit: &storagepb.PutCommit{Size: sent}}}
	if err := stream.Send(commit); err != nil {
		return storage.ObjectInfo{}, closeWithError(err)
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return storage.ObjectInfo{}, fromStatus(ctx, "put "+key, err)
	}
	return infoFromPB(resp.GetInfo()), nil
}

func (c *rpcClient) Get(ctx context.Context, key string, opts storage.GetOptions) (io.ReadCloser, storage.ObjectInfo, error) {
	if err := storage.ValidateKey(key); err != nil {
		return nil, storage.ObjectInfo{}, err
	}
	streamCtx, cancel := context.WithCancel(ctx)
	length := opts.Length
	if length < 0 {
		length = -1
	}
	stream, err := c.c.Get(streamCtx, &storagepb.GetRequest{Key: key, Offset: opts.Offset, Length: length})
	rc, info, err := openGet(ctx, "get "+key, stream, err, cancel)
	// A plugin built before the end-of-object rule (whose server does not
	// apply it) may refuse a read at the end; give the contract's answer.
	return storage.ReadAtEnd(ctx, opts, rc, info, err, func(ctx context.Context) (storage.ObjectInfo, error) { return c.Stat(ctx, key) })
}

// openGet reads the object info that starts a Get or GetAt stream and
// returns a reader of the chunks that follow. op names the call in errors;
// cancel ends the stream.
func openGet(ctx context.Context, op string, stream storagepb.StorageProvider_GetClient, err error, cancel context.CancelFunc) (io.ReadCloser, storage.ObjectInfo, error) {
	if err != nil {
		cancel()
		return nil, storage.ObjectInfo{}, fromStatus(ctx, op, err)
	}
	first, err := stream.Recv()
	if err != nil {
		cancel()
		return nil, storage.ObjectInfo{}, fromStatus(ctx, op, err)
	}
	info := first.GetInfo()
	if info == nil {
		cancel()
		return nil, storage.ObjectInfo{}, &storage.Error{Code: storage.Unknown, Message: op + ": the plugin sent data before the object info"}
	}
	return &getReader{ctx: ctx, op: op, stream: stream, cancel: cancel}, infoFromPB(info), nil
}

// getReader yields the chunks of a Get or GetAt stream.
type getReader struct {
	ctx     context.Context
	op      string
	stream  storagepb.StorageProvider_GetClient
	cancel  context.CancelFunc
	pending []byte
	err     error
}

func (g *getReader) Read(p []byte) (int, error) {
	for len(g.pending) == 0 {
		if g.err != nil {
			return 0, g.err
		}
		msg, err := g.stream.Recv()
		switch {
		case errors.Is(err, io.EOF):
			g.err = io.EOF
		case err != nil:
			g.err = fromStatus(g.ctx, g.op, err)
		default:
			g.pending = msg.GetChunk()
		}
	}
	n := copy(p, g.pending)
	g.pending = g.pending[n:]
	return n, nil
}

// Close ends the stream; reading stops and the plugin side is cancelled.
func (g *getReader) Close() error {
	g.cancel()
	if g.err == nil {
		g.err = errors.New("read after close")
	}
	return nil
}

func (c *rpcClient) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	if err := storage.ValidateKey(key); err != nil {
		return storage.ObjectInfo{}, err
	}
	r, err := c.c.Stat(ctx, &storagepb.StatRequest{Key: key})
	if err != nil {
		return storage.ObjectInfo{}, fromStatus(ctx, "stat "+key, err)
	}
	return infoFromPB(r.GetInfo()), nil
}

func (c *rpcClient) Delete(ctx context.Context, key string) error {
	if err := storage.ValidateKey(key); err != nil {
		return err
	}
	if _, err := c.c.Delete(ctx, &storagepb.DeleteRequest{Key: key}); err != nil {
		return fromStatus(ctx, "delete "+key, err)
	}
	return nil
}

// locationOp names a call on the object at loc in errors.
func locationOp(verb string, loc storage.Location) string {
	return fmt.Sprintf("%s %s in bucket %s", verb, loc.Key, loc.Bucket)
}

// checkLocations checks loc (storage.ValidateLocation), then that the
// plugin declared Capabilities.Locations; a plugin that did not, such as
// one built with an SDK that predates the calls, is never asked and the
// answer is an Unimplemented *storage.Error.
func (c *rpcClient) checkLocations(ctx context.Context, op string, loc storage.Location) error {
	if err := storage.ValidateLocation(loc); err != nil {
		return err
	}
	f, err := c.pluginFeatures(ctx)
	if err != nil {
		return err
	}
	if !f.locations {
		return &storage.Error{Code: storage.Unimplemented, Message: op + ": the plugin does not support this optional call (it does not declare Capabilities.Locations; a newer plugin version may)"}
	}
	return nil
}

// GetAt opens the object at loc for reading, as Get, without adding any
// key prefix (storage.Locator). The plugin is asked only when its Describe
// declared Capabilities.Locations; otherwise the answer is an
// Unimplemented *storage.Error.
func (c *rpcClient) GetAt(ctx context.Context, loc storage.Location, opts storage.GetOptions) (io.ReadCloser, storage.ObjectInfo, error) {
	op := locationOp("get", loc)
	if err := c.checkLocations(ctx, op, loc); err != nil {
		return nil, storage.ObjectInfo{}, err
	}
	streamCtx, cancel := context.WithCancel(ctx)
	length := opts.Length
	if length < 0 {
		length = -1
	}
	stream, err := c.c.GetAt(streamCtx, &storagepb.GetAtRequest{Location: locationToPB(loc), Offset: opts.Offset, Length: length})
	rc, info, err := openGet(ctx, op, stream, err, cancel)
	return storage.ReadAtEnd(ctx, opts, rc, info, err, func(ctx context.Context) (storage.ObjectInfo, error) { return c.StatAt(ctx, loc) })
}

// StatAt returns the attributes of the object at loc (storage.Locator);
// Unimplemented without asking a plugin that did not declare
// Capabilities.Locations.
func (c *rpcClient) StatAt(ctx context.Context, loc storage.Location) (storage.ObjectInfo, error) {
	op := locationOp("stat", loc)
	if err := c.checkLocations(ctx, op, loc); err != nil {
		return storage.ObjectInfo{}, err
	}
	r, err := c.c.StatAt(ctx, &storagepb.StatAtRequest{Location: locationToPB(loc)})
	if err != nil {
		return storage.ObjectInfo{}, fromStatus(ctx, op, err)
	}
	return infoFromPB(r.GetInfo()), nil
}

// DeleteAt removes the object at loc; a missing object is not an error
// (storage.Locator). Unimplemented without asking a plugin that did not
// declare Capabilities.Locations.
func (c *rpcClient) DeleteAt(ctx context.Context, loc storage.Location) error {
	op := locationOp("delete", loc)
	if err := c.checkLocations(ctx, op, loc); err != nil {
		return err
	}
	if _, err := c.c.DeleteAt(ctx, &storagepb.DeleteAtRequest{Location: locationToPB(loc)}); err != nil {
		return fromStatus(ctx, op, err)
	}
	return nil
}

func (c *rpcClient) Health(ctx context.Context) (storage.Health, error) {
	r, err := c.c.Health(ctx, &storagepb.HealthRequest{})
	if err != nil {
		return storage.Health{}, fromStatus(ctx, "health", err)
	}
	return storage.Health{OK: r.GetOk(), Configured: r.GetConfigured(), Message: r.GetMessage()}, nil
}

// commitLocalFile finishes a put whose content the plugin reads from the
// file itself, and leaves the file's offset after the range, as a read would.
func (c *rpcClient) commitLocalFile(ctx context.Context, key string, stream storagepb.StorageProvider_PutClient, f *os.File, h *storagepb.PutHeader, closeWithError func(error) error) (storage.ObjectInfo, error) {
	commit := &storagepb.PutRequest{Msg: &storagepb.PutRequest_Commit{Commit: &storagepb.PutCommit{Size: h.Size}}}
	if err := stream.Send(commit); err != nil {
		return storage.ObjectInfo{}, closeWithError(err)
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return storage.ObjectInfo{}, fromStatus(ctx, "put "+key, err)
	}
	if _, err := f.Seek(h.Source.GetOffset()+h.Size, io.SeekStart); err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("put %s: stored, but the file offset could not be advanced: %w", key, err)
	}
	return infoFromPB(resp.GetInfo()), nil
}
