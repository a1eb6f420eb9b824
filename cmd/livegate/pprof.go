package main

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
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
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		slog.Error("LIVEGATE_PPROF: cannot listen", "err", err)
		return
	}
	// Lives as long as the process: profiling is a process-wide concern.
	go func() { _ = http.Serve(ln, mux) }()
}
