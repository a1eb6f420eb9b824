package main

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
)

func fakeLookup(ctx context.Context, host string) ([]net.IPAddr, error) {
	m := map[string][]string{
		"localhost":      {"127.0.0.1", "::1"},
		"gw.local":       {"127.0.1.1"},
		"example.com":    {"93.184.216.34"},
		"mixed.test":     {"127.0.0.1", "10.0.0.7"},
		"rebind.test":    {"::ffff:192.168.1.1"},
		"empty.test":     {},
		"v6private.test": {"fd00::1"},
	}
	ips, ok := m[host]
	if !ok {
		return nil, errors.New("no such host")
	}
	var out []net.IPAddr
	for _, s := range ips {
		out = append(out, net.IPAddr{IP: net.ParseIP(s)})
	}
	return out, nil
}

func TestCheckLoopbackURL(t *testing.T) {
	ok := []string{
		"http://127.0.0.1:8080", "http://127.9.8.7", "http://[::1]:8080/", "https://localhost:8443",
		"http://gw.local:18080", "http://[::ffff:127.0.0.1]:80",
	}
	for _, u := range ok {
		if _, err := checkLoopbackURL(context.Background(), u, fakeLookup); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	bad := map[string]string{
		"http://10.0.0.1:8080":      "non-loopback",
		"http://0.0.0.0:8080":       "non-loopback",
		"http://[::]:8080":          "non-loopback",
		"http://[fe80::1%25lo]:80":  "non-loopback",
		"http://example.com":        "non-loopback",
		"http://mixed.test":         "non-loopback",
		"http://rebind.test":        "non-loopback",
		"http://v6private.test":     "non-loopback",
		"http://empty.test":         "no address",
		"http://unknown.test":       "resolve",
		"ftp://127.0.0.1":           "scheme",
		"127.0.0.1:8080":            "", // parses oddly; must not pass
		"http://":                   "no host",
		"http://192.168.1.10:18080": "non-loopback",
	}
	for u, want := range bad {
		_, err := checkLoopbackURL(context.Background(), u, fakeLookup)
		if err == nil {
			t.Errorf("%s: accepted", u)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %q, want it to mention %q", u, err, want)
		}
	}
}

func TestDialLoopbackOnly(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:80": true, "[::1]:443": true, "127.0.0.53:53": true,
		"10.1.2.3:80": false, "[2001:db8::1]:80": false, "0.0.0.0:80": false, "nonsense": false,
	} {
		if err := dialLoopbackOnly("tcp", addr, nil); (err == nil) != ok {
			t.Errorf("%s: err %v, want allowed %v", addr, err, ok)
		}
	}
}
