package web

import (
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// overviewAnswer is a GET /api/v1/admin/storage/overview answer: 2 local
// results, 1 with a local copy and 2 only in cloudflare-r2, a failed
// offload, and a paused offload.
func overviewAnswer() map[string]any {
	return map[string]any{
		"locations": map[string]any{
			"local_only": map[string]any{"results": 2, "bytes": 150},
			"providers": []any{map[string]any{"provider": "cloudflare-r2",
				"with_local_copy": map[string]any{"results": 1, "bytes": 1000},
				"provider_only":   map[string]any{"results": 2, "bytes": 7000}}},
			"reclaimed_bytes": 7000,
		},
		"jobs": map[string]any{"pending": 1, "failed": 1, "failures": []any{map[string]any{
			"id": 7, "result_id": "r1", "provider": "cloudflare-r2", "kind": "offload", "attempts": 5, "last_error": "permission denied on bucket"}}},
		"storage": map[string]any{"default": "cloudflare-r2", "options": []any{
			map[string]any{"id": "local", "name": "Local server (this machine)", "status": "ok", "listing": false},
			map[string]any{"id": "cloudflare-r2", "name": "Cloudflare R2 Storage", "status": "ok", "listing": true, "pending": 1, "failed": 1}},
			"unavailable": []any{}},
		"active_bulk": map[string]any{"id": 3, "direction": "offload", "provider": "cloudflare-r2", "state": "paused",
			"total": map[string]any{"results": 4, "bytes": 400}, "remaining": map[string]any{"results": 1, "bytes": 100}},
	}
}

// TestOverviewPage: the Storage overview renders the counts, an SVG chart
// with a bar per location, the providers with their status, listing and
// Bring back, the failed jobs with Retry, the Offload dry run, and the
// active run's progress; General Settings links to it.
func TestOverviewPage(t *testing.T) {
	api := newFakeAPI()
	api.set("/api/v1/admin/storage/overview", 200, overviewAnswer())
	api.set("/api/v1/admin/storage", 200, map[string]any{"default": "local", "options": []map[string]string{{"id": "local", "name": "Local server (this machine)"}}})
	h := New(Options{API: api})
	res, body, doc := get(t, h, "/app/admin/general/storage")
	checkLayout(t, res, doc, "overview")
	for id, want := range map[string]string{
		"count-local-only":         "2 results, 150 B",
		"count-copy-cloudflare-r2": "1 results, 1000 B",
		"count-only-cloudflare-r2": "2 results, 6.8 KiB",
		"reclaimed":                "6.8 KiB",
		"jobs-pending":             "1",
		"jobs-failed":              "1",
	} {
		if got := textOf(mustID(t, doc, id)); got != want {
			t.Errorf("#%s %q, want %q", id, got, want)
		}
	}
	chart := mustID(t, doc, "location-chart")
	rects := 0
	walk(chart, func(n *html.Node) {
		if n.Data == "rect" {
			rects++
		}
	})
	if chart.Data != "svg" || rects != 3 {
		t.Errorf("chart <%s> with %d bars, want an svg with 3", chart.Data, rects)
	}
	if strings.Contains(body, "style=") {
		t.Error("the page has a style attribute, which the CSP refuses")
	}
	if v, _ := attr(mustID(t, doc, "retry-job-7"), "data-action"); v != "retry-job" {
		t.Errorf("failed job Retry data-action %q", v)
	}
	bb := mustID(t, doc, "bring-back-cloudflare-r2")
	if v, _ := attr(bb, "data-direction"); v != "local" {
		t.Errorf("bring back data-direction %q", v)
	}
	if got := textOf(byClass(mustID(t, doc, "provider-cloudflare-r2"), "provider-listing")[0]); got != "Supported" {
		t.Errorf("listing %q", got)
	}
	if v, _ := attr(mustID(t, doc, "offload-plan"), "data-direction"); v != "offload" {
		t.Errorf("offload dry run data-direction %q", v)
	}
	if v, _ := attr(mustID(t, doc, "bulk-panel"), "data-run"); v != "3" {
		t.Errorf("bulk panel data-run %q, want the active run 3", v)
	}
	if got := textOf(mustID(t, doc, "bulk-title")); got != "Offloading to Cloudflare R2 Storage" {
		t.Errorf("run title %q", got)
	}
	if v, _ := attr(mustID(t, doc, "bulk-progress"), "value"); v != "75" {
		t.Errorf("progress value %q, want 75", v)
	}

	_, _, doc = get(t, h, StoragePath)
	if v, _ := attr(mustID(t, doc, "overview-link"), "href"); v != "/app/admin/general/storage" {
		t.Errorf("General Settings links the overview at %q", v)
	}
}

// TestUninstallSaysWhatLivesOnlyThere: the Uninstall confirmation of a
// provider that holds results only there says how many, that they keep
// serving from its public URL, that deleting them later needs the plugin,
// and offers the overview's Bring back.
func TestUninstallSaysWhatLivesOnlyThere(t *testing.T) {
	api := pluginsAPI()
	ov := overviewAnswer()
	ov["locations"].(map[string]any)["providers"] = []any{map[string]any{"provider": "s3",
		"with_local_copy": map[string]any{"results": 0, "bytes": 0},
		"provider_only":   map[string]any{"results": 5, "bytes": 500}}}
	api.set("/api/v1/admin/storage/overview", 200, ov)
	_, _, doc := get(t, New(Options{API: api}), PluginsPath)
	un := mustID(t, doc, "uninstall-s3")
	msg, _ := attr(un, "data-confirm")
	for _, want := range []string{"5 results live only in Amazon S3", "keep serving from its public URL", "deleting them later needs the plugin", "Bring them back to local first"} {
		if !strings.Contains(msg, want) {
			t.Errorf("confirmation %q does not say %q", msg, want)
		}
	}
	if v, _ := attr(un, "data-bring-back"); v != "/app/admin/general/storage#bring-back-s3" {
		t.Errorf("data-bring-back %q", v)
	}
	if v, _ := attr(mustID(t, doc, "card-bring-back-s3"), "href"); v != "/app/admin/general/storage#bring-back-s3" {
		t.Errorf("card bring back link %q", v)
	}
}
