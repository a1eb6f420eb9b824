package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// Found: the pprof listener is on loopback, but a page of another site
// whose name is re-pointed at 127.0.0.1 (DNS rebinding) could read it.
func TestPprofRefusesForeignHost(t *testing.T) {
	h := pprofHandler()
	for host, want := range map[string]int{
		"127.0.0.1:6060":      http.StatusOK,
		"localhost:6060":      http.StatusOK,
		"[::1]:6060":          http.StatusOK,
		"127.0.0.1":           http.StatusOK,
		"attacker.example":    http.StatusForbidden,
		"attacker.example:60": http.StatusForbidden,
		"192.0.2.1:6060":      http.StatusForbidden,
		"":                    http.StatusForbidden,
	} {
		req := httptest.NewRequest(http.MethodGet, "/debug/pprof/", nil)
		req.Host = host
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("Host %q: %d, want %d", host, rec.Code, want)
		}
	}
}
