package app_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/host/pluginrt"
	"github.com/magicads/r2storage/host/providers"
	"github.com/magicads/r2storage/internal/plugintest"
	"github.com/magicads/r2storage/internal/s3test"
	"github.com/magicads/r2storage/internal/testdb"
)

const (
	// s3ID is the S3-compatible provider's plugin id.
	s3ID = "s3-compatible"
	// s3Bucket is the S3-compatible provider's bucket (on its own server).
	s3Bucket = "magicads-s3-media"
	// s3Region is the region the S3-compatible server signs for.
	s3Region = "us-east-1"
)

// publicBucket is a stand-in for a bucket's public URL: GET <url>/<key>
// answers the object's bytes, read from the server with its root
// credentials.
func publicBucket(t *testing.T, srv *s3test.Server, bucketName string) string {
	t.Helper()
	ps := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimPrefix(r.URL.Path, "/")
		out, err := srv.Client().GetObject(r.Context(), &s3.GetObjectInput{Bucket: aws.String(bucketName), Key: aws.String(key)})
		if err != nil {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		defer out.Body.Close()
		io.Copy(w, out.Body)
	}))
	t.Cleanup(ps.Close)
	return ps.URL
}

// twoHost is a host with both providers installed: R2 on h.s3 (region
// auto) and S3-compatible on its own versitygw (us-east-1), each with a
// public URL stand-in serving its bucket.
type twoHost struct {
	*host
	r2Public string
	s3       *s3test.Server
	s3Public string
}

// newTwoHost starts a host with both plugins installed (not configured);
// s3Bin builds the S3-compatible plugin (pluginBin is the R2 one).
func newTwoHost(t *testing.T, dialect dbmigrate.Dialect, s3Bin *plugintest.Builder) *twoHost {
	t.Helper()
	h := &twoHost{host: newHost(t, dialect)}
	h.r2Public = publicBucket(t, h.host.s3, bucket)
	h.s3 = s3test.StartVersityIn(t, s3Region)
	h.s3.CreateBucket(t, s3Bucket)
	h.s3Public = publicBucket(t, h.s3, s3Bucket)
	bin := s3Bin.Build(t, "./plugin/cmd/s3-compatible")
	err := h.app.Providers.Register(context.Background(), providers.Installed{
		ID: s3ID, Version: "1.0.0", Dir: filepath.Join(plugintest.ModuleRoot(t), "plugin", "s3compat", "bundle"),
		BinaryPath: bin, SHA256: fileSHA256(t, bin),
	})
	if err != nil {
		t.Fatalf("registering the S3-compatible plugin: %v", err)
	}
	waitFor(t, 20*time.Second, "the S3-compatible plugin to run", func() bool {
		st, ok := h.app.Runtime.Status(s3ID)
		return ok && st.State == pluginrt.StateRunning
	})
	return h
}

// configureBoth saves both providers' settings through the API, enabled,
// with delete_local as given.
func (h *twoHost) configureBoth(deleteLocal bool) {
	h.t.Helper()
	r2 := h.settings("public_url", h.r2Public, "delete_local", deleteLocal)
	var refused map[string]any
	if code := h.do("PUT", "/api/v1/admin/plugins/"+pluginID+"/settings", map[string]any{"values": r2}, &refused); code != http.StatusOK {
		h.t.Fatalf("saving the R2 settings: %d %v", code, refused)
	}
	s3v := map[string]any{
		"enabled": true, "delete_local": deleteLocal,
		"access_key_id": h.s3.AccessKey, "secret_access_key": h.s3.SecretKey,
		"region": s3Region, "endpoint": h.s3.Endpoint, "bucket": s3Bucket, "use_path_style": true,
		"key_prefix": "s3media", "public_url": h.s3Public,
	}
	if code := h.do("PUT", "/api/v1/admin/plugins/"+s3ID+"/settings", map[string]any{"values": s3v}, &refused); code != http.StatusOK {
		h.t.Fatalf("saving the S3-compatible settings: %d %v", code, refused)
	}
	for id, values := range map[string]map[string]any{pluginID: r2, s3ID: s3v} {
		var res struct {
			OK      bool
			Step    string
			Message string
		}
		if code := h.do("POST", "/api/v1/admin/plugins/"+id+"/test", map[string]any{"values": values}, &res); code != http.StatusOK || !res.OK {
			h.t.Fatalf("testing the %s connection: %d %+v", id, code, res)
		}
	}
}

