package gateway

import (
	"testing"
	"time"
)

// waitFrames waits until v has reassembled at least n frames.
func (v *viewer) waitFrames(t *testing.T, timeout time.Duration, n int, what string) {
	t.Helper()
	waitFor(t, timeout, what, func() bool {
		f, _, _ := v.snapshot()
		return len(f) >= n
	})
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
