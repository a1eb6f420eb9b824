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
