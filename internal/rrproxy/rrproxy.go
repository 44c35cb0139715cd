// Package rrproxy is a small round-robin HTTP reverse proxy for running
// several host nodes behind one address in demos and tests: each request
// goes to the next backend in turn; a backend that refuses the connection
// is skipped for that request (the next one is tried), as a load balancer
// with health checks would. It sets X-Forwarded-For, -Host and -Proto, and
// names the backend that answered in the BackendHeader response header.
package rrproxy

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
)

// BackendHeader names, on every answer, the backend that gave it.
const BackendHeader = "X-Rrproxy-Backend"

// Proxy is the round-robin proxy; build it with New.
type Proxy struct {
	backends []*url.URL
	next     atomic.Uint64
	rp       *httputil.ReverseProxy
	base     http.RoundTripper
}

// New returns a proxy over the backends' base URLs (http://host:port).
func New(backends ...string) (*Proxy, error) {
	if len(backends) == 0 {
		return nil, errors.New("rrproxy: no backend given")
	}
	p := &Proxy{base: http.DefaultTransport}
	for _, b := range backends {
		u, err := url.Parse(b)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, errors.New("rrproxy: backend " + b + " is not an http(s) URL")
		}
		p.backends = append(p.backends, u)
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(p.backends[0]) // the backend is chosen by RoundTrip
			r.SetXForwarded()
		},
		Transport: p,
		ModifyResponse: func(resp *http.Response) error {
			resp.Header.Set(BackendHeader, resp.Request.URL.Scheme+"://"+resp.Request.URL.Host)
			return nil
		},
	}
	return p, nil
}

// ServeHTTP proxies r to a backend (see RoundTrip).
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.rp.ServeHTTP(w, r) }

// RoundTrip sends req to the next backend in turn, or to the ones after
// it while they refuse the connection (nothing of the request reached
// them, so its body is still unread).
func (p *Proxy) RoundTrip(req *http.Request) (*http.Response, error) {
	start := p.next.Add(1) - 1
	if req.Body != nil {
		// The transport closes the body it is given even when the dial
		// fails; the original stays open for the next backend.
		defer req.Body.Close()
	}
	var err error
	for i := range p.backends {
		b := p.backends[(start+uint64(i))%uint64(len(p.backends))]
		out := req.Clone(req.Context())
		out.URL.Scheme, out.URL.Host = b.Scheme, b.Host
		if req.Body != nil {
			out.Body = io.NopCloser(req.Body)
		}
		var resp *http.Response
		resp, err = p.base.RoundTrip(out)
		if err == nil || !refused(err) {
			return resp, err
		}
	}
	return nil, err
}

// refused reports a connection the backend refused (it is down).
func refused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
