package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/magicads/r2storage/shared/storage"
	"github.com/magicads/r2storage/shared/storagepb"
)

// server adapts a storage.Provider to the gRPC service on the plugin side.
type server struct {
	storagepb.UnimplementedStorageProviderServer
	// impl is the provider behind storage.Guard, which checks keys,
	// locations, declared sizes and sha256 digests for every call.
	impl Provider
	// raw is the provider itself; only local-file puts call it, with a
	// seekable reader of exactly the declared size whose sha256 openSource
	// checked before the provider sees a byte.
	raw Provider
}

// newServer serves p through storage.Guard, so the provider behaves over
// the plugin as the conformance suite checks it in-process.
func newServer(p Provider) *server {
	return &server{impl: storage.Guard(p), raw: p}
}

// Describe answers with the provider's Info. Capabilities.AbortUploads,
// Capabilities.Locations and Capabilities.Listing are set by the SDK, not
// the provider: each is true exactly when the provider implements
// storage.UploadAborter, storage.Locator or storage.Lister, since that is
// when the calls are served.
func (s *server) Describe(ctx context.Context, _ *storagepb.DescribeRequest) (*storagepb.DescribeResponse, error) {
	info, err := s.impl.Describe(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	_, aborts := s.impl.(storage.UploadAborter)
	_, locates := s.impl.(storage.Locator)
	_, lists := s.impl.(storage.Lister)
	return &storagepb.DescribeResponse{
		Id: info.ID, Name: info.Name, Version: info.Version, SdkLocalFilePuts: true,
		ContractRevision: storage.ContractRevision,
		Capabilities: &storagepb.Capabilities{
			PublicUrls:    info.Capabilities.PublicURLs,
			RangeReads:    info.Capabilities.RangeReads,
			MaxObjectSize: info.Capabilities.MaxObjectSize,
			AbortUploads:  aborts,
			Locations:     locates,
			Listing:       lists,
		},
	}, nil
}

// AbortUploads serves the optional call: Unimplemented when the provider
// does not implement storage.UploadAborter, InvalidArgument for a bad key
// or more than storage.MaxAbortKeys keys.
func (s *server) AbortUploads(ctx context.Context, req *storagepb.AbortUploadsRequest) (*storagepb.AbortUploadsResponse, error) {
	a, ok := s.impl.(storage.UploadAborter)
	if !ok {
		return nil, toStatus(&storage.Error{Code: storage.Unimplemented, Message: "abort uploads: the provider does not support this optional call"})
	}
	if err := storage.ValidateAbortKeys(req.GetKeys()); err != nil {
		return nil, toStatus(err)
	}
	n, err := a.AbortUploads(ctx, req.GetKeys())
	if err != nil {
		return nil, toStatus(err)
	}
	return &storagepb.AbortUploadsResponse{Aborted: int64(n)}, nil
}

func decodeSettings(data []byte) (storage.Settings, error) {
	var s storage.Settings
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&s); err != nil || s == nil {
		return nil, &storage.Error{Code: storage.InvalidSettings, Message: "settings are not a JSON object"}
	}
	return s, nil
}

func (s *server) ValidateSettings(ctx context.Context, req *storagepb.SettingsRequest) (*storagepb.ValidateSettingsResponse, error) {
	settings, err := decodeSettings(req.GetSettingsJson())
	if err != nil {
		return nil, toStatus(err)
	}
	fields, err := s.impl.ValidateSettings(ctx, settings)
	if err != nil {
		return nil, toStatus(err)
	}
	return &storagepb.ValidateSettingsResponse{Fields: fieldsToPB(fields)}, nil
}

func (s *server) Configure(ctx context.Context, req *storagepb.SettingsRequest) (*storagepb.ConfigureResponse, error) {
	settings, err := decodeSettings(req.GetSettingsJson())
	if err != nil {
		return nil, toStatus(err)
	}
	res, err := s.impl.Configure(ctx, settings)
	if err != nil {
		return nil, toStatus(err)
	}
	return &storagepb.ConfigureResponse{PublicBaseUrl: res.PublicBaseURL, Bucket: res.Bucket, KeyPrefix: res.KeyPrefix}, nil
}

