//go:build linux

package app_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

const (
	// bulkResultsEnv sets how many results TestBulkOffloadHostKilled makes
	// (the proof runs it with 10000).
	bulkResultsEnv = "MAGICADS_BULK_RESULTS"
	// bulkResultsDefault keeps the test quick enough for CI.
	bulkResultsDefault = 1000
	// bulkResultSize is the size of each result (plus its index, so that
	// every size differs too).
	bulkResultSize = 100 << 10
	// bulkClients is how many requests the test sends at once when it
	// makes or reads results.
	bulkClients = 16
	// bulkS3Readers is how many objects the test reads from the bucket at
	// once (the SDK client keeps 10 idle connections per host).
	bulkS3Readers = 8
	// bulkPerResult is the time allowed per result on top of a fixed
	// allowance: 50 results a second, well under what a loaded 2-core
	// machine does, so that only a stuck run times out.
	bulkPerResult = 20 * time.Millisecond
	// bulkHostUploads is how many of these small results the host process
	// uploads at once: its 4 workers (results.Options.Workers, whose
	// default `magicads serve` keeps), each with up to 4 small uploads of
	// a bulk run. The throttle is computed for it.
	bulkHostUploads = 4 * 4
	// bulkThrottledRun is how long the throttled offload of every result
	// should take at least, so that the kill at half leaves seconds of work.
	bulkThrottledRun = 8 * time.Second
	// bulkMinUpload is how long the throttle makes each upload last at
	// least: uploads then take most of a job's time, so that jobs are
	// leased when the host is killed even when the host's own speed, not
	// the throttle, sets the pace (unthrottled at 10,000 results, SQLite
	// writes took most of it and the kill found a single leased job).
	bulkMinUpload = 25 * time.Millisecond
)

// bulkResults is how many results TestBulkOffloadHostKilled makes.
func bulkResults(t *testing.T) int {
	t.Helper()
	v := os.Getenv(bulkResultsEnv)
	if v == "" {
		return bulkResultsDefault
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 20 {
		t.Fatalf("%s=%q: want a number of results of at least 20", bulkResultsEnv, v)
	}
	return n
}

// bulkTimeout is base plus bulkPerResult for each of n results.
func bulkTimeout(base time.Duration, n int) time.Duration {
	return base + time.Duration(n)*bulkPerResult
}

// bulkThrottle is the per-connection rate that makes the offload of n
// results of size bytes take bulkThrottledRun with bulkHostUploads uploads
// at once, and each upload bulkMinUpload at least.
func bulkThrottle(n int, size int64) int {
	rate := int64(n) * size * int64(time.Second) / (bulkHostUploads * int64(bulkThrottledRun))
	return int(min(rate, size*int64(time.Second)/int64(bulkMinUpload)))
}

// offloadsLeased counts the offload jobs whose lease is held.
func (r *crashRig) offloadsLeased() int {
	n := 0
	for _, j := range r.leasedJobs() {
		if j.kind == "offload" {
			n++
		}
	}
	return n
}

// bulkClient is the test's own HTTP client for the many requests: it keeps
// enough idle connections for bulkClients requests at once (the default
// transport keeps 2, and thousands of short connections would pile up in
// TIME_WAIT) and does not follow redirects.
var bulkClient = &http.Client{
	Transport: &http.Transport{MaxIdleConns: 2 * bulkClients, MaxIdleConnsPerHost: 2 * bulkClients, IdleConnTimeout: 30 * time.Second},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
	Timeout: 2 * time.Minute,
}

// forEach calls f for 0..n-1 with at most workers calls at once, and
// returns how many failed and the first few errors. It never fails the
// test itself, so f may run on any goroutine.
func forEach(n, workers int, f func(i int) error) error {
	var (
		next   atomic.Int64
		mu     sync.Mutex
		errs   []error
		failed int
		wg     sync.WaitGroup
	)
	for range min(workers, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					failed++
					if len(errs) < 10 {
						errs = append(errs, err)
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if failed == 0 {
		return nil
	}
	return fmt.Errorf("%d of %d failed, the first ones: %w", failed, n, errors.Join(errs...))
}

// hexSHA256 is the hex sha256 of data.
func hexSHA256(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// readSHA256 reads rd to the end and returns its size and hex sha256.
func readSHA256(rd io.Reader) (int64, string, error) {
	h := sha256.New()
	n, err := io.Copy(h, rd)
	return n, hex.EncodeToString(h.Sum(nil)), err
}

// postLocalPNG finalizes data as a result through the host process at url,
// and checks it is stored locally; it returns an error
// instead of failing the test, so that many may run at once.
func postLocalPNG(url string, data []byte) (string, error) {
	form, contentType := resultForm(data, "a.png")
	req, err := http.NewRequest("POST", url+"/api/v1/results", form)
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+serviceToken)
	resp, err := bulkClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("finalizing a result: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var res struct{ ID, Storage, SHA256 string }
	if resp.StatusCode != 201 || json.Unmarshal(body, &res) != nil || res.Storage != "local" || res.ID == "" {
		return "", fmt.Errorf("finalizing a result while Default Storage is local: %d %s", resp.StatusCode, body)
	}
	if want := hexSHA256(data); res.SHA256 != "" && res.SHA256 != want {
		return "", fmt.Errorf("result %s acknowledged with sha256 %s, want %s", res.ID, res.SHA256, want)
	}
	return res.ID, nil
}

// servedLocally returns nil when the running host serves result id itself
// (200, no redirect) with size bytes of sha256 sum.
func servedLocally(url, id string, size int64, sum string) error {
	req, err := http.NewRequest("GET", url+"/api/v1/results/"+id+"/content", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+serviceToken)
	resp, err := bulkClient.Do(req)
	if err != nil {
		return fmt.Errorf("result %s: %w", id, err)
	}
	defer resp.Body.Close()
	n, got, err := readSHA256(resp.Body)
	if err != nil || resp.StatusCode != 200 || n != size || got != sum {
		return fmt.Errorf("result %s: %d (Location %q), %d bytes of sha256 %s, %v; want it served locally: 200 with %d bytes of sha256 %s",
			id, resp.StatusCode, resp.Header.Get("Location"), n, got, err, size, sum)
	}
	return nil
}

// objectSHA256 reads an object from versitygw and returns its size and hex
// sha256.
func (r *crashRig) objectSHA256(key string) (int64, string, error) {
	out, err := r.s3.Client().GetObject(r.t.Context(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return 0, "", err
	}
	defer out.Body.Close()
	return readSHA256(out.Body)
}
