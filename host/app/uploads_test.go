package app_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/app"
	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/host/httpapi"
)

// countingReader counts the bytes the server pulled from a request body.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// socketSlack is how many bytes of a request body a client can hand to the
// kernel over loopback before the host reads any: its send buffer plus the
// receive window the kernel may grow on the host's side (half the receive
// buffer), from this machine's TCP settings, plus 1 MiB for the client's
// own buffers. A body the host refused early is read no further than that.
func socketSlack(t *testing.T) int64 {
	t.Helper()
	maxOf := func(name string) int64 {
		b, err := os.ReadFile("/proc/sys/net/ipv4/" + name)
		if err != nil {
			return 8 << 20 // not Linux: a generous guess
		}
		f := strings.Fields(string(b))
		var v int64
		if len(f) == 3 {
			fmt.Sscan(f[2], &v)
		}
		if v <= 0 {
			t.Fatalf("cannot read the maximum of %s: %q", name, b)
		}
		return v
	}
	return maxOf("tcp_wmem") + maxOf("tcp_rmem")/2 + 1<<20
}

// junkForm streams a form whose first part is a text field of size bytes
// named name, then the usual fields and a PNG; it never holds it in memory.
func junkForm(name string, size int64) (string, io.Reader) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		w, _ := mw.CreateFormField(name)
		chunk := []byte(strings.Repeat("j", 64<<10))
		for left := size; left > 0; left -= int64(len(chunk)) {
			if _, err := w.Write(chunk[:min(int64(len(chunk)), left)]); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		mw.WriteField("kind", "images")
		mw.WriteField("generator", "gemini")
		fw, _ := mw.CreateFormFile("file", "a.png")
		fw.Write(pngBytes(64))
		pw.CloseWithError(mw.Close())
	}()
	return mw.FormDataContentType(), pr
}

func (h *trustHost) postStream(ct string, body io.Reader, size int64) (int, string) {
	h.t.Helper()
	req, _ := http.NewRequest("POST", h.srv.URL+"/api/v1/results", body)
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Authorization", "Bearer "+serviceToken)
	req.ContentLength = size
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

// TestUploadFormIsBounded: finding 3 — unknown fields were read and kept,
// text fields were not capped, and several file parts were possible.
func TestUploadFormIsBounded(t *testing.T) {
	h := startTrustHost(t, dbmigrate.SQLite, nil)
	svc := []string{"Authorization", "Bearer " + serviceToken}

	// Each body is more than twice what the sockets can take before the
	// host reads (socketSlack), so a host that read it whole is caught
	// while the kernel's buffering is not mistaken for the host's.
	slack := socketSlack(t)
	big := max(64<<20, 2*slack+(8<<20))
	// An unknown field is refused at once: the rest of the body is not read.
	ct, body := junkForm("junk", big)
	cr := &countingReader{r: body}
	code, msg := h.postStream(ct, cr, -1)
	if code != http.StatusBadRequest || !strings.Contains(msg, `junk`) {
		t.Fatalf("an unknown field: %d %s", code, msg)
	}
	if n := cr.n.Load(); n > slack {
		t.Fatalf("the host read %d bytes of a form it refused at its first field (the sockets take at most %d)", n, slack)
	}
	// A known text field over 1 KiB is refused too, read no further.
	ct, body = junkForm("generator", big)
	cr = &countingReader{r: body}
	if code, msg := h.postStream(ct, cr, -1); code != http.StatusBadRequest || !strings.Contains(msg, "generator") || !strings.Contains(msg, "1024") {
		t.Fatalf("a %d-byte generator field: %d %s", big, code, msg)
	}
	if n := cr.n.Load(); n > slack {
		t.Fatalf("the host read %d bytes of an oversized field (the sockets take at most %d)", n, slack)
	}
	// A part header far over the form's 64 KiB budget for everything but
	// the file (the was 9 MiB) is refused, never buffered whole.
	hdr := "--b\r\nContent-Disposition: form-data; name=\"kind\"\r\nX-Junk: " + strings.Repeat("h", int(big)) + "\r\n\r\nimages\r\n--b--\r\n"
	cr = &countingReader{r: strings.NewReader(hdr)}
	if code, msg := h.postStream("multipart/form-data; boundary=b", cr, -1); code != http.StatusRequestEntityTooLarge || !strings.Contains(msg, "part headers") {
		t.Fatalf("a %d-byte part header: %d %s", big, code, msg)
	}
	if n := cr.n.Load(); n > slack {
		t.Fatalf("the host read %d bytes of a form with a %d-byte part header (the sockets take at most %d)", n, big, slack)
	}
	for name, parts := range map[string][]formPart{
		"two files":       pngForm(file("b.png", "image/png", pngBytes(64))),
		"duplicate field": append([]formPart{field("kind", "images")}, pngForm()...),
		"no file":         {field("kind", "images"), field("generator", "gemini")},
	} {
		if resp, body := h.post(h.client(), parts, svc...); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d %s", name, resp.StatusCode, body)
		}
	}
}

