package gateway

import (
	"context"
	"strings"
	"testing"
	"time"
)

// Both WHEP transports play a live stream to a pion viewer from a complete
// keyframe on: lite (the default, an ICE-lite answer) and the pion
// fallback (whep-transport: pion, a full ICE answer).
func TestWHEPTransports(t *testing.T) {
	for _, tc := range []struct {
		transport string
		lite      bool
	}{{"", true}, {"lite", true}, {"pion", false}} {
		t.Run("transport="+tc.transport, func(t *testing.T) {
			g := startGateway(t, func(c *Config) { c.WHEPTransport = tc.transport })
			c := loadClip(t)
			pub := g.publish(t, "room1/tr")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go play(ctx, pub, c, 0)
			v := g.view(t, "room1/tr")
			if got := strings.Contains(v.PC.RemoteDescription().SDP, "a=ice-lite"); got != tc.lite {
				t.Fatalf("answer ice-lite %v, want %v", got, tc.lite)
			}
			v.waitFrames(t, 5*time.Second, 30, "30 frames")
			f, _, _ := v.snapshot()
			if !f[0].keyframe() || !f[0].complete {
				t.Fatalf("first frame: keyframe=%v complete=%v", f[0].keyframe(), f[0].complete)
			}
			for i, fr := range f[:30] {
				if !fr.complete {
					t.Fatalf("frame %d incomplete", i)
				}
			}
		})
	}
	t.Run("transport=bogus", func(t *testing.T) {
		cfg := Config{HTTP: "127.0.0.1:0", WebRTCUDP: "127.0.0.1:0", WHEPTransport: "quic"}
		if _, err := New(cfg, quietLog()); err == nil || !strings.Contains(err.Error(), "whep-transport") {
			t.Fatalf("New with whep-transport quic: %v, want an error naming the setting", err)
		}
	})
}
