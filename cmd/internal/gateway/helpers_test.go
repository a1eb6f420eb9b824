package gateway

import (
	"testing"
	"time"
)

// Waits the gateway tests share, and the liveHost start of browser tests.

// waitFrames waits until v has reassembled at least n frames.
func (v *viewer) waitFrames(t *testing.T, timeout time.Duration, n int, what string) {
	t.Helper()
	waitFor(t, timeout, what, func() bool {
		f, _, _ := v.snapshot()
		return len(f) >= n
	})
}

// waitReaders waits until path on g has n readers (viewers attached).
func waitReaders(t *testing.T, g *testGateway, path string, n int64) {
	t.Helper()
	st, ok := g.Hub().Get(path)
	if !ok {
		t.Fatalf("%s is not published", path)
	}
	waitFor(t, 5*time.Second, "viewers attached", func() bool { return st.Stats().Readers == n })
}

// waitStreamLive waits until path has a live publisher on g.
func (g *testGateway) waitStreamLive(t *testing.T, timeout time.Duration, path string) {
	t.Helper()
	waitFor(t, timeout, path+" live", func() bool {
		st, ok := g.Hub().Get(path)
		return ok && st.Live()
	})
}

// shutdown stops g as a signal does and fails the test unless Run returns
// cleanly within 5 s.
func (g *testGateway) shutdown(t *testing.T) {
	t.Helper()
	g.cancel()
	select {
	case err := <-g.done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		g.done <- nil // for the cleanup's stop
	case <-time.After(5 * time.Second):
		t.Fatal("gateway did not stop within 5 s")
	}
}

// liveHost starts a gateway (with mutate) and a Chromium host publishing
// path with o, and waits until the host is live.
func liveHost(t *testing.T, b *browser, mutate func(*Config), path string, o chromeHostOpts) (*testGateway, *chromeHost) {
	t.Helper()
	g := startGateway(t, mutate)
	h := g.startChromeHost(t, b, path, o)
	h.waitLive(t, 20*time.Second)
	return g, h
}
