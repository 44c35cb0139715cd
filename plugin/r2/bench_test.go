package r2_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/magicads/r2storage/internal/plugintest"
	"github.com/magicads/r2storage/internal/s3test"
	"github.com/magicads/r2storage/plugin/r2"
	"github.com/magicads/r2storage/shared/storage"
)

// patternReader yields n bytes by repeating one random block: no CPU spent
// making data, so the benchmark measures the upload path.
type patternReader struct {
	block []byte
	n     int64
	off   int
}

func newPattern(n int64) *patternReader {
	block := make([]byte, 1<<20)
	rand.Read(block)
	return &patternReader{block: block, n: n}
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.n == 0 {
		return 0, io.EOF
	}
	k := copy(b, p.block[p.off:])
	if int64(k) > p.n {
		k = int(p.n)
	}
	p.off = (p.off + k) % len(p.block)
	p.n -= int64(k)
	return k, nil
}

func benchSettings(srv *s3test.Server) storage.Settings {
	return storage.Settings{
		"access_key_id": srv.AccessKey, "secret_access_key": srv.SecretKey, "bucket": "bench",
		"endpoint": srv.Endpoint, "key_prefix": "bench", "use_path_style": true,
	}
}

// source makes the content of one put.
type source func(b *testing.B) io.Reader

func streamOf(size int64) source {
	return func(*testing.B) io.Reader { return newPattern(size) }
}

// fileOf writes size bytes to a temporary file once and opens it per put.
func fileOf(b *testing.B, size int64) source {
	path := filepath.Join(b.TempDir(), "result.bin")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(f, newPattern(size)); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return func(b *testing.B) io.Reader {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { f.Close() })
		return f
	}
}

func benchPut(b *testing.B, p storage.Provider, size int64, src source) {
	ctx := context.Background()
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		key := fmt.Sprintf("videos/bench-%d.bin", i)
		r := src(b)
		b.StartTimer()
		if _, err := p.Put(ctx, key, r, storage.PutOptions{ContentType: "video/mp4", Size: size}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := p.Delete(ctx, key); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkPut256MiB uploads 256 MiB to versitygw through the plugin
// (go-plugin gRPC) and in-process with the same SDK setup, in one run, from
// a local file (how the host offloads a finalized result: the plugin reads
// the file itself) and from a stream (bytes cross the boundary in 1 MiB
// chunks). scripts/bench prints the plugin/in-process ratios.
func BenchmarkPut256MiB(b *testing.B) {
	const size = 256 << 20
	srv := s3test.StartVersity(b)
	srv.CreateBucket(b, "bench")
	inProcess, err := r2.NewFromBundle(nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := inProcess.Configure(context.Background(), benchSettings(srv)); err != nil {
		b.Fatal(err)
	}
	plugin := plugintest.Launch(b, binary.Build(b, pluginPkg))
	if _, err := plugin.Configure(context.Background(), benchSettings(srv)); err != nil {
		b.Fatal(err)
	}
	file := fileOf(b, size)
	for _, src := range []struct {
		name string
		src  source
	}{{"file", file}, {"stream", streamOf(size)}} {
		b.Run(src.name+"/in-process", func(b *testing.B) { benchPut(b, inProcess, size, src.src) })
		b.Run(src.name+"/plugin", func(b *testing.B) { benchPut(b, plugin, size, src.src) })
	}
}

// BenchmarkPut1GiBPluginRSS streams 1 GiB through the plugin (the path that
// holds the most plugin memory: chunks in flight plus part buffers) and
// reports the plugin process's peak resident memory (VmHWM) as peak-RSS-MiB.
func BenchmarkPut1GiBPluginRSS(b *testing.B) {
	const size = 1 << 30
	srv := s3test.StartVersity(b)
	srv.CreateBucket(b, "bench")
	p := plugintest.Launch(b, binary.Build(b, pluginPkg))
	if _, err := p.Configure(context.Background(), benchSettings(srv)); err != nil {
		b.Fatal(err)
	}
	benchPut(b, p, size, streamOf(size))
	b.StopTimer()
	hwm, err := plugintest.PeakRSS(p.Pid())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(hwm)/(1<<20), "peak-RSS-MiB")
}
