// Package media recognises the studio media the host accepts as results
// (PNG, JPEG, WebP, GIF, AVIF, MP4, WebM, QuickTime) by their leading bytes,
// never by a declared type or a file name, so nothing else (SVG, HTML,
// scripts) can be stored and served back as a result.
package media

import (
	"bytes"
	"encoding/binary"
	"mime"
	"net/http"
	"strings"
)

// SniffLen is how many leading bytes Sniff needs to decide.
const SniffLen = 512

// Accepted are the media types results may have, with the file extension
// each is stored under.
var accepted = map[string]string{
	"image/png":       "png",
	"image/jpeg":      "jpg",
	"image/webp":      "webp",
	"image/gif":       "gif",
	"image/avif":      "avif",
	"video/mp4":       "mp4",
	"video/webm":      "webm",
	"video/quicktime": "mov",
}

// aliases are other names clients use for accepted types.
var aliases = map[string]string{
	"image/jpg":   "image/jpeg",
	"image/pjpeg": "image/jpeg",
	"image/x-png": "image/png",
	"video/x-m4v": "video/mp4",
	"audio/mp4":   "video/mp4",
	"video/mov":   "video/quicktime",
}

// Types lists the accepted media types, for messages.
const Types = "image/png, image/jpeg, image/webp, image/gif, image/avif, video/mp4, video/webm, video/quicktime"

// Accepted reports whether mediaType (parameters allowed) is an accepted
// result type, under its canonical name.
func Accepted(mediaType string) (string, bool) {
	mt := Normalize(mediaType)
	_, ok := accepted[mt]
	return mt, ok
}

// Ext is the file extension results of an accepted type are stored under.
func Ext(mediaType string) string { return accepted[Normalize(mediaType)] }

// Normalize returns mediaType without parameters, lower-cased, with known
// aliases mapped to their canonical name; "" if it does not parse.
func Normalize(mediaType string) string {
	mt, _, err := mime.ParseMediaType(mediaType)
	if err != nil {
		return ""
	}
	if c, ok := aliases[mt]; ok {
		return c
	}
	return mt
}

// Sniff returns the accepted media type the content starting with head
// has, and ok=false with a description of what it looks like otherwise
// (e.g. "text/xml; charset=utf-8", "empty"). head should hold the first
// SniffLen bytes (fewer only when the content is shorter).
func Sniff(head []byte) (string, bool) {
	switch {
	case len(head) == 0:
		return "empty", false
	case bytes.HasPrefix(head, []byte("\x89PNG\r\n\x1a\n")):
		return "image/png", true
	case bytes.HasPrefix(head, []byte("\xff\xd8\xff")):
		return "image/jpeg", true
	case bytes.HasPrefix(head, []byte("GIF87a")), bytes.HasPrefix(head, []byte("GIF89a")):
		return "image/gif", true
	case len(head) >= 12 && bytes.Equal(head[:4], []byte("RIFF")) && bytes.Equal(head[8:12], []byte("WEBP")):
		return "image/webp", true
	case bytes.HasPrefix(head, []byte("\x1a\x45\xdf\xa3")):
		if isWebM(head) {
			return "video/webm", true
		}
		return "video/x-matroska (only WebM is accepted)", false
	}
	if mt, ok := sniffISOBMFF(head); ok {
		return mt, true
	}
	got := http.DetectContentType(head)
	if strings.HasPrefix(got, "text/") && looksLikeSVG(head) {
		return "image/svg+xml", false
	}
	return got, false
}

// looksLikeSVG reports whether an XML or text document has an <svg element.
func looksLikeSVG(head []byte) bool {
	return bytes.Contains(bytes.ToLower(head), []byte("<svg"))
}

// isWebM reports whether an EBML header declares the DocType "webm". The
// DocType element (ID 0x4282) sits in the header's first few dozen bytes.
func isWebM(head []byte) bool {
	i := bytes.Index(head, []byte{0x42, 0x82})
	if i < 0 || i+3 > len(head) {
		return false
	}
	size := head[i+2]
	if size&0x80 == 0 { // only the one-byte size form occurs in practice
		return false
	}
	n := int(size & 0x7f)
	return i+3+n <= len(head) && string(head[i+3:i+3+n]) == "webm"
}

// sniffISOBMFF recognises ISO base media files (MP4, QuickTime, AVIF) by
// their leading ftyp box and its brands.
func sniffISOBMFF(head []byte) (string, bool) {
	if len(head) < 16 || string(head[4:8]) != "ftyp" {
		return "", false
	}
	boxSize := int(binary.BigEndian.Uint32(head[:4]))
	if boxSize < 16 || boxSize%4 != 0 {
		return "", false
	}
	end := min(boxSize, len(head))
	brands := []string{string(head[8:12])}
	for i := 16; i+4 <= end; i += 4 {
		brands = append(brands, string(head[i:i+4]))
	}
	has := func(b ...string) bool {
		for _, x := range brands {
			for _, y := range b {
				if x == y {
					return true
				}
			}
		}
		return false
	}
	switch {
	case has("avif", "avis"):
		return "image/avif", true
	case brands[0] == "qt  ":
		return "video/quicktime", true
	case has("isom", "iso2", "iso3", "iso4", "iso5", "iso6", "mp41", "mp42", "avc1", "dash", "M4V ", "M4A ", "mmp4", "MSNV", "f4v ", "3gp4", "3gp5", "3gp6"):
		return "video/mp4", true
	case has("qt  "):
		return "video/quicktime", true
	}
	return "", false
}
