package main

import (
	"bytes"
	"context"
	"github.com/magicads/r2storage/internal/plugintest"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// serve runs the command and returns its address and a stop function, also
// called when the test ends.
func serve(t *testing.T, dataDir string, env map[string]string, stderr *plugintest.Logs) (string, func()) {
	t.Helper()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"serve", "--addr", addr, "--data-dir", dataDir}, getenvFrom(env), stderr)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if code := <-done; code != 0 {
				t.Errorf("exit %d:\n%s", code, stderr.String())
			}
		})
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return addr, stop
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the host did not answer /healthz:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func signIn(t *testing.T, addr, password string) int {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.PostForm("http://"+addr+"/login", url.Values{"username": {"admin"}, "password": {password}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusSeeOther && resp.Header.Get("Location") == "/login?error=1" {
		return http.StatusUnauthorized
	}
	return resp.StatusCode
}

func TestAdminPasswordFromEnv(t *testing.T) {
	const password, token = "env-admin-password-123", "env-admin-token-456"
	var stderr plugintest.Logs
	addr, _ := serve(t, t.TempDir(), map[string]string{"MAGICADS_ADMIN_PASSWORD": password, "MAGICADS_ADMIN_TOKEN": token}, &stderr)
	if code := signIn(t, addr, password); code != http.StatusSeeOther {
		t.Fatalf("sign-in with MAGICADS_ADMIN_PASSWORD: %d", code)
	}
	if code := signIn(t, addr, "wrong"); code != http.StatusUnauthorized {
		t.Fatalf("sign-in with a wrong password: %d", code)
	}
	req, _ := http.NewRequest("GET", "http://"+addr+"/api/v1/admin/storage", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("bearer token: %v %v", resp, err)
	}
	resp.Body.Close()
	out := stderr.String()
	if strings.Contains(out, "admin password:") || strings.Contains(out, password) || strings.Contains(out, token) {
		t.Fatalf("stderr shows a secret:\n%s", out)
	}
}

func TestGeneratedPasswordPrintedOnce(t *testing.T) {
	dir := t.TempDir()
	var first plugintest.Logs
	addr, stop := serve(t, dir, nil, &first)
	m := regexp.MustCompile(`(?m)^admin password: (\S{20,})$`).FindStringSubmatch(first.String())
	if m == nil {
		t.Fatalf("no generated password on stderr:\n%s", first.String())
	}
	if code := signIn(t, addr, m[1]); code != http.StatusSeeOther {
		t.Fatalf("sign-in with the generated password: %d", code)
	}
	if n := strings.Count(first.String(), m[1]); n != 1 {
		t.Fatalf("the password appears %d times on stderr", n)
	}
	stop()
	t.Run("second start", func(t *testing.T) {
		var second plugintest.Logs
		addr, _ := serve(t, dir, nil, &second)
		if strings.Contains(second.String(), m[1]) {
			t.Fatalf("the second start printed the password:\n%s", second.String())
		}
		if !strings.Contains(second.String(), "MAGICADS_ADMIN_PASSWORD") {
			t.Fatalf("no hint on how to reset the password:\n%s", second.String())
		}
		if code := signIn(t, addr, m[1]); code != http.StatusSeeOther {
			t.Fatalf("sign-in after a restart: %d", code)
		}
	})
}

// TestServiceTokenAndResultLimit: MAGICADS_SERVICE_TOKEN opens the results
// API to the studios, and --max-result-bytes bounds an upload.
func TestServiceTokenAndResultLimit(t *testing.T) {
	const svc = "env-service-token-789"
	var stderr plugintest.Logs
	addr, _ := serve(t, t.TempDir(), map[string]string{"MAGICADS_SERVICE_TOKEN": svc, "MAGICADS_MAX_RESULT_BYTES": "100"}, &stderr)
	post := func(token string, size int) int {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		mw.WriteField("kind", "images")
		mw.WriteField("generator", "gemini")
		fw, _ := mw.CreateFormFile("file", "a.png")
		fw.Write(append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, size-8)...))
		mw.Close()
		req, _ := http.NewRequest("POST", "http://"+addr+"/api/v1/results", &buf)
		req.Header.Set("Content-Type", mw.FormDataContentType())
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("", 50); code != http.StatusUnauthorized {
		t.Fatalf("anonymous upload: %d", code)
	}
	if code := post(svc, 100); code != http.StatusCreated {
		t.Fatalf("upload of 100 bytes with the service token: %d", code)
	}
	if code := post(svc, 101); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("upload of 101 bytes: %d", code)
	}
	if strings.Contains(stderr.String(), svc) {
		t.Fatal("the service token was logged")
	}
}
