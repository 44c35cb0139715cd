//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/magicads/r2storage/internal/plugintest"
)

// hostProcessEnv makes the test binary run `magicads serve` with the
// arguments in it (space-separated) instead of the tests: benchmarks start
// the host as a process of its own to read its peak RSS.
const hostProcessEnv = "MAGICADS_TEST_HOST_ARGS"

func TestMain(m *testing.M) {
	if args := os.Getenv(hostProcessEnv); args != "" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, strings.Fields(args), os.Getenv, os.Stderr)
		stop()
		os.Exit(code)
	}
	code := m.Run()
	benchPlugin.Cleanup()
	os.Exit(code)
}

// hostProcess starts the host as a child process on a free port.
func hostProcess(b *testing.B, env ...string) (addr string, pid int) {
	b.Helper()
	addr = freeAddr(b)
	cmd := exec.Command(os.Args[0])
	// If the benchmark process dies (a panic, a kill), the host goes too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Env = append(os.Environ(), append(env, hostProcessEnv+"=serve --addr "+addr+" --data-dir "+b.TempDir())...)
	var logs plugintest.Logs
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return addr, cmd.Process.Pid
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("the host did not start:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freeAddr(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// uploadForm streams a results form: junk bytes in small fields named
// junk-N (200 bytes each, the shape that made hosts keep every field) first,
// then kind, generator and a PNG of fileSize.
func uploadForm(junk int64, fileSize int) (string, io.Reader) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		chunk := []byte(strings.Repeat("j", 200))
		for i := 0; junk > 0; i++ {
			w, err := mw.CreateFormField(fmt.Sprintf("junk-%d", i))
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			n := min(junk, int64(len(chunk)))
			if _, err := w.Write(chunk[:n]); err != nil {
				pw.CloseWithError(err)
				return
			}
			junk -= n
		}
		mw.WriteField("kind", "images")
		mw.WriteField("generator", "bench")
		fw, _ := mw.CreateFormFile("file", "a.png")
		data := make([]byte, fileSize)
		copy(data, "\x89PNG\r\n\x1a\n")
		fw.Write(data)
		pw.CloseWithError(mw.Close())
	}()
	return mw.FormDataContentType(), pr
}

func post(addr, token, ct string, body io.Reader) (int, error) {
	req, _ := http.NewRequest("POST", "http://"+addr+"/api/v1/results", body)
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// BenchmarkUploadRSS reports the host process's peak RSS (VmHWM) when idle
// after one upload, after a 150 MB form of junk fields, and after 32
// clients uploaded 1 MiB results at once, each as a ratio to the idle peak
// measured in the same run (1.00 = flat).
func BenchmarkUploadRSS(b *testing.B) {
	const token = "bench-service-token"
	for i := 0; i < b.N; i++ {
		addr, pid := hostProcess(b, "MAGICADS_SERVICE_TOKEN="+token, "MAGICADS_ADMIN_PASSWORD=bench-admin-password")
		ct, body := uploadForm(0, 1<<20)
		if code, err := post(addr, token, ct, body); err != nil || code != http.StatusCreated {
			b.Fatalf("warm-up upload: %d %v", code, err)
		}
		idle := peak(b, pid)

		ct, body = uploadForm(150<<20, 1<<10)
		code, err := post(addr, token, ct, body)
		if err == nil && code != http.StatusBadRequest {
			b.Fatalf("a form of 150 MB of junk fields: %d", code)
		}
		junk := peak(b, pid)

		var wg sync.WaitGroup
		errs := make(chan error, 32)
		for c := 0; c < 32; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ct, body := uploadForm(0, 1<<20)
				if code, err := post(addr, token, ct, body); err != nil || code != http.StatusCreated {
					errs <- fmt.Errorf("upload: %d %v", code, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		uploads := peak(b, pid)
		mib := func(n int64) float64 { return float64(n) / (1 << 20) }
		b.ReportMetric(mib(idle), "idle-peak-RSS-MiB")
		b.ReportMetric(mib(junk), "junk-form-peak-RSS-MiB")
		b.ReportMetric(mib(uploads), "32x1MiB-peak-RSS-MiB")
		b.ReportMetric(float64(junk)/float64(idle), "junk/idle")
		b.ReportMetric(float64(uploads)/float64(idle), "32x1MiB/idle")
	}
}

func peak(b *testing.B, pid int) int64 {
	b.Helper()
	n, err := plugintest.PeakRSS(pid)
	if err != nil {
		b.Fatal(err)
	}
	return n
}
