package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/magicads/r2storage/host/results"
)

// ForwardedHeader marks a content request one node forwarded to the node
// holding the result's local copy. A request that carries it is never
// forwarded again: the node answers from its own results folder, or 503.
const ForwardedHeader = "X-Magicads-Forwarded"

const (
	// forwardConnectTimeout bounds reaching the owner node (the TCP and
	// TLS handshakes) and then its first answer: a node that does not
	// answer within it counts as down.
	forwardConnectTimeout = 5 * time.Second
	// forwardTimeout bounds a whole forwarded content request, the
	// transfer of the bytes included.
	forwardTimeout = 10 * time.Minute
)

// forwardRequestHeaders are the request headers a forwarded content
// request keeps: those that select a range or make the request
// conditional. Credentials and cookies are never sent on (the content URL
// needs none).
var forwardRequestHeaders = []string{"Range", "If-Range", "If-Modified-Since", "If-Unmodified-Since", "If-None-Match", "If-Match"}

// forwardResponseHeaders are the owner's answer headers passed back.
var forwardResponseHeaders = []string{"Content-Type", "Content-Length", "Content-Range", "Content-Disposition", "Cache-Control",
	"Last-Modified", "ETag", "Accept-Ranges", "Location", "Retry-After"}

// newForwardClient is the HTTP client of forwarded content requests: it
// follows no redirect (a result offloaded meanwhile is the client's 302).
func newForwardClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           (&net.Dialer{Timeout: forwardConnectTimeout}).DialContext,
			TLSHandshakeTimeout:   forwardConnectTimeout,
			ResponseHeaderTimeout: forwardConnectTimeout,
			MaxIdleConnsPerHost:   8,
			IdleConnTimeout:       90 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// serveThroughOwner serves the content of a local result c kept in
// another node's results folder (c.OwnerNode): through that node while
// it is live, else 503 with Retry-After naming it.
func (a *API) serveThroughOwner(w http.ResponseWriter, r *http.Request, c results.Content) {
	node := c.OwnerNode
	unavailable := func(why string) {
		w.Header().Set("Retry-After", retryAfter)
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf(
			"result %s is local to host node %s, which %s; its local copy is served again when that node is back: retry shortly", c.ID, node, why))
	}
	switch {
	case r.Header.Get(ForwardedHeader) != "":
		// This node was named the owner by the node that forwarded it,
		// yet does not hold the copy: never pass it on again.
		unavailable("holds it, but the request reached another node that forwarded it here already")
		return
	case a.opts.NodeURL == nil:
		unavailable("this node cannot reach (it runs without a node directory)")
		return
	}
	ctx, cancel := a.dbContext(r)
	base, live, err := a.opts.NodeURL(ctx, node)
	cancel()
	if err != nil {
		a.opts.Logger.Warn("looking up the node that holds a result's local copy", "node", node, "result", c.ID, "error", err)
		unavailable("could not be looked up right now")
		return
	}
	if !live || base == "" {
		unavailable("is down")
		return
	}
	target, err := forwardURL(base, r.URL)
	if err != nil {
		a.opts.Logger.Warn("a node's base URL is unusable", "node", node, "error", err)
		unavailable("advertises an unusable URL (" + err.Error() + ")")
		return
	}
	fctx, fcancel := context.WithTimeout(r.Context(), forwardTimeout)
	defer fcancel()
	req, err := http.NewRequestWithContext(fctx, r.Method, target, nil)
	if err != nil {
		unavailable("advertises an unusable URL")
		return
	}
	for _, h := range forwardRequestHeaders {
		if v := r.Header.Values(h); len(v) > 0 {
			req.Header[h] = v
		}
	}
	req.Header.Set(ForwardedHeader, "1")
	resp, err := a.forward.Do(req)
	if err != nil {
		a.opts.Logger.Warn("forwarding a result's content to the node that holds it", "node", node, "result", c.ID, "error", err)
		unavailable("did not answer")
		return
	}
	defer resp.Body.Close()
	for _, h := range forwardResponseHeaders {
		if v := resp.Header.Values(h); len(v) > 0 {
			w.Header()[h] = v
		}
	}
	w.WriteHeader(resp.StatusCode)
	if r.Method == http.MethodHead {
		return
	}
	dw := &deadlineWriter{ResponseWriter: w, rc: http.NewResponseController(w), window: a.limits.RateWindow}
	if _, err := io.Copy(dw, resp.Body); err != nil && !errors.Is(err, context.Canceled) {
		a.opts.Logger.Warn("forwarding a result's content: the transfer was cut", "node", node, "result", c.ID, "error", err)
	}
}

// forwardURL is base (a node's base URL) joined with the path and query
// of the request u.
func forwardURL(base string, u *url.URL) (string, error) {
	b, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	if (b.Scheme != "http" && b.Scheme != "https") || b.Host == "" {
		return "", fmt.Errorf("%q is not an http(s) URL", base)
	}
	b.Path = strings.TrimSuffix(b.Path, "/") + u.Path
	b.RawPath = ""
	if u.RawPath != "" {
		b.RawPath = strings.TrimSuffix(b.EscapedPath(), "/") + u.RawPath
	}
	b.RawQuery, b.Fragment = u.RawQuery, ""
	return b.String(), nil
}
