package r2

import "github.com/magicads/r2storage/shared/storage"

// GetAt, StatAt and DeleteAt reach an object by its full bucket key
// (s3kit.Calls): a Location in another bucket (another account, endpoint or
// bucket name: Settings.BucketID) gives FailedPrecondition, naming both.
var _ storage.Locator = (*Provider)(nil)
