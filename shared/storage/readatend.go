package storage

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// ReadAtEnd applies the end-of-object rules of GetOptions to the answer of
// a Get or GetAt, so every provider gives the same answers there:
//
//   - a read refused with InvalidArgument (as S3 refuses a range that
//     starts at the object's end, HTTP 416) that started exactly at the
//     object's size becomes the empty read the contract specifies, with
//     the object's ObjectInfo (also at 0 for an empty object);
//   - a read of Length 0 that succeeded is refused with InvalidArgument
//     when it started past the object's size (a store that answers any
//     zero-length read without looking would accept it).
//
// It stats the object only in those two cases. Any other answer is
// returned as it came. Guard applies it to every provider, and the sdk's
// plugin client to plugins built before these rules were settled, so no
// provider author writes it.
func ReadAtEnd(ctx context.Context, opts GetOptions, rc io.ReadCloser, info ObjectInfo, err error, stat func(context.Context) (ObjectInfo, error)) (io.ReadCloser, ObjectInfo, error) {
	switch {
	case opts.Offset < 0:
		return rc, info, err
	case err != nil && Code(err) == InvalidArgument:
		st, serr := stat(ctx)
		if serr != nil || st.Size != opts.Offset {
			return rc, info, err
		}
		return io.NopCloser(strings.NewReader("")), st, nil
	case err == nil && opts.Length == 0 && opts.Offset > info.Size:
		// info.Size is the full size when the provider reported it; a
		// provider that reported none (0) is asked.
		st, serr := stat(ctx)
		if serr == nil && opts.Offset <= st.Size {
			return rc, st, nil
		}
		if rc != nil {
			rc.Close()
		}
		if serr != nil {
			return nil, ObjectInfo{}, serr
		}
		return nil, ObjectInfo{}, &Error{Code: InvalidArgument, Message: fmt.Sprintf("get %s: offset %d is past the end of the object (%d bytes)", quoteKey(st.Key), opts.Offset, st.Size)}
	}
	return rc, info, err
}