// TestUploadSizeLimitAndSpool: a result over --max-result-bytes is 413 and
// leaves nothing behind; a file sent before the fields is spooled inside the
// data dir, never the system temp dir.
func TestUploadSizeLimitAndSpool(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	const limit = 1 << 20
	h := startTrustHost(t, dbmigrate.SQLite, func(c *app.Config) { c.HTTP.MaxResultBytes = limit })
	svc := []string{"Authorization", "Bearer " + serviceToken}

	for _, fileFirst := range []bool{false, true} {
		parts := pngForm()
		parts[2] = file("a.png", "image/png", pngBytes(limit+1))
		if fileFirst {
			parts = []formPart{parts[2], parts[0], parts[1]}
		}
		resp, body := h.post(h.client(), parts, svc...)
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(body, "1048576") {
			t.Fatalf("file first %v, limit+1 bytes: %d %s", fileFirst, resp.StatusCode, body)
		}
		parts[map[bool]int{false: 2, true: 0}[fileFirst]] = file("a.png", "image/png", pngBytes(limit))
		if resp, body := h.post(h.client(), parts, svc...); resp.StatusCode != http.StatusCreated {
			t.Fatalf("file first %v, exactly the limit: %d %s", fileFirst, resp.StatusCode, body)
		}
	}
	// A body declared larger than the limit is refused before it is read.
	req, _ := http.NewRequest("POST", h.srv.URL+"/api/v1/results", strings.NewReader("x"))
	req.Header.Set("Authorization", "Bearer "+serviceToken)
	req.Header.Set("Content-Type", "multipart/form-data; boundary=x")
	req.ContentLength = 10 << 30
	if resp, err := (&http.Transport{}).RoundTrip(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("a declared 10 GiB body: %d", resp.StatusCode)
		}
	}

	// Hold a file-first upload mid-file and look where it is spooled.
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	done := make(chan int, 1)
	go func() {
		code, _ := h.postStream(mw.FormDataContentType(), pr, -1)
		done <- code
	}()
	fw, _ := mw.CreateFormFile("file", "a.png")
	fw.Write(pngBytes(256 << 10))
	var spooled []string
	waitFor(t, 10*time.Second, "the spool file", func() bool {
		spooled = findFiles(t, h.dataDir, "upload")
		return len(spooled) > 0
	})
	if in := findFiles(t, tmp, ""); len(in) > 0 {
		t.Fatalf("the upload was spooled to the system temp dir: %v", in)
	}
	for _, f := range spooled {
		if st, err := os.Stat(f); err == nil && st.Mode().Perm()&0o077 != 0 {
			t.Errorf("spool file %s is mode %v", f, st.Mode())
		}
	}
	mw.WriteField("kind", "images")
	mw.WriteField("generator", "gemini")
	pw.CloseWithError(mw.Close())
	if code := <-done; code != http.StatusCreated {
		t.Fatalf("file-first upload: %d", code)
	}
	if left := findFiles(t, h.dataDir, "upload"); len(left) > 0 {
		t.Fatalf("spool files left behind: %v", left)
	}
}

