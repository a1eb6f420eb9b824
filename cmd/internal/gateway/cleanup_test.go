package gateway

import (
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// freeUDP is a loopback UDP address that was free a moment ago (freeTCP's
// counterpart).
func freeUDP(t *testing.T) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

// A New that fails at its last step (the HTTP port is taken) has already
// started the media engine, TURN, RTMP, RTSP, the recorder and the rest:
// it stops them all, so every port it bound can be bound again and no
// goroutine of it is left.
func TestFailedNewReleasesEverything(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	udp, turnUDP, rtmp, rtsp := freeUDP(t), freeUDP(t), freeTCP(t), freeTCP(t)
	cfg := Config{HTTP: taken.Addr().String(), WebRTCUDP: udp, WebRTCTCP: "off", WebRTCIPs: []string{"127.0.0.1"},
		RTMPAddr: rtmp, RTSPAddr: rtsp, HLS: true, RecordDir: t.TempDir(),
		RecorderParams: RecorderParams{SpoolDir: t.TempDir()}}
	cfg.ICE.TURNUDP = turnUDP
	cfg.TreeParams.Parents = []string{"http://127.0.0.1:9"} // starts the relay puller too
	if _, err := New(cfg, quietLog()); err == nil || !strings.Contains(err.Error(), "http") {
		t.Fatalf("New with the HTTP port taken: %v, want an error naming http", err)
	}
	for _, a := range []struct{ network, addr string }{{"udp", udp}, {"udp", turnUDP}, {"tcp", rtmp}, {"tcp", rtsp}} {
		var err error
		// A closed listener's port is free at once; allow the scheduler a moment.
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if a.network == "udp" {
				var c net.PacketConn
				if c, err = net.ListenPacket("udp", a.addr); err == nil {
					c.Close()
				}
			} else {
				var l net.Listener
				if l, err = net.Listen("tcp", a.addr); err == nil {
					l.Close()
				}
			}
			if err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			t.Errorf("%s %s still bound after the failed New: %v", a.network, a.addr, err)
		}
	}
}
