package sdk

import (
	"time"

	"github.com/magicads/r2storage/shared/storage"
	"github.com/magicads/r2storage/shared/storagepb"
)

func infoToPB(i storage.ObjectInfo) *storagepb.ObjectInfo {
	pb := &storagepb.ObjectInfo{Key: i.Key, Size: i.Size, ContentType: i.ContentType, Etag: i.ETag, Url: i.URL, StoredKey: i.StoredKey, Bucket: i.Bucket}
	if !i.ModTime.IsZero() {
		pb.ModTimeUnixNano = i.ModTime.UnixNano()
	}
	return pb
}

func infoFromPB(pb *storagepb.ObjectInfo) storage.ObjectInfo {
	i := storage.ObjectInfo{
		Key: pb.GetKey(), Size: pb.GetSize(), ContentType: pb.GetContentType(), ETag: pb.GetEtag(), URL: pb.GetUrl(),
		StoredKey: pb.GetStoredKey(), Bucket: pb.GetBucket(),
	}
	if ns := pb.GetModTimeUnixNano(); ns != 0 {
		i.ModTime = time.Unix(0, ns).UTC()
	}
	return i
}

func locationToPB(l storage.Location) *storagepb.Location {
	return &storagepb.Location{Bucket: l.Bucket, Key: l.Key}
}

func locationFromPB(pb *storagepb.Location) storage.Location {
	return storage.Location{Bucket: pb.GetBucket(), Key: pb.GetKey()}
}

func fieldsToPB(fs []storage.FieldError) []*storagepb.FieldError {
	out := make([]*storagepb.FieldError, 0, len(fs))
	for _, f := range fs {
		out = append(out, &storagepb.FieldError{Field: f.Field, Message: f.Message})
	}
	return out
}

func fieldsFromPB(fs []*storagepb.FieldError) []storage.FieldError {
	out := make([]storage.FieldError, 0, len(fs))
	for _, f := range fs {
		out = append(out, storage.FieldError{Field: f.GetField(), Message: f.GetMessage()})
	}
	return out
}
