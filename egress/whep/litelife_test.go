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
// pion/transport not counted). Measured against the count before the
// viewers; the stream-end watcher is one per stream.
func TestLiteViewersHaveNoGoroutines(t *testing.T) {
	r := newLiteRig(t, 10*time.Second)
	r.write(true)
	before := gatewayGoroutines()
	const n = 6
	var vs []*liteViewer
	for range n {
		vs = append(vs, r.viewer())
	}
	r.waitViewers(n)
	deadline := time.Now().Add(6 * time.Second)
	var per float64
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
		per = float64(gatewayGoroutines()-before) / n
		if per <= 1.0/n || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%.2f gateway goroutines per connected viewer", per)
	if per > 1.0/n {
		t.Fatalf("%.2f gateway goroutines per connected viewer, want none beyond the stream's one watcher", per)
	}
	// The viewers still get media, and DELETE still ends one.
	vs[0].sess.Close()
	r.waitViewers(n - 1)
	r.write(true)
	for _, v := range vs[1:] {
		v.next(t, 3*time.Second)
	}
}
