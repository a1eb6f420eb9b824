package main

import (
	"net"
	"strings"
	"testing"
)

// TestCheckCommand: livegate check reports free ports and the advertised
// address, and fails on a port another program holds and on a private
// media address while HTTP listens publicly.
func TestCheckCommand(t *testing.T) {
	free := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}
	env := func(string) string { return "" }
	var out, errOut strings.Builder
	media := free()
	code := runCheck([]string{"--http", free(), "--webrtc-udp", media, "--webrtc-ips", "127.0.0.1"}, env, &out, &errOut)
	t.Logf("\n%s", out.String())
	if code != 0 || !strings.Contains(out.String(), "media UDP (webrtc-udp) "+media+": free") ||
		!strings.Contains(out.String(), "media TCP, ICE-TCP (webrtc-tcp) "+media+": free") ||
		!strings.Contains(out.String(), "clients are told media addresses 127.0.0.1") {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	out.Reset()
	code = runCheck([]string{"--http", "0.0.0.0:0", "--webrtc-udp", "127.0.0.1:0", "--webrtc-tcp", busy.Addr().String(),
		"--webrtc-ips", "10.0.0.5"}, env, &out, &errOut)
	t.Logf("\n%s", out.String())
	if code != 1 || !strings.Contains(out.String(), "FAIL media TCP, ICE-TCP (webrtc-tcp) "+busy.Addr().String()+": cannot bind") ||
		!strings.Contains(out.String(), "FAIL media address 10.0.0.5 is private") {
		t.Fatalf("exit %d, want 1 with the busy port and the private address", code)
	}
}
