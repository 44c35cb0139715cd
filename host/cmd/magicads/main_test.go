package main

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/magicads/r2storage/internal/plugintest"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func getenvFrom(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestRunRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name string
		args []string
		env  map[string]string
		code int
		want string
	}{
		{"no command", nil, nil, 2, "usage: magicads serve"},
		{"unknown flag", []string{"serve", "--colour", "blue"}, nil, 2, "flag provided but not defined"},
		{"bad license", []string{"serve", "--license", "gold"}, nil, 2, "--license must be regular or extended"},
		{"bad addr", []string{"serve", "--addr", "nonsense"}, nil, 2, "--addr"},
		{"bad db", []string{"serve", "--db", "mysql://x"}, nil, 2, "--db must be a postgres:// URL"},
		{"bad max result", []string{"serve", "--max-result-bytes", "1GB"}, nil, 2, "--max-result-bytes must be a number of bytes from 1 to"},
		{"huge max result", []string{"serve", "--max-result-bytes", "9223372036854775807"}, nil, 2, "--max-result-bytes must be a number of bytes from 1 to 1099511627776"},
		{"bad max result env", []string{"serve"}, map[string]string{"MAGICADS_MAX_RESULT_BYTES": "0"}, 2, "--max-result-bytes"},
		{"bad upload workers", []string{"serve", "--upload-workers", "0"}, nil, 2, "--upload-workers must be a number from 1 to 64, got \"0\""},
		{"too many upload workers env", []string{"serve"}, map[string]string{"MAGICADS_UPLOAD_WORKERS": "65"}, 2, "--upload-workers must be a number from 1 to 64"},
		{"bad node id", []string{"serve", "--node-id", "node/1"}, nil, 2, "--node-id must be 1 to 64 letters, digits, '.', '_' or '-', got \"node/1\""},
		{"long node id env", []string{"serve"}, map[string]string{"MAGICADS_NODE_ID": strings.Repeat("n", 65)}, 2, "--node-id must be 1 to 64"},
		{"relative advertise url", []string{"serve", "--advertise-url", "10.0.0.1:8080"}, nil, 2, "--advertise-url must be an absolute http:// or https:// URL, got \"10.0.0.1:8080\""},
		{"ftp advertise url env", []string{"serve"}, map[string]string{"MAGICADS_ADVERTISE_URL": "ftp://10.0.0.1/"}, 2, "--advertise-url must be an absolute http:// or https:// URL"},
		{"advertise url without host", []string{"serve", "--advertise-url", "http:///x"}, nil, 2, "--advertise-url must be an absolute http:// or https:// URL"},
		{"bad shared results env", []string{"serve"}, map[string]string{"MAGICADS_SHARED_RESULTS": "maybe"}, 2, "--shared-results must be true or false, got \"maybe\""},
		{"bad APP_KEY", []string{"serve", "--data-dir", dir}, map[string]string{"APP_KEY": "base64:c2hvcnQ="}, 1, "APP_KEY"},
		{"unreachable db", []string{"serve", "--data-dir", dir, "--db", "postgres://postgres@127.0.0.1:1/none?connect_timeout=2"}, nil, 1, "database unreachable"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := run(context.Background(), c.args, getenvFrom(c.env), &stderr)
			if code != c.code || !strings.Contains(stderr.String(), c.want) {
				t.Fatalf("exit %d (want %d), stderr:\n%s\nwant it to contain %q", code, c.code, stderr.String(), c.want)
			}
			if strings.Contains(stderr.String(), "c2hvcnQ=") {
				t.Fatal("the APP_KEY value was echoed")
			}
		})
	}
}

func TestServeAndShutdown(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var stderr plugintest.Logs
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"serve", "--addr", addr, "--data-dir", t.TempDir()}, getenvFrom(nil), &stderr)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the host did not answer /healthz:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d after a clean shutdown:\n%s", code, stderr.String())
	}
	log := stderr.String()
	for _, want := range []string{"listening", "APP_KEY was not set", "shutting down"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

// TestUploadWorkersFlag: --upload-workers (or MAGICADS_UPLOAD_WORKERS)
// sets how many queued uploads, deletes and bring-backs a node runs at
// once; the default stays 4.
func TestUploadWorkersFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  map[string]string
		want int
	}{
		{nil, nil, 4},
		{[]string{"--upload-workers", "16"}, nil, 16},
		{nil, map[string]string{"MAGICADS_UPLOAD_WORKERS": "32"}, 32},
		{[]string{"--upload-workers", "8"}, map[string]string{"MAGICADS_UPLOAD_WORKERS": "32"}, 8},
	} {
		f, err := parse(c.args, getenvFrom(c.env), io.Discard)
		if err != nil || f.uploadWorkers != c.want {
			t.Fatalf("parse(%v, %v) = %d workers, %v; want %d", c.args, c.env, f.uploadWorkers, err, c.want)
		}
	}
}

