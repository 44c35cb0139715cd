package app_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/providers"
	"github.com/magicads/r2storage/host/results"
	"github.com/magicads/r2storage/internal/plugintest"
	"github.com/magicads/r2storage/plugin/r2"
	"github.com/magicads/r2storage/shared/storage"
)

// BenchmarkFinalize1000x100KiB finalizes and offloads 1,000 results of
// 100 KiB through the plugin (8 at a time) and reports results/s.
func BenchmarkFinalize1000x100KiB(b *testing.B) {
	h := newBenchHost(b)
	h.configure()
	data := pngBytes(100 << 10)
	const n, workers = 1000, 8
	b.ResetTimer()
	for iter := 0; iter < b.N; iter++ {
		start := time.Now()
		var wg sync.WaitGroup
		next := make(chan int)
		errs := make(chan error, n)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range next {
					r, err := h.app.Results.Finalize(context.Background(), results.Upload{Kind: "images", Generator: "bench", ContentType: "image/png"}, bytes.NewReader(data))
					if err == nil && r.Storage != pluginID {
						err = fmt.Errorf("result stayed %s", r.Storage)
					}
					if err != nil {
						errs <- err
					}
				}
			}()
		}
		for i := 0; i < n; i++ {
			next <- i
		}
		close(next)
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "results/s")
	}
}

// BenchmarkPluginOverheadPerResult puts the same 100 KiB result file 200
// times through the plugin and through an in-process R2 provider (same
// server, same settings) and reports the median difference per put.
func BenchmarkPluginOverheadPerResult(b *testing.B) {
	h := newBenchHost(b)
	h.configure()
	inProcess, err := r2.NewFromBundle(nil)
	if err != nil {
		b.Fatal(err)
	}
	// The plugin gets the settings without the host's own keys; so does
	// the in-process provider.
	settings := h.settings()
	delete(settings, providers.KeyEnabled)
	delete(settings, providers.KeyDeleteLocal)
	if _, err := inProcess.Configure(context.Background(), settings); err != nil {
		b.Fatal(err)
	}
	plugin := h.app.Runtime.Provider(pluginID)
	path := filepath.Join(b.TempDir(), "result.png")
	os.WriteFile(path, randomBytes(100<<10), 0o600)
	measure := func(p storage.Provider, i int) time.Duration {
		f, _ := os.Open(path)
		defer f.Close()
		start := time.Now()
		if _, err := p.Put(context.Background(), fmt.Sprintf("overhead/%d.png", i), f, storage.PutOptions{ContentType: "image/png", Size: 100 << 10}); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	for iter := 0; iter < b.N; iter++ {
		var viaPlugin, viaProcess []time.Duration
		for i := 0; i < 200; i++ { // interleaved, so noise hits both alike
			viaPlugin = append(viaPlugin, measure(plugin, i))
			viaProcess = append(viaProcess, measure(inProcess, i))
		}
		b.ReportMetric(float64(median(viaPlugin)-median(viaProcess))/1e6, "overhead-ms/result")
		b.ReportMetric(float64(median(viaProcess))/1e6, "in-process-ms/result")
	}
}

func median(d []time.Duration) time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2]
}

// BenchmarkOffload1GiBRSS finalizes one 1 GiB result (streamed from a
// reader, written to the results disk, offloaded through the plugin: by the
// queue when the inline attempt runs out of its time) and reports the peak
// RSS of the host (this test process) and of the plugin. Run it alone
// (scripts/bench does) so nothing else inflates the host's peak.
func BenchmarkOffload1GiBRSS(b *testing.B) {
	h := newBenchHost(b)
	h.configure("delete_local", true)
	for iter := 0; iter < b.N; iter++ {
		r, err := h.app.Results.Finalize(context.Background(), results.Upload{Kind: "videos", Generator: "bench", ContentType: "video/mp4"},
			io.MultiReader(strings.NewReader(mp4Header), io.LimitReader(zeroReader{}, 1<<30-int64(len(mp4Header)))))
		if err != nil {
			b.Fatalf("1 GiB result: %+v, %v", r, err)
		}
		waitFor(b, 5*time.Minute, "the 1 GiB offload", func() bool { return h.pending() == 0 })
		if got := h.result(r.ID); got.Storage != pluginID {
			b.Fatalf("1 GiB result stayed %s", got.Storage)
		}
	}
	b.StopTimer()
	hostRSS, pluginRSS := peakRSS(b, os.Getpid()), peakRSS(b, h.pluginPid())
	b.ReportMetric(float64(hostRSS)/(1<<20), "host-peak-RSS-MiB")
	b.ReportMetric(float64(pluginRSS)/(1<<20), "plugin-peak-RSS-MiB")
	b.ReportMetric(float64(hostRSS+pluginRSS)/(1<<20), "total-peak-RSS-MiB")
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func peakRSS(b *testing.B, pid int) int64 {
	rss, err := plugintest.PeakRSS(pid)
	if err != nil {
		b.Fatal(err)
	}
	return rss
}

// mp4Header is the start of an MP4 file (an ftyp box).
const mp4Header = "\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
