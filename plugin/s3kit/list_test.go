package s3kit

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/magicads/r2storage/shared/storage"
)

// TestListing: against versitygw, List pages through the objects under the
// key prefix only (Limit 2), honours a Prefix, and ListUploads lists the
// incomplete multipart uploads under the key prefix with their initiated
// time, never one outside it.
func TestListing(t *testing.T) {
	b := versityBucket(t, "media")
	ctx := context.Background()
	o := &Objects{Bucket: b, KeyPrefix: "tenant", BucketID: "test:media", ProviderID: "test", PublicURL: "https://cdn.example.com"}
	for _, k := range []string{"outside.png", "tenantx/a.png"} {
		if _, err := b.Put(ctx, k, k, Upload{Body: strings.NewReader("x"), Size: 1, ContentType: "image/png"}); err != nil {
			t.Fatal(err)
		}
	}
	var want []string
	for i := range 5 {
		k := fmt.Sprintf("img/%d.png", i)
		if _, err := o.Put(ctx, k, strings.NewReader(strings.Repeat("b", i)), storage.PutOptions{Size: int64(i)}, 0); err != nil {
			t.Fatal(err)
		}
		want = append(want, k)
	}
	calls := Calls{Current: func() (*Objects, error) { return o, nil }}
	var got []string
	opts := storage.ListOptions{Limit: 2}
	for pages := 1; ; pages++ {
		if pages > 5 {
			t.Fatal("the listing does not end")
		}
		page, err := calls.List(ctx, opts)
		if err != nil {
			t.Fatalf("list page %d: %v", pages, err)
		}
		if len(page.Objects) > 2 {
			t.Fatalf("page %d holds %d objects, over the limit of 2", pages, len(page.Objects))
		}
		for _, obj := range page.Objects {
			if obj.StoredKey != "tenant/"+obj.Key || obj.Bucket != "test:media" || obj.ModTime.IsZero() || obj.Size != int64(obj.Key[4]-'0') || obj.URL != "" {
				t.Errorf("listed %+v", obj)
			}
			got = append(got, obj.Key)
		}
		if page.Next == "" {
			break
		}
		opts.Cursor = page.Next
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("listed %q, want %q", got, want)
	}
	page, err := calls.List(ctx, storage.ListOptions{Prefix: "img/4"})
	if err != nil || len(page.Objects) != 1 || page.Objects[0].Key != "img/4.png" {
		t.Fatalf("list of prefix img/4: %+v, %v", page, err)
	}

	before := time.Now().Add(-time.Minute)
	for _, k := range []string{"tenant/stale.png", "outside-upload.png"} {
		if _, err := b.Client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("media"), Key: aws.String(k)}); err != nil {
			t.Fatal(err)
		}
	}
	up, err := calls.ListUploads(ctx, "")
	if err != nil || len(up.Uploads) != 1 || up.Next != "" {
		t.Fatalf("list uploads = %+v, %v; want the one under the key prefix", up, err)
	}
	if u := up.Uploads[0]; u.Key != "stale.png" || u.StoredKey != "tenant/stale.png" || u.Bucket != "test:media" || u.Initiated.Before(before) {
		t.Fatalf("listed upload %+v", u)
	}
	if _, err := calls.ListUploads(ctx, "no separator"); storage.Code(err) != storage.InvalidArgument {
		t.Fatalf("list uploads with a made-up cursor: %v, want InvalidArgument", err)
	}
}
