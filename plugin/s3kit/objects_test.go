package s3kit

import (
	"context"
	"strings"
	"testing"

	"github.com/magicads/r2storage/shared/storage"
)

func TestKeyPrefixHelpers(t *testing.T) {
	if got, err := ObjectKey("media", "a/b.png"); err != nil || got != "media/a/b.png" {
		t.Fatalf("ObjectKey with prefix = %q, %v", got, err)
	}
	if got, err := ObjectKey("", "a/b.png"); err != nil || got != "a/b.png" {
		t.Fatalf("ObjectKey without prefix = %q, %v", got, err)
	}
	if _, err := ObjectKey("media", strings.Repeat("a", 1020)); storage.Code(err) != storage.InvalidArgument || !strings.Contains(err.Error(), "with the key prefix") {
		t.Fatalf("ObjectKey over the limit with the prefix: %v, want InvalidArgument", err)
	}
	if _, err := ObjectKey("media", "../a.png"); storage.Code(err) != storage.InvalidArgument {
		t.Fatalf("ObjectKey of a bad key: %v, want InvalidArgument", err)
	}
	if KeyPrefix("media") != "media/" || KeyPrefix("") != "" {
		t.Fatalf("KeyPrefix = %q, %q", KeyPrefix("media"), KeyPrefix(""))
	}
	for objectKey, want := range map[string]string{"media/a.png": "a.png", "other/a.png": "other/a.png", "media/": "media/"} {
		if got := CallerKey("media", objectKey); got != want {
			t.Errorf("CallerKey(%q) = %q, want %q", objectKey, got, want)
		}
	}
}

// newTestObjects is an Objects whose client counts requests and sends none.
func newTestObjects() (*Objects, *sentinelClient) {
	hc := &sentinelClient{}
	client, tm := NewClients(ClientConfig{Region: "us-east-1", Endpoint: "http://127.0.0.1:1", AccessKeyID: "a", SecretAccessKey: "b", HTTPClient: hc})
	return &Objects{
		Bucket:     Bucket{Client: client, Uploader: tm, Name: "media"},
		KeyPrefix:  "p",
		BucketID:   "s3:media",
		ProviderID: "test-provider",
	}, hc
}

func TestObjectsRefusesAnotherBucketWithoutARequest(t *testing.T) {
	o, hc := newTestObjects()
	ctx := context.Background()
	loc := storage.Location{Bucket: "s3:elsewhere", Key: "p/a.png"}
	want := "stat p/a.png: the object is in bucket s3:elsewhere, but test-provider is configured for bucket s3:media; nothing was done (configure bucket s3:elsewhere again to reach it)"
	if _, err := o.StatAt(ctx, loc); storage.Code(err) != storage.FailedPrecondition || err.Error() != want {
		t.Fatalf("StatAt in another bucket: %v, want FailedPrecondition %q", err, want)
	}
	if _, _, err := o.GetAt(ctx, loc, storage.GetOptions{}); storage.Code(err) != storage.FailedPrecondition || !strings.HasPrefix(err.Error(), "get ") {
		t.Fatalf("GetAt in another bucket: %v, want FailedPrecondition", err)
	}
	if err := o.DeleteAt(ctx, loc); storage.Code(err) != storage.FailedPrecondition || !strings.HasPrefix(err.Error(), "delete ") {
		t.Fatalf("DeleteAt in another bucket: %v, want FailedPrecondition", err)
	}
	if hc.n != 0 {
		t.Fatalf("%d requests sent for refused calls", hc.n)
	}
}

func TestObjectsPutRefusesAnOversizedObjectWithoutARequest(t *testing.T) {
	o, hc := newTestObjects()
	_, err := o.Put(context.Background(), "a.png", strings.NewReader("x"), storage.PutOptions{Size: MaxObjectSize + 1}, 0)
	if storage.Code(err) != storage.InvalidArgument || !strings.Contains(err.Error(), "over the") {
		t.Fatalf("oversized put: %v, want InvalidArgument", err)
	}
	if hc.n != 0 {
		t.Fatalf("%d requests sent for a refused call", hc.n)
	}
}

func TestObjectsTestConnectionWordsAnUploadFailure(t *testing.T) {
	o, _ := newTestObjects()
	res, err := o.TestConnection(context.Background(), ProbeWording{Cause: func(error) string { return "the cause" }, DeleteFix: "Fix it."})
	if err != nil {
		t.Fatal(err)
	}
	if res.OK || res.Step != storage.StepUpload || res.Message != "Connection failed: the cause." || !strings.HasPrefix(res.ProbeKey, ProbeDir+"/") {
		t.Fatalf("probe against a failing client = %+v", res)
	}
}

func TestCallsCheckTheirArgumentsBeforeTheConfiguration(t *testing.T) {
	notConfigured := &storage.Error{Code: storage.FailedPrecondition, Message: "not configured"}
	asked := 0
	c := Calls{Current: func() (*Objects, error) { asked++; return nil, notConfigured }}
	ctx := context.Background()
	if _, err := c.StatAt(ctx, storage.Location{Bucket: "s3:media", Key: ""}); storage.Code(err) != storage.InvalidArgument {
		t.Fatalf("StatAt of a bad location: %v, want InvalidArgument", err)
	}
	if _, err := c.AbortUploads(ctx, []string{""}); storage.Code(err) != storage.InvalidArgument {
		t.Fatalf("AbortUploads of a bad key: %v, want InvalidArgument", err)
	}
	if asked != 0 {
		t.Fatalf("configuration asked for %d times before the arguments were checked", asked)
	}
	if _, err := c.Stat(ctx, "a.png"); err != notConfigured {
		t.Fatalf("Stat unconfigured: %v, want the provider's error", err)
	}
	if _, err := c.StatAt(ctx, storage.Location{Bucket: "s3:media", Key: "a.png"}); err != notConfigured {
		t.Fatalf("StatAt unconfigured: %v, want the provider's error", err)
	}
}

func TestCallsUseTheCurrentObjects(t *testing.T) {
	o, hc := newTestObjects()
	c := Calls{Current: func() (*Objects, error) { return o, nil }}
	if _, err := c.StatAt(context.Background(), storage.Location{Bucket: "s3:elsewhere", Key: "p/a.png"}); storage.Code(err) != storage.FailedPrecondition || !strings.Contains(err.Error(), "test-provider") {
		t.Fatalf("StatAt in another bucket: %v, want FailedPrecondition naming the provider", err)
	}
	if hc.n != 0 {
		t.Fatalf("%d requests sent for a refused call", hc.n)
	}
}