func (s *server) TestConnection(ctx context.Context, _ *storagepb.TestConnectionRequest) (*storagepb.TestConnectionResponse, error) {
	res, err := s.impl.TestConnection(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &storagepb.TestConnectionResponse{Ok: res.OK, Step: res.Step, Message: res.Message, ProbeKey: res.ProbeKey}, nil
}

func (s *server) Put(stream storagepb.StorageProvider_PutServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return toStatus(fmt.Errorf("put: reading header: %w", err))
	}
	h := first.GetHeader()
	if h == nil {
		return toStatus(&storage.Error{Code: storage.InvalidArgument, Message: "put: the first message must be a header"})
	}
	if err := storage.ValidateKey(h.GetKey()); err != nil {
		return toStatus(err)
	}
	if src := h.GetSource(); src != nil {
		return s.putLocalFile(stream, h)
	}
	body := &putBody{stream: stream}
	info, err := s.impl.Put(ctx, h.GetKey(), body, storage.PutOptions{ContentType: h.GetContentType(), Size: h.GetSize(), SHA256: sha256Option(h.GetSha256())})
	if err == nil && !body.committed {
		// The provider returned before reading to the end: never report
		// success for bytes it did not take.
		err = &storage.Error{Code: storage.Unknown, Message: "put: provider returned before reading the whole object"}
	}
	if err != nil {
		if body.err != nil && storage.Code(err) == storage.Unknown {
			err = body.err
		}
		return toStatus(err)
	}
	return stream.SendAndClose(&storagepb.PutResponse{Info: infoToPB(info)})
}

// putLocalFile serves a put whose content is a local file range: it waits
// for the commit, then lets the provider read the file directly.
func (s *server) putLocalFile(stream storagepb.StorageProvider_PutServer, h *storagepb.PutHeader) error {
	ctx := stream.Context()
	msg, err := stream.Recv()
	if err != nil {
		return toStatus(&storage.Error{Code: storage.Canceled, Message: "put: the stream ended without a commit; nothing was written"})
	}
	if c := msg.GetCommit(); c == nil || c.GetSize() != h.GetSize() {
		return toStatus(&storage.Error{Code: storage.InvalidArgument, Message: "put: a local-file put takes only a commit of the declared size"})
	}
	body, closeFile, err := openSource(h.GetSource(), h.GetSize(), h.GetSha256())
	if err != nil {
		return toStatus(err)
	}
	defer closeFile()
	info, err := s.raw.Put(ctx, h.GetKey(), body, storage.PutOptions{ContentType: h.GetContentType(), Size: h.GetSize(), SHA256: sha256Option(h.GetSha256())})
	if err == nil && body.pos != h.GetSize() {
		err = &storage.Error{Code: storage.Unknown, Message: "put: provider returned before reading the whole object"}
	}
	if err != nil {
		return toStatus(err)
	}
	return stream.SendAndClose(&storagepb.PutResponse{Info: infoToPB(info)})
}

// sha256Option is the PutOptions.SHA256 of a header's digest: nil when the
// header gave none.
func sha256Option(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// putBody is the io.Reader a provider's Put reads (through storage.Guard,
// which checks the declared size and sha256): it yields the chunks of the
// stream and returns io.EOF only once the commit arrived and matched what
// was received, so a provider never completes an object the host abandoned.
type putBody struct {
	stream    storagepb.StorageProvider_PutServer
	received  int64
	pending   []byte
	committed bool
	err       error
}

func (b *putBody) Read(p []byte) (int, error) {
	for len(b.pending) == 0 {
		if b.committed {
			return 0, io.EOF
		}
		if b.err != nil {
			return 0, b.err
		}
		b.err = b.next()
	}
	n := copy(p, b.pending)
	b.pending = b.pending[n:]
	return n, nil
}

// next receives one message and returns the error that ends the body, if any.
func (b *putBody) next() error {
	msg, err := b.stream.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return &storage.Error{Code: storage.Canceled, Message: "put: the stream ended without a commit; nothing was written"}
		}
		if ctxErr := b.stream.Context().Err(); ctxErr != nil {
			return &storage.Error{Code: storage.Canceled, Message: "put: cancelled by the host; nothing was written", Err: ctxErr}
		}
		return &storage.Error{Code: storage.Unavailable, Message: "put: receiving: " + err.Error(), Err: err}
	}
	switch m := msg.GetMsg().(type) {
	case *storagepb.PutRequest_Chunk:
		b.pending = m.Chunk
		b.received += int64(len(m.Chunk))
		return nil
	case *storagepb.PutRequest_Commit:
		c := m.Commit
		if c.GetSize() != b.received {
			return &storage.Error{Code: storage.InvalidArgument, Message: fmt.Sprintf("put: received %d bytes, but %d were committed; nothing was written", b.received, c.GetSize())}
		}
		b.committed = true
		return nil
	default:
		return &storage.Error{Code: storage.InvalidArgument, Message: "put: unexpected message after the header"}
	}
}

func (s *server) Get(req *storagepb.GetRequest, stream storagepb.StorageProvider_GetServer) error {
	ctx := stream.Context()
	if err := storage.ValidateKey(req.GetKey()); err != nil {
		return toStatus(err)
	}
	rc, info, err := s.impl.Get(ctx, req.GetKey(), storage.GetOptions{Offset: req.GetOffset(), Length: req.GetLength()})
	if err != nil {
		return toStatus(err)
	}
	return sendObject(stream, rc, info, "get "+req.GetKey())
}

