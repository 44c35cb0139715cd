package app_test

import (
	"bufio"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/pluginrt"
	"github.com/magicads/r2storage/internal/testdb"
)

// scrape GETs /metrics from base with the bearer token (none when "") and
// returns the status and the body.
func scrape(t testing.TB, base, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/metrics", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// sample returns the value of series (a metric name with its labels in
// the exposition's order, e.g. `x_total{outcome="ok",provider="p"}`) in
// the text exposition body.
func sample(body, series string) (float64, bool) {
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
			return v, err == nil
		}
	}
	return 0, false
}

// TestMetrics: after results are offloaded and one is deleted, /metrics
// (admin token) shows the offloads, bytes, durations, the queue, where the
// results are, the plugin's state and its calls; without the token it
// answers 401.
func TestMetrics(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			h := newHost(t, d)
			if code, body := scrape(t, h.srv.URL, ""); code != http.StatusUnauthorized {
				t.Fatalf("/metrics without a token: %d, want 401\n%.300s", code, body)
			}
			if code, _ := scrape(t, h.srv.URL, "wrong-token"); code != http.StatusUnauthorized {
				t.Fatalf("/metrics with a wrong token: %d, want 401", code)
			}

			local := h.upload(pngBytes(700), "local.png") // before configuring: stays local
			h.configure()
			a := h.upload(pngBytes(1000), "a.png")
			b := h.upload(pngBytes(3000), "b.png")
			h.configure("delete_local", true)
			c := h.upload(pngBytes(5000), "c.png")
			for _, r := range []resultBody{a, b, c} {
				if r.Storage != pluginID {
					t.Fatalf("not offloaded: %+v", r)
				}
			}
			if local.Storage != "local" {
				t.Fatalf("offloaded before configuring: %+v", local)
			}
			if code := h.do("DELETE", "/api/v1/results/"+b.ID, nil, nil); code != http.StatusNoContent {
				t.Fatalf("delete: %d", code)
			}

			var body string
			want := map[string]float64{
				`magicads_offloads_total{outcome="ok",provider="cloudflare-r2"}`:                         3,
				`magicads_offloaded_bytes_total{provider="cloudflare-r2"}`:                               9000,
				`magicads_offload_duration_seconds_count{provider="cloudflare-r2"}`:                      3,
				`magicads_deletes_total{outcome="ok",provider="cloudflare-r2"}`:                          1,
				`magicads_results{location="local_only",provider="local"}`:                               1,
				`magicads_results_bytes{location="local_only",provider="local"}`:                         700,
				`magicads_results{location="provider_with_local_copy",provider="cloudflare-r2"}`:         1,
				`magicads_results_bytes{location="provider_with_local_copy",provider="cloudflare-r2"}`:   1000,
				`magicads_results{location="provider_only",provider="cloudflare-r2"}`:                    1,
				`magicads_results_bytes{location="provider_only",provider="cloudflare-r2"}`:              5000,
				`magicads_queue_jobs{kind="offload",provider="cloudflare-r2",state="pending"}`:           0,
				`magicads_queue_jobs{kind="offload",provider="cloudflare-r2",state="failed"}`:            0,
				`magicads_queue_jobs{kind="delete",provider="cloudflare-r2",state="pending"}`:            0,
				`magicads_queue_jobs{kind="delete",provider="local",state="failed"}`:                     0,
				`magicads_queue_oldest_pending_job_age_seconds{kind="offload",provider="cloudflare-r2"}`: 0,
				`magicads_plugin_state{plugin="cloudflare-r2",state="running"}`:                          1,
				`magicads_plugin_state{plugin="cloudflare-r2",state="failed"}`:                           0,
				`magicads_plugin_restarts_total{plugin="cloudflare-r2"}`:                                 0,
			}
			// The delete runs inline, but wait for its outcome rather
			// than assume it.
			deadline := time.Now().Add(20 * time.Second)
			for {
				var code int
				code, body = scrape(t, h.srv.URL, adminToken)
				if code != http.StatusOK {
					t.Fatalf("/metrics with the admin token: %d\n%.500s", code, body)
				}
				if v, _ := sample(body, `magicads_deletes_total{outcome="ok",provider="cloudflare-r2"}`); v >= 1 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the delete was not counted:\n%s", body)
				}
				time.Sleep(50 * time.Millisecond)
			}
			for series, v := range want {
				got, ok := sample(body, series)
				if !ok || got != v {
					t.Errorf("%s = %v (present %v), want %v", series, got, ok, v)
				}
			}
			for _, series := range []string{
				`magicads_plugin_rpc_duration_seconds_count{method="put",plugin="cloudflare-r2"}`,
				`magicads_plugin_rpc_duration_seconds_count{method="configure",plugin="cloudflare-r2"}`,
				`go_goroutines`,
				`process_open_fds`,
			} {
				if v, ok := sample(body, series); !ok || v <= 0 {
					t.Errorf("%s = %v (present %v), want > 0", series, v, ok)
				}
			}
			for _, leak := range []string{a.ID, c.ID, b.ID, "magicads/images/"} {
				if strings.Contains(body, leak) {
					t.Errorf("/metrics names a result (%q)", leak)
				}
			}
			if t.Failed() {
				t.Fatalf("/metrics:\n%s", body)
			}

			// A plugin that crashes and is relaunched is counted.
			st, _ := h.app.Runtime.Status(pluginID)
			killPid(t, st.Pid)
			// The metrics hear of the relaunch just after the runtime's
			// status shows it: wait on the scrape itself.
			waitFor(t, 20*time.Second, "the relaunch in /metrics", func() bool {
				_, body = scrape(t, h.srv.URL, adminToken)
				running, _ := sample(body, `magicads_plugin_state{plugin="cloudflare-r2",state="running"}`)
				restarts, _ := sample(body, `magicads_plugin_restarts_total{plugin="cloudflare-r2"}`)
				return running == 1 && restarts >= 1
			})
			if v, _ := sample(body, `magicads_plugin_restarts_total{plugin="cloudflare-r2"}`); v != 1 {
				t.Errorf("restarts after one crash: %v, want 1", v)
			}
			if now, _ := h.app.Runtime.Status(pluginID); now.State != pluginrt.StateRunning || now.Restarts != 1 {
				t.Errorf("the runtime after one crash: %+v", now)
			}
		})
	}
}