// findFiles lists the regular files under dir whose name contains part.
func findFiles(t *testing.T, dir, part string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && strings.Contains(d.Name(), part) {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// TestUploadsInFlightAreBounded: beyond MaxUploads the host answers 503 with
// Retry-After instead of taking on more.
func TestUploadsInFlightAreBounded(t *testing.T) {
	h := startTrustHost(t, dbmigrate.SQLite, func(c *app.Config) { c.HTTP.MaxUploads = 1 })
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.CloseWithError(io.ErrUnexpectedEOF) })
	mw := multipart.NewWriter(pw)
	done := make(chan int, 1)
	go func() {
		code, _ := h.postStream(mw.FormDataContentType(), pr, -1)
		done <- code
	}()
	mw.WriteField("kind", "images")
	mw.WriteField("generator", "gemini")
	fw, _ := mw.CreateFormFile("file", "a.png")
	fw.Write(pngBytes(64 << 10))
	waitFor(t, 10*time.Second, "the first upload to be in flight", func() bool {
		return len(findFiles(t, filepath.Join(h.dataDir, "results"), "")) > 0
	})
	resp, body := h.post(h.client(), pngForm(), "Authorization", "Bearer "+serviceToken)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("a second upload while one is in flight: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	pw.CloseWithError(mw.Close())
	if code := <-done; code != http.StatusCreated {
		t.Fatalf("the first upload: %d", code)
	}
	if resp, body := h.post(h.client(), pngForm(), "Authorization", "Bearer "+serviceToken); resp.StatusCode != http.StatusCreated {
		t.Fatalf("an upload once the first finished: %d %s", resp.StatusCode, body)
	}
}

// TestSlowAndIdleConnectionsAreCut: the host's server cuts a client that
// stops sending its upload, and closes idle keep-alive connections, while a
// steady upload that takes longer than the rate window goes through.
func TestSlowAndIdleConnectionsAreCut(t *testing.T) {
	h := startTrustHost(t, dbmigrate.SQLite, func(c *app.Config) {
		c.HTTP = httpapi.Limits{MinUploadRate: 64 << 10, RateWindow: time.Second, IdleTimeout: time.Second, ReadHeaderTimeout: time.Second}
	})
	srv := h.app.Server()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()

	// A stalled upload: headers and a few bytes, then nothing.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /api/v1/results HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n--b\r\n", serviceToken)
	start := time.Now()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	io.Copy(io.Discard, conn)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("a stalled upload held its connection for %v", d)
	}

	// An idle keep-alive connection is closed.
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	fmt.Fprintf(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(idle)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	start = time.Now()
	idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadByte(); err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("an idle connection stayed open for %v (%v)", time.Since(start), err)
	}

	// A client that stops reading a large result is cut after a window: it
	// gets what the socket buffers held, never the whole result.
	const size = 48 << 20
	resp2, body := h.post(h.client(), []formPart{field("kind", "images"), field("generator", "gemini"), file("big.png", "image/png", pngBytes(size))}, "Authorization", "Bearer "+serviceToken)
	if resp2.StatusCode != http.StatusCreated {
		t.Fatalf("uploading the large result: %d %s", resp2.StatusCode, body)
	}
	var big struct{ URL string }
	json.Unmarshal([]byte(body), &big)
	reader, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	fmt.Fprintf(reader, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", big.URL)
	time.Sleep(4 * time.Second) // read nothing for four windows
	reader.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, cerr := io.Copy(io.Discard, reader)
	t.Logf("slow reader got %d bytes (%v)", n, cerr)
	if n >= size {
		t.Fatalf("a client that stopped reading for 4 s still got all %d bytes", n)
	}

	// A steady upload at well over the minimum rate, lasting three windows, passes.
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		mw.WriteField("kind", "images")
		mw.WriteField("generator", "gemini")
		fw, _ := mw.CreateFormFile("file", "a.png")
		fw.Write(pngBytes(1024))
		for i := 0; i < 30; i++ {
			fw.Write(randomBytes(32 << 10))
			time.Sleep(100 * time.Millisecond)
		}
		pw.CloseWithError(mw.Close())
	}()
	req, _ := http.NewRequest("POST", "http://"+addr+"/api/v1/results", pr)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+serviceToken)
	got, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("a steady upload: %v", err)
	}
	got.Body.Close()
	if got.StatusCode != http.StatusCreated {
		t.Fatalf("a steady upload: %d", got.StatusCode)
	}
}
