package gateway

import (
	"bytes"
	"context"
	"runtime"
	"testing"
	"time"
)

// liteDTLSReaders counts the goroutines reading a lite peer's DTLS
// connection: one per viewer whose pion/dtls Conn the transport still
// holds.
func liteDTLSReaders() int {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	return bytes.Count(buf, []byte("relay/rtc/lite.(*peerConn).ReadFrom"))
}

const dtlsStateJS = `(() => {
  const t = window.viewer.pc.getTransceivers().map(t => t.receiver.transport).find(t => t);
  return t ? t.state : 'none';
})()`

// A Chromium viewer (a plain RTCPeerConnection) whose lite peer has dropped
// its DTLS connection after the handshake still learns at once that the
// gateway ended the session: its RTCDtlsTransport goes "closed", which
// only a close_notify does (the peer seals it from the keys it kept).
func TestBrowserViewerDTLSCloseAfterRelease(t *testing.T) {
	if !inBrowserNetns(t) {
		return
	}
	g := startGateway(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	b := startBrowser(t, ctx)
	const path = "dtls/cam"
	publishClip(t, g, path)
	vctx, _ := g.startChromeViewer(t, b, path)
	leaving, _ := g.startChromeViewer(t, b, path)
	for _, c := range []context.Context{vctx, leaving} {
		waitChromeViewer(t, c, "frames in Chromium", func(s chromeViewerStats) bool {
			return s.Conn == "connected" && s.FramesDecoded > 0
		})
	}
	// The viewer's receiver reports let the transport release the DTLS
	// connection within a second or two.
	deadline := time.Now().Add(10 * time.Second)
	for liteDTLSReaders() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d lite DTLS connections still held 10 s after the viewer connected", liteDTLSReaders())
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The other viewer's pc.close() (its close_notify, opened with the
	// kept keys) ends its session at once, not when consent expires.
	st, ok := g.Hub().Get(path)
	if !ok || st.Viewers() != 2 {
		t.Fatalf("stream viewers before pc.close(): want 2")
	}
	if _, err := evalAsync[bool](leaving, `(() => { window.viewer.pc.close(); return true; })()`); err != nil {
		t.Fatal(err)
	}
	closed := time.Now()
	for st.Viewers() != 1 {
		if time.Since(closed) > 2*time.Second {
			t.Fatalf("%d stream viewers 2 s after a viewer's pc.close(), want 1", st.Viewers())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("a viewer's pc.close() ended its session in %v", time.Since(closed).Round(time.Millisecond))
	if st, err := evalAsync[string](vctx, dtlsStateJS); err != nil || st != "connected" {
		t.Fatalf("DTLS transport %q before the shutdown (%v), want connected", st, err)
	}
	// Polled while the gateway stops: Run ends the sessions after the HTTP
	// server's shutdown, which waits for the page's open connections (about
	// 3 s here), so the bound is 5 s; the state is what this checks.
	shutdown := time.Now()
	g.cancel()
	defer g.shutdown(t)
	for {
		st, err := evalAsync[string](vctx, dtlsStateJS)
		if err != nil {
			t.Fatal(err)
		}
		if st == "closed" {
			t.Logf("Chromium's DTLS transport closed %v after the shutdown began", time.Since(shutdown).Round(time.Millisecond))
			return
		}
		if time.Since(shutdown) > 5*time.Second {
			t.Fatalf("DTLS transport %q 5 s after the shutdown began, want closed (close_notify)", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
