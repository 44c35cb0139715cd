package sdk

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/magicads/r2storage/shared/storage"
	"github.com/magicads/r2storage/shared/storagepb"
)

var grpcCodes = map[storage.ErrorCode]codes.Code{
	storage.Unknown:            codes.Unknown,
	storage.NotFound:           codes.NotFound,
	storage.InvalidArgument:    codes.InvalidArgument,
	storage.InvalidSettings:    codes.InvalidArgument,
	storage.PermissionDenied:   codes.PermissionDenied,
	storage.Unavailable:        codes.Unavailable,
	storage.FailedPrecondition: codes.FailedPrecondition,
	storage.Canceled:           codes.Canceled,
	storage.Unimplemented:      codes.Unimplemented,
}

// toStatus turns a provider error into a gRPC status error carrying the
// contract code and field errors in an ErrorDetail.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	code := storage.Code(err)
	msg := err.Error()
	var e *storage.Error
	if errors.As(err, &e) && len(e.Fields) > 0 {
		msg = e.Message // the fields travel in the detail; don't repeat them
	}
	gc, ok := grpcCodes[code]
	if !ok {
		gc = codes.Unknown // never codes.OK, which would turn the error into a success
	}
	st := status.New(gc, msg)
	detail := &storagepb.ErrorDetail{Code: storagepb.ErrorCode(code), Fields: fieldsToPB(storage.FieldsOf(err))}
	if withDetail, derr := st.WithDetails(detail); derr == nil {
		st = withDetail
	}
	return st.Err()
}

// fromStatus turns an error from a gRPC call into a *storage.Error. Errors
// without an ErrorDetail (the plugin died, the connection broke) are
// classified from the gRPC code: a lost plugin is Unavailable.
func fromStatus(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return &storage.Error{Code: storage.Canceled, Message: op + ": " + ctxErr.Error(), Err: ctxErr}
	}
	st, ok := status.FromError(err)
	if !ok {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return &storage.Error{Code: storage.Canceled, Message: op + ": " + err.Error(), Err: err}
		}
		return &storage.Error{Code: storage.Unavailable, Message: op + ": plugin call failed: " + err.Error(), Err: err}
	}
	for _, d := range st.Details() {
		if detail, ok := d.(*storagepb.ErrorDetail); ok {
			return &storage.Error{Code: storage.ErrorCode(detail.GetCode()), Message: st.Message(), Fields: fieldsFromPB(detail.GetFields())}
		}
	}
	code := storage.Unknown
	switch st.Code() {
	case codes.NotFound:
		code = storage.NotFound
	case codes.InvalidArgument, codes.OutOfRange:
		code = storage.InvalidArgument
	case codes.PermissionDenied, codes.Unauthenticated:
		code = storage.PermissionDenied
	case codes.Unavailable, codes.ResourceExhausted, codes.Aborted:
		code = storage.Unavailable
	case codes.FailedPrecondition:
		code = storage.FailedPrecondition
	case codes.Canceled, codes.DeadlineExceeded:
		code = storage.Canceled
	case codes.Unimplemented:
		// A plugin built before the call existed answers this.
		code = storage.Unimplemented
	}
	return &storage.Error{Code: code, Message: op + ": " + st.Message(), Err: err}
}