// sendObject streams the answer to a Get or GetAt: info first, then the
// bytes of rc in chunks of at most ChunkSize. It closes rc.
func sendObject(stream storagepb.StorageProvider_GetServer, rc io.ReadCloser, info storage.ObjectInfo, op string) error {
	defer rc.Close()
	if err := stream.Send(&storagepb.GetResponse{Msg: &storagepb.GetResponse_Info{Info: infoToPB(info)}}); err != nil {
		return err
	}
	buf := make([]byte, ChunkSize)
	for {
		n, rerr := io.ReadFull(rc, buf)
		if n > 0 {
			if err := stream.Send(&storagepb.GetResponse{Msg: &storagepb.GetResponse_Chunk{Chunk: buf[:n]}}); err != nil {
				return err
			}
		}
		switch {
		case rerr == nil:
		case errors.Is(rerr, io.EOF), errors.Is(rerr, io.ErrUnexpectedEOF):
			return nil
		default:
			return toStatus(fmt.Errorf("%s: reading object: %w", op, rerr))
		}
	}
}

func (s *server) Stat(ctx context.Context, req *storagepb.StatRequest) (*storagepb.StatResponse, error) {
	if err := storage.ValidateKey(req.GetKey()); err != nil {
		return nil, toStatus(err)
	}
	info, err := s.impl.Stat(ctx, req.GetKey())
	if err != nil {
		return nil, toStatus(err)
	}
	return &storagepb.StatResponse{Info: infoToPB(info)}, nil
}

func (s *server) Delete(ctx context.Context, req *storagepb.DeleteRequest) (*storagepb.DeleteResponse, error) {
	if err := storage.ValidateKey(req.GetKey()); err != nil {
		return nil, toStatus(err)
	}
	if err := s.impl.Delete(ctx, req.GetKey()); err != nil {
		return nil, toStatus(err)
	}
	return &storagepb.DeleteResponse{}, nil
}

// locator returns the provider's storage.Locator and the Location of
// pbLoc once it is checked (storage.ValidateLocation): Unimplemented when
// the provider does not implement storage.Locator, InvalidArgument for a
// bad Location.
func (s *server) locator(verb string, pbLoc *storagepb.Location) (storage.Locator, storage.Location, error) {
	loc := locationFromPB(pbLoc)
	l, ok := s.impl.(storage.Locator)
	if !ok {
		return nil, loc, &storage.Error{Code: storage.Unimplemented, Message: verb + " at a location: the provider does not support this optional call"}
	}
	if err := storage.ValidateLocation(loc); err != nil {
		return nil, loc, err
	}
	return l, loc, nil
}

// GetAt serves the optional call: the object at the location, streamed
// as Get streams it.
func (s *server) GetAt(req *storagepb.GetAtRequest, stream storagepb.StorageProvider_GetAtServer) error {
	l, loc, err := s.locator("get", req.GetLocation())
	if err != nil {
		return toStatus(err)
	}
	rc, info, err := l.GetAt(stream.Context(), loc, storage.GetOptions{Offset: req.GetOffset(), Length: req.GetLength()})
	if err != nil {
		return toStatus(err)
	}
	return sendObject(stream, rc, info, locationOp("get", loc))
}

// StatAt serves the optional call: the attributes of the object at the location.
func (s *server) StatAt(ctx context.Context, req *storagepb.StatAtRequest) (*storagepb.StatResponse, error) {
	l, loc, err := s.locator("stat", req.GetLocation())
	if err != nil {
		return nil, toStatus(err)
	}
	info, err := l.StatAt(ctx, loc)
	if err != nil {
		return nil, toStatus(err)
	}
	return &storagepb.StatResponse{Info: infoToPB(info)}, nil
}

// DeleteAt serves the optional call: it removes the object at the location.
func (s *server) DeleteAt(ctx context.Context, req *storagepb.DeleteAtRequest) (*storagepb.DeleteResponse, error) {
	l, loc, err := s.locator("delete", req.GetLocation())
	if err != nil {
		return nil, toStatus(err)
	}
	if err := l.DeleteAt(ctx, loc); err != nil {
		return nil, toStatus(err)
	}
	return &storagepb.DeleteResponse{}, nil
}

func (s *server) Health(ctx context.Context, _ *storagepb.HealthRequest) (*storagepb.HealthResponse, error) {
	h, err := s.impl.Health(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &storagepb.HealthResponse{Ok: h.OK, Configured: h.Configured, Message: h.Message}, nil
}
