package whep

import (
	"bytes"
	"runtime"
	"testing"
	"time"

	"github.com/pion/rtcp"
)

// gatewayGoroutines counts the goroutines whose stacks run livegate's
// WHEP or lite transport code, or pion/dtls server code reading a lite
// peer: what a lite viewer may cost on the gateway side. The test's own
// pion clients (webrtc.PeerConnection) do not run that code.
func gatewayGoroutines() int {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte("testing.tRunner")) || bytes.Contains(g, []byte("created by github.com/pion/webrtc/")) {
			continue // the test, and its clients' track readers
		}
		if bytes.Contains(g, []byte("livegate/egress/whep.")) || bytes.Contains(g, []byte("livegate/relay/rtc/lite.")) {
			n++
		}
	}
	return n
}

// Connected lite viewers cost the gateway no goroutine of their own once
// they receive media and send their receiver reports (before issue 13's
// memory work: a session goroutine, a close_notify watcher and pion/dtls's
// read loop each, counted here; one more in pion/dtls and one in
// pion/transport not counted). Measured as the slope between 2 and 8
// viewers, so that what the transport and the stream have once (the
// sweeper, the socket reader, the stream-end watcher) does not count.
func TestLiteViewersHaveNoGoroutines(t *testing.T) {
	r := newLiteRig(t, 10*time.Second)
	r.write(true)
	var vs []*liteViewer
	// settled connects viewers up to n and returns the gateway goroutines
	// once they are all released (or after 6 s).
	settled := func(n int) int {
		for len(vs) < n {
			vs = append(vs, r.viewer())
		}
		r.waitViewers(int64(n))
		deadline := time.Now().Add(6 * time.Second)
		last := -1
		for {
			r.write(true)
			for _, v := range vs {
				v.next(t, 3*time.Second)
				// A receiver report, as browsers send every second or so
				// (these pion clients have no interceptors).
				if err := v.pc.WriteRTCP([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 1}}); err != nil {
					t.Fatal(err)
				}
			}
			g := gatewayGoroutines()
			if g == last || time.Now().After(deadline) {
				return g
			}
			last = g
			time.Sleep(1200 * time.Millisecond) // past the sweeper's tick
		}
	}
	few := settled(2)
	many := settled(8)
	per := float64(many-few) / 6
	t.Logf("gateway goroutines: %d with 2 viewers, %d with 8: %.2f per viewer", few, many, per)
	if per >= 0.5 {
		t.Fatalf("%.2f gateway goroutines per connected viewer, want none", per)
	}
	// The viewers still get media, and DELETE still ends one.
	vs[0].sess.Close()
	r.waitViewers(7)
	r.write(true)
	for _, v := range vs[1:] {
		v.next(t, 3*time.Second)
	}
}
