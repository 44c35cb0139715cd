package r2

import "github.com/magicads/r2storage/shared/storage"

// AbortUploads aborts the incomplete multipart uploads of keys under the
// key prefix (s3kit.Calls).
var _ storage.UploadAborter = (*Provider)(nil)
