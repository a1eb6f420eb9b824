package main

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
)

// LIVEGATE_PPROF=127.0.0.1:6060 serves net/http/pprof on that (loopback)
// address, for profiling the gateway under load (docs/performance.md). It is
// an environment variable, not a setting: it is for whoever measures, not
// for deployments, and it is never on by default.
func init() {
	addr := os.Getenv("LIVEGATE_PPROF")
	if addr == "" {
		return
	}
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		slog.Error("LIVEGATE_PPROF must be a loopback address:port; profiling stays off", "addr", addr)
		return
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		slog.Error("LIVEGATE_PPROF: cannot listen", "err", err)
		return
	}
	// Lives as long as the process: profiling is a process-wide concern.
	go func() { _ = http.Serve(ln, pprofHandler()) }()
}

// pprofHandler serves the profiles only to requests addressed to a
// loopback host: a web page whose name an attacker re-points at 127.0.0.1
// (DNS rebinding) reaches the loopback listener with its own Host, and
// must not read heap dumps or stall the process with traces.
func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !loopbackHost(r.Host) {
			http.Error(w, "pprof answers only requests for localhost or a loopback address", http.StatusForbidden)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// loopbackHost reports whether a Host header names this machine:
// localhost or a loopback address, with or without a port.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
