package app_test

import (
	"context"
	"github.com/magicads/r2storage/host/app"
	"strings"
	"testing"
	"time"

	"github.com/magicads/r2storage/internal/testdb"
)

// TestIncompleteUploadsAbortedAfterCrash: the host and its plugin die
// together (an OOM kill of the service, a power cut) during a multipart
// upload. The restarted host asks the plugin to abort the upload its
// predecessor started, so no incomplete multipart upload is left in the
// bucket, and the result lands.
func TestIncompleteUploadsAbortedAfterCrash(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			h, bh := blackholed(t, d)
			bh.SetRate(1 << 20) // a multipart upload takes seconds
			crashed := h.crashing()
			done := make(chan posted, 1)
			data := pngBytes(12 << 20)
			go func() { done <- h.tryUpload(data) }()
			waitFor(t, 10*time.Second, "the multipart upload to start", func() bool {
				return len(h.s3.MultipartUploads(t, bucket)) > 0
			})
			// Both die at once: nothing reaches the database any more, and
			// the plugin gets no chance to abort its upload.
			pid := h.pluginPid()
			crashed.DB.Close()
			killPid(t, pid)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			crashed.Runtime.Close(ctx)
			cancel()
			app.LoseDataDirLock(crashed) // the process is gone
			p := <-done
			if p.err != nil {
				t.Fatalf("the POST in flight: %v", p.err)
			}
			if left := h.s3.MultipartUploads(t, bucket); len(left) == 0 {
				t.Fatal("setup: the killed plugin left no incomplete upload")
			}
			bh.SetRate(0)
			h.start(h.key)
			h.waitRunning()
			waitFor(t, 20*time.Second, "the incomplete upload to be aborted", func() bool {
				return len(h.s3.MultipartUploads(t, bucket)) == 0
			})
			h.allOffloaded(60*time.Second, []posted{p})
			if !strings.Contains(h.logs.String(), "aborted the incomplete uploads this node's earlier process left") {
				t.Errorf("the restarted host did not log the abort")
			}
			if left := h.s3.MultipartUploads(t, bucket); len(left) != 0 {
				t.Fatalf("incomplete uploads left: %v", left)
			}
		})
	}
}