// setDefault makes id the Default Storage, waiting until it is an option.
func (h *twoHost) setDefault(id string) {
	h.t.Helper()
	waitFor(h.t, 20*time.Second, id+" to be a Default Storage option", func() bool {
		var st struct{ Options []struct{ ID string } }
		h.do("GET", "/api/v1/admin/storage", nil, &st)
		return slices.ContainsFunc(st.Options, func(o struct{ ID string }) bool { return o.ID == id })
	})
	if code := h.do("PUT", "/api/v1/admin/storage", map[string]string{"default": id}, nil); code != http.StatusOK {
		h.t.Fatalf("setting Default Storage to %s: %d\n%s", id, code, h.logs)
	}
}

// bucketID is the identity a provider reports for bucketName on srv
// (a custom endpoint: host:port/bucket).
func bucketID(srv *s3test.Server, bucketName string) string {
	return strings.TrimPrefix(srv.Endpoint, "http://") + "/" + bucketName
}

// served follows a result's content URL and checks it redirects to
// wantBase + "/" + key and that the URL answers want.
func (h *twoHost) served(id, wantBase, key string, want []byte) {
	h.t.Helper()
	code, _, loc := h.content(id)
	if code != http.StatusFound || loc != wantBase+"/"+key {
		h.t.Fatalf("content of %s: %d %q, want 302 to %q", id, code, loc, wantBase+"/"+key)
	}
	resp, err := http.Get(loc)
	if err != nil {
		h.t.Fatalf("GET %s: %v", loc, err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, want) {
		h.t.Fatalf("GET %s: %d, %d bytes, want the result's %d bytes", loc, resp.StatusCode, len(got), len(want))
	}
}

// localFile reports whether a result still has its file on the results disk.
func (h *twoHost) localFile(path string) bool {
	_, err := os.Stat(filepath.Join(h.dataDir, "results", filepath.FromSlash(path)))
	return !errors.Is(err, os.ErrNotExist)
}

// TestTwoProvidersSwitchDefault: with both providers installed and
// configured, Default Storage R2 sends results to R2; switching it to
// S3-compatible sends new results to the S3 bucket, moves nothing, and
// R2's results keep serving from R2 and are deleted from R2 — with
// delete_local off and on.
func TestTwoProvidersSwitchDefault(t *testing.T) {
	var s3Bin plugintest.Builder
	t.Cleanup(s3Bin.Cleanup)
	for _, d := range testdb.Dialects() {
		for _, deleteLocal := range []bool{false, true} {
			name := string(d) + "/keep-local"
			if deleteLocal {
				name = string(d) + "/delete-local"
			}
			t.Run(name, func(t *testing.T) {
				h := newTwoHost(t, d, &s3Bin)
				h.configureBoth(deleteLocal)
				h.setDefault(pluginID)

				// Default Storage R2: results land in R2's bucket.
				r2Data := [][]byte{pngBytes(3000), pngBytes(70 << 10)}
				var r2Res []resultBody
				for i, data := range r2Data {
					r := h.upload(data, "r2.png")
					got := h.custody(r.ID)
					key := "magicads/" + r.Path
					if r.Storage != pluginID || got.Storage != pluginID || got.ObjectKey != key || got.Bucket != bucketID(h.host.s3, bucket) {
						t.Fatalf("R2 result %d: %+v, want in %s at %s", i, got, bucketID(h.host.s3, bucket), key)
					}
					if !bytes.Equal(h.host.s3.GetObject(t, bucket, key), data) {
						t.Fatalf("R2 result %d: the bucket object differs from the upload", i)
					}
					r2Res = append(r2Res, r)
				}
				if keys := h.s3.Keys(t, s3Bucket); len(keys) != 0 {
					t.Fatalf("Default Storage R2 but the S3 bucket has %v", keys)
				}

				// Switch Default Storage to S3-compatible: new results land in the S3 bucket.
				h.setDefault(s3ID)
				s3Data := [][]byte{pngBytes(4000), pngBytes(50 << 10)}
				var s3Res []resultBody
				for i, data := range s3Data {
					r := h.upload(data, "s3.png")
					got := h.custody(r.ID)
					key := "s3media/" + r.Path
					if r.Storage != s3ID || got.ObjectKey != key || got.Bucket != bucketID(h.s3, s3Bucket) {
						t.Fatalf("S3 result %d: %+v, want in %s at %s", i, got, bucketID(h.s3, s3Bucket), key)
					}
					if !bytes.Equal(h.s3.GetObject(t, s3Bucket, key), data) {
						t.Fatalf("S3 result %d: the bucket object differs from the upload", i)
					}
					h.served(r.ID, h.s3Public, key, data)
					s3Res = append(s3Res, r)
				}

				// Nothing was moved or copied: once the queue is idle each
				// bucket holds exactly its own provider's results, and R2's
				// results still say R2.
				waitFor(t, 20*time.Second, "the job queue to be idle", func() bool { return h.pending() == 0 })
				wantR2 := []string{"magicads/" + r2Res[0].Path, "magicads/" + r2Res[1].Path}
				wantS3 := []string{"s3media/" + s3Res[0].Path, "s3media/" + s3Res[1].Path}
				slices.Sort(wantR2)
				slices.Sort(wantS3)
				if got := h.host.s3.Keys(t, bucket); !slices.Equal(got, wantR2) {
					t.Fatalf("R2 bucket after the switch: %v, want %v", got, wantR2)
				}
				if got := h.s3.Keys(t, s3Bucket); !slices.Equal(got, wantS3) {
					t.Fatalf("S3 bucket after the switch: %v, want %v", got, wantS3)
				}

				// R2's results keep serving from R2 with their bytes.
				for i, r := range r2Res {
					got := h.custody(r.ID)
					if got.Storage != pluginID || got.Bucket != bucketID(h.host.s3, bucket) || got.URL != h.r2Public+"/magicads/"+r.Path {
						t.Fatalf("R2 result %d after the switch: %+v", i, got)
					}
					h.served(r.ID, h.r2Public, "magicads/"+r.Path, r2Data[i])
					if h.localFile(r.Path) == deleteLocal {
						t.Fatalf("R2 result %d: local file present %v with delete_local %v", i, !deleteLocal, deleteLocal)
					}
				}

				// Deleting an R2 result deletes its object from R2, not from S3.
				if code := h.do("DELETE", "/api/v1/results/"+r2Res[0].ID, nil, nil); code != http.StatusNoContent {
					t.Fatalf("deleting an R2 result: %d", code)
				}
				waitFor(t, 20*time.Second, "the R2 object to be deleted", func() bool {
					return !hasKey(h.host.s3.Keys(t, bucket), "magicads/"+r2Res[0].Path)
				})
				waitFor(t, 20*time.Second, "the delete job to finish", func() bool { return h.pending() == 0 })
				if got := h.host.s3.Keys(t, bucket); !slices.Equal(got, []string{"magicads/" + r2Res[1].Path}) {
					t.Fatalf("R2 bucket after deleting one R2 result: %v", got)
				}
				if got := h.s3.Keys(t, s3Bucket); !slices.Equal(got, wantS3) {
					t.Fatalf("deleting an R2 result changed the S3 bucket: %v", got)
				}
				if h.localFile(r2Res[0].Path) {
					t.Fatal("the deleted R2 result's local file is still there")
				}
				if code := h.do("GET", "/api/v1/results/"+r2Res[0].ID, nil, nil); code != http.StatusNotFound {
					t.Fatalf("GET of a deleted R2 result: %d", code)
				}

				// Deleting an S3 result deletes from S3 only.
				if code := h.do("DELETE", "/api/v1/results/"+s3Res[0].ID, nil, nil); code != http.StatusNoContent {
					t.Fatalf("deleting an S3 result: %d", code)
				}
				waitFor(t, 20*time.Second, "the S3 object to be deleted", func() bool {
					return !hasKey(h.s3.Keys(t, s3Bucket), "s3media/"+s3Res[0].Path)
				})
				waitFor(t, 20*time.Second, "the delete job to finish", func() bool { return h.pending() == 0 })
				if got := h.host.s3.Keys(t, bucket); !slices.Equal(got, []string{"magicads/" + r2Res[1].Path}) {
					t.Fatalf("deleting an S3 result changed the R2 bucket: %v", got)
				}
				h.served(r2Res[1].ID, h.r2Public, "magicads/"+r2Res[1].Path, r2Data[1])
				h.served(s3Res[1].ID, h.s3Public, "s3media/"+s3Res[1].Path, s3Data[1])
			})
		}
	}
}