// TestNodeFlags: --node-id (MAGICADS_NODE_ID) names the node, "" keeping
// the id of data/node.id; --advertise-url (MAGICADS_ADVERTISE_URL)
// defaults to http://<--addr>.
func TestNodeFlags(t *testing.T) {
	for _, c := range []struct {
		args        []string
		env         map[string]string
		id, adverts string
	}{
		{nil, nil, "", "http://127.0.0.1:8080"},
		{[]string{"--addr", "10.0.0.5:9000"}, nil, "", "http://10.0.0.5:9000"},
		{[]string{"--node-id", "web-1.eu_A"}, nil, "web-1.eu_A", "http://127.0.0.1:8080"},
		{nil, map[string]string{"MAGICADS_NODE_ID": "web-2", "MAGICADS_ADVERTISE_URL": "https://web-2.internal:8443"}, "web-2", "https://web-2.internal:8443"},
		{[]string{"--node-id", "web-3", "--advertise-url", "http://10.0.0.3:8080"}, map[string]string{"MAGICADS_NODE_ID": "web-2"}, "web-3", "http://10.0.0.3:8080"},
		{[]string{"--addr", "[::1]:8080"}, nil, "", "http://[::1]:8080"},
		{[]string{"--addr", "0.0.0.0:8080"}, nil, "", "http://0.0.0.0:8080"},
		{[]string{"--addr", ":8080"}, nil, "", "http://:8080"},
		{[]string{"--addr", "[::]:8080", "--advertise-url", "http://10.0.0.5:8080"}, nil, "", "http://10.0.0.5:8080"},
	} {
		f, err := parse(c.args, getenvFrom(c.env), io.Discard)
		if err != nil || f.nodeID != c.id || f.advertiseURL != c.adverts {
			t.Fatalf("parse(%v, %v) = node %q at %q, %v; want %q at %q", c.args, c.env, f.nodeID, f.advertiseURL, err, c.id, c.adverts)
		}
		// A default no other node can reach is warned about at start.
		if want := strings.Contains(c.adverts, "0.0.0.0") || c.adverts == "http://:8080"; f.advertiseUnreachable != want {
			t.Fatalf("parse(%v): advertiseUnreachable %v, want %v", c.args, f.advertiseUnreachable, want)
		}
	}
}

// TestServeWithNodeFlags: the node id and advertised URL given as flags
// are what the cluster view shows for this node.
func TestServeWithNodeFlags(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var stderr plugintest.Logs
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"serve", "--addr", addr, "--data-dir", t.TempDir(), "--node-id", "web-7", "--advertise-url", "https://web-7.internal:8443"},
			getenvFrom(map[string]string{"MAGICADS_ADMIN_TOKEN": "node-flags-token"}), &stderr)
	}()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("exit %d after a clean shutdown:\n%s", code, stderr.String())
		}
	}()
	var body struct {
		Nodes []struct {
			ID           string `json:"id"`
			AdvertiseURL string `json:"advertise_url"`
			Self         bool   `json:"self"`
		} `json:"nodes"`
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		req, _ := http.NewRequest("GET", "http://"+addr+"/api/v1/admin/cluster", nil)
		req.Header.Set("Authorization", "Bearer node-flags-token")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if resp.StatusCode == 200 && err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the host did not answer GET /api/v1/admin/cluster:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(body.Nodes) != 1 || body.Nodes[0].ID != "web-7" || body.Nodes[0].AdvertiseURL != "https://web-7.internal:8443" || !body.Nodes[0].Self {
		t.Fatalf("cluster view %+v, want node web-7 at https://web-7.internal:8443, self", body.Nodes)
	}
}

// TestSharedResultsFlag: --shared-results (or MAGICADS_SHARED_RESULTS)
// says every node mounts the same results folder; off by default.
func TestSharedResultsFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  map[string]string
		want bool
	}{
		{nil, nil, false},
		{[]string{"--shared-results"}, nil, true},
		{[]string{"--shared-results=false"}, map[string]string{"MAGICADS_SHARED_RESULTS": "true"}, false},
		{nil, map[string]string{"MAGICADS_SHARED_RESULTS": "1"}, true},
		{nil, map[string]string{"MAGICADS_SHARED_RESULTS": "false"}, false},
	} {
		f, err := parse(c.args, getenvFrom(c.env), io.Discard)
		if err != nil || f.sharedResults != c.want {
			t.Fatalf("parse(%v, %v) = shared %v, %v; want %v", c.args, c.env, f.sharedResults, err, c.want)
		}
	}
}
