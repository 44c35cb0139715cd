package media

import (
	"strings"
	"testing"
)

func TestSniff(t *testing.T) {
	accepted := map[string]string{
		"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR":                      "image/png",
		"\xff\xd8\xff\xe0\x00\x10JFIF":                             "image/jpeg",
		"GIF87a....":                                               "image/gif",
		"GIF89a....":                                               "image/gif",
		"RIFF\x24\x00\x00\x00WEBPVP8 ":                             "image/webp",
		"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf":     "image/avif",
		"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1avifmiaf":     "image/avif",
		"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2":         "video/mp4",
		"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom":         "video/mp4",
		"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  ":             "video/quicktime",
		"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm\x00": "video/webm",
	}
	for head, want := range accepted {
		if got, ok := Sniff([]byte(head)); !ok || got != want {
			t.Errorf("Sniff(%q) = %q, %v; want %q", head, got, ok, want)
		}
	}
	refused := map[string]string{
		"": "empty",
		`<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>`: "image/svg+xml",
		`<?xml version="1.0"?><svg/>`:                      "image/svg+xml",
		"<!doctype html><script>x</script>":                "text/html; charset=utf-8",
		"%PDF-1.7":                                         "application/pdf",
		"\x1a\x45\xdf\xa3\x9f\x42\x82\x88matroska":         "video/x-matroska (only WebM is accepted)",
		"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00heicmif1": "application/octet-stream",
		"\x00\x00\x00\x07ftypisom":                         "application/octet-stream",
		"RIFF\x24\x00\x00\x00WAVEfmt ":                     "audio/wave",
	}
	for head, want := range refused {
		if got, ok := Sniff([]byte(head)); ok || got != want {
			t.Errorf("Sniff(%q) = %q, %v; want refused as %q", head, got, ok, want)
		}
	}
}

func TestAcceptedAndAliases(t *testing.T) {
	for in, want := range map[string]string{"image/PNG": "image/png", "image/jpg": "image/jpeg", "video/mp4; codecs=avc1": "video/mp4", "video/mov": "video/quicktime"} {
		if got, ok := Accepted(in); !ok || got != want {
			t.Errorf("Accepted(%q) = %q, %v", in, got, ok)
		}
	}
	for _, in := range []string{"image/svg+xml", "text/html", "application/xhtml+xml", "", "not a type"} {
		if _, ok := Accepted(in); ok {
			t.Errorf("Accepted(%q) = true", in)
		}
	}
	for _, mt := range strings.Split(Types, ", ") {
		if Ext(mt) == "" {
			t.Errorf("no extension for %s", mt)
		}
	}
}

// FuzzSniff: Sniff never panics, and whatever it accepts has an extension.
func FuzzSniff(f *testing.F) {
	f.Add([]byte("\x89PNG\r\n\x1a\n"))
	f.Add([]byte("\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"))
	f.Add([]byte("\x1a\x45\xdf\xa3\x42\x82\x84webm"))
	f.Fuzz(func(t *testing.T, head []byte) {
		if mt, ok := Sniff(head); ok && Ext(mt) == "" {
			t.Fatalf("accepted %q as %s, which has no extension", head, mt)
		}
	})
}
