package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// lookupFunc resolves a host name, like net.Resolver.LookupIPAddr.
type lookupFunc func(ctx context.Context, host string) ([]net.IPAddr, error)

// checkLoopbackURL parses the gateway base URL and refuses it unless its
// host is, or resolves only to, loopback addresses: the tool generates
// real load and must never be pointed at another machine.
func checkLoopbackURL(ctx context.Context, raw string, lookup lookupFunc) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("--url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("--url %q: scheme must be http or https", raw)
	}
	host := u.Hostname()
	if host == "" {
		return nil, fmt.Errorf("--url %q: no host", raw)
	}
	if ip := parseIP(host); ip != nil {
		if !ip.IsLoopback() {
			return nil, fmt.Errorf("refusing non-loopback target %s: livegate-bench only loads a gateway on this machine", host)
		}
		return u, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := lookup(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("--url: resolve %s: %w", host, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("--url: %s resolves to no address", host)
	}
	for _, a := range addrs {
		if !a.IP.IsLoopback() {
			return nil, fmt.Errorf("refusing target %s: it resolves to non-loopback %s; livegate-bench only loads a gateway on this machine", host, a.IP)
		}
	}
	return u, nil
}

// parseIP parses an IP literal, with or without an IPv6 zone.
func parseIP(s string) net.IP {
	if i := strings.IndexByte(s, '%'); i >= 0 {
		s = s[:i]
	}
	return net.ParseIP(s)
}

// dialLoopbackOnly is a net.Dialer Control function that refuses every
// connection to a non-loopback address, so that redirects, session
// resources (Location) and proxies cannot take requests off the machine.
func dialLoopbackOnly(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	if ip := parseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("refusing connection to non-loopback %s", address)
	}
	return nil
}

// newTransport is the HTTP transport shared by every session: loopback
// only, no proxy from the environment, enough idle connections for a ramp.
func newTransport() *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second, Control: dialLoopbackOnly}
	return &http.Transport{
		Proxy:               nil,
		DialContext:         d.DialContext,
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 512,
		IdleConnTimeout:     30 * time.Second,
	}
}
