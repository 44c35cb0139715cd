package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/magicads/r2storage/internal/plugintest"
)

// loopbackAddr returns a loopback address nothing listens on.
func loopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func get(url, token string) (int, string, error) {
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), nil
}

// TestMetricsAddr: --metrics-addr serves /metrics there without
// credentials; the API's /metrics still wants the admin token.
func TestMetricsAddr(t *testing.T) {
	addr, metricsAddr := loopbackAddr(t), loopbackAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr plugintest.Logs
	done := make(chan int, 1)
	env := getenvFrom(map[string]string{"MAGICADS_ADMIN_TOKEN": "metrics-test-token"})
	go func() {
		done <- run(ctx, []string{"serve", "--addr", addr, "--metrics-addr", metricsAddr, "--data-dir", t.TempDir()}, env, &stderr)
	}()
	var body string
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, b, err := get("http://"+metricsAddr+"/metrics", "")
		if err == nil && code == http.StatusOK {
			body = b
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("--metrics-addr did not serve /metrics (last: %d %v):\n%s", code, err, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, want := range []string{"go_goroutines", "process_cpu_seconds_total", "magicads_results{"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics on --metrics-addr lacks %q:\n%.2000s", want, body)
		}
	}
	if code, _, err := get("http://"+addr+"/metrics", ""); err != nil || code != http.StatusUnauthorized {
		t.Errorf("the API's /metrics without a token: %d %v, want 401", code, err)
	}
	if code, b, err := get("http://"+addr+"/metrics", "metrics-test-token"); err != nil || code != http.StatusOK || !strings.Contains(b, "magicads_results{") {
		t.Errorf("the API's /metrics with the admin token: %d %v\n%.500s", code, err, b)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d after a clean shutdown:\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "metrics") {
		t.Errorf("the log does not say where metrics are served:\n%s", stderr.String())
	}
}

// TestMetricsAddrRefused: a bad --metrics-addr exits 2 naming the flag.
func TestMetricsAddrRefused(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  map[string]string
	}{
		{[]string{"--metrics-addr", "nonsense"}, nil},
		{nil, map[string]string{"MAGICADS_METRICS_ADDR": "nonsense"}},
	} {
		// A host that took the flag would serve until ctx ends.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		args := append([]string{"serve", "--addr", loopbackAddr(t), "--data-dir", t.TempDir()}, c.args...)
		var stderr plugintest.Logs
		code := run(ctx, args, getenvFrom(c.env), &stderr)
		cancel()
		if code != 2 || !strings.Contains(stderr.String(), "--metrics-addr") {
			t.Errorf("%v %v: exit %d, stderr:\n%s\nwant 2 naming --metrics-addr", c.args, c.env, code, stderr.String())
		}
	}
}
