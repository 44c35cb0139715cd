package auth

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// ParseTrustedProxies parses --trusted-proxies: a comma-separated list of
// CIDRs or single addresses ("10.0.0.0/8, 192.0.2.1, 2001:db8::/32").
// Empty items are skipped; the error names the first item that is neither.
func ParseTrustedProxies(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		var p netip.Prefix
		var err error
		if strings.Contains(item, "/") {
			p, err = netip.ParsePrefix(item)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(item); err == nil {
				if a.Zone() != "" {
					err = fmt.Errorf("an address with a zone cannot be matched")
				}
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q is not a CIDR or an IP address (write e.g. 10.0.0.0/8,192.0.2.1,2001:db8::/32): %w", item, err)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		if p.Bits() == 0 {
			return nil, fmt.Errorf("trusted proxy %q would trust every address, so any client could name its own address and get Secure cookies: list your proxies' addresses or CIDR networks", item)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// trusted reports whether a is one of the trusted proxies.
func (a *Auth) trusted(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, p := range a.opts.TrustedProxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// parseAddr reads an address with or without a port ("192.0.2.1",
// "192.0.2.1:80", "[2001:db8::1]:443"), dropping any zone and IPv4 mapping.
func parseAddr(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, err2 := netip.ParseAddrPort(s)
		if err2 != nil {
			return netip.Addr{}, false
		}
		a = ap.Addr()
	}
	return a.WithZone("").Unmap(), true
}

// peer is the request's peer address (RemoteAddr).
func peer(r *http.Request) (netip.Addr, bool) {
	return parseAddr(r.RemoteAddr)
}

// remoteIP is the request's peer address as text, or RemoteAddr itself
// when it is not an IP address.
func remoteIP(r *http.Request) string {
	if a, ok := peer(r); ok {
		return a.String()
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// forwardedFor is the client address a trusted proxy reported: walking
// X-Forwarded-For from the right, the first address that is not itself a
// trusted proxy (or the left-most one if all are). An entry that is not an
// address stops the walk at what was found so far.
func (a *Auth) forwardedFor(r *http.Request, from netip.Addr) netip.Addr {
	var entries []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		entries = append(entries, strings.Split(v, ",")...)
	}
	client := from
	for i := len(entries) - 1; i >= 0; i-- {
		if strings.TrimSpace(entries[i]) == "" {
			continue
		}
		addr, ok := parseAddr(entries[i])
		if !ok {
			break
		}
		client = addr
		if !a.trusted(addr) {
			break
		}
	}
	return client
}

// ClientIP returns the address of the client that sent r: the peer
// address, or, when the peer is one of Options.TrustedProxies, the
// right-most address in X-Forwarded-For that is not itself a trusted proxy.
// X-Forwarded-For from any other peer is ignored, so a client cannot choose
// its own address. Options.ClientIP, when set, replaces this.
func (a *Auth) ClientIP(r *http.Request) string {
	if a.opts.ClientIP != nil {
		return a.opts.ClientIP(r)
	}
	p, ok := peer(r)
	if !ok {
		return remoteIP(r)
	}
	if a.trusted(p) {
		p = a.forwardedFor(r, p)
	}
	return p.String()
}

// ClientKey returns the key that rate limits count r's client under: its
// ClientIP, or for an IPv6 client its /64, which one client usually owns
// whole.
func (a *Auth) ClientKey(r *http.Request) string {
	return limitKey(a.ClientIP(r))
}

// limitKey is ip's rate-limit key: an IPv4 address as is, an IPv6 address
// as its /64, anything else unchanged.
func limitKey(ip string) string {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	addr = addr.WithZone("").Unmap()
	if addr.Is6() {
		return netip.PrefixFrom(addr, 64).Masked().String()
	}
	return addr.String()
}

// secure reports whether r reached the client over HTTPS, for the cookies'
// Secure attribute: the connection is TLS, or the peer is a trusted proxy
// that does not say X-Forwarded-Proto: http. Behind a trusted proxy the
// cookies are thus Secure unless the proxy states it serves plain HTTP; a
// peer that is not trusted cannot ask for either.
func (a *Auth) secure(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	p, ok := peer(r)
	if !ok || !a.trusted(p) {
		return false
	}
	proto := r.Header.Values("X-Forwarded-Proto")
	if len(proto) == 0 {
		return true
	}
	for _, v := range proto {
		for _, s := range strings.Split(v, ",") {
			if !strings.EqualFold(strings.TrimSpace(s), "http") {
				return true
			}
		}
	}
	return false
}
