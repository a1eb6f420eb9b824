package simulcast

import (
	"testing"
	"time"

	"github.com/livegate/livegate/relay"
)

func ladder() []relay.LayerInfo {
	return []relay.LayerInfo{
		{RID: "q", Width: 320, Height: 180, Bitrate: 150_000, Active: true},
		{RID: "h", Width: 640, Height: 360, Bitrate: 500_000, Active: true},
		{RID: "f", Width: 1280, Height: 720, Bitrate: 1_500_000, Active: true, Top: true},
	}
}

// A Chromium-like receiver: its estimate follows what it receives (1.5x),
// so a viewer that went down must try the next layer up by itself, and an
// estimate that still rises after a switch up is not congestion.
func TestChooserReceiverEstimate(t *testing.T) {
	in := ladder()
	c := newChooser("")
	now := time.Unix(1000, 0)
	step := func(d time.Duration, fb Feedback, cur int) int {
		now = now.Add(d)
		c.feedback(now, fb, cur, in)
		return c.choose(now, in, cur)
	}
	if got := step(0, Feedback{Loss: -1}, -1); got != 2 {
		t.Fatalf("start: layer %d, want the top one", got)
	}
	// A 400 kbit/s link: the estimate falls below the top layer.
	step(time.Second, Feedback{Bitrate: 2_000_000, Loss: -1}, 2)
	if got := step(time.Second, Feedback{Bitrate: 400_000, Loss: -1}, 2); got != 0 {
		t.Fatalf("estimate 400 kbit/s on the top layer: layer %d, want 0 (h needs 500 kbit/s)", got)
	}
	// On q the receiver's estimate stays at 1.5x what it gets: no leave to
	// go up on the estimate, but a clean spell tries h.
	cur := 0
	for i := 0; i < 3; i++ {
		cur = step(time.Second, Feedback{Bitrate: 240_000, Loss: 0}, cur)
	}
	if cur != 1 {
		t.Fatalf("after 3 s clean on q: layer %d, want a try of h", cur)
	}
	// The estimate rises after the switch up: no congestion, it stays; f,
	// congested 4 s ago, is tried once limitTTL has passed.
	for i, b := range []float64{260_000, 300_000, 350_000} {
		if cur = step(time.Second, Feedback{Bitrate: b, Loss: 0}, cur); cur != 1 {
			t.Fatalf("rising estimate %v (%d s after the switch up): layer %d, want 1", b, i+1, cur)
		}
	}
	for b := 360_000.0; cur == 1 && b < 1_000_000; b *= 1.05 {
		cur = step(time.Second, Feedback{Bitrate: b, Loss: 0}, cur)
	}
	if cur != 2 || now.Sub(c.limitAt) < limitTTL {
		t.Fatalf("layer %d %v after the congestion on f, want a try of f after %v", cur, now.Sub(c.limitAt), limitTTL)
	}
	// The link carries 650 kbit/s: it loses packets, down again, and the
	// next try waits twice as long.
	if got := step(time.Second, Feedback{Loss: 0.2}, 2); got != 1 {
		t.Fatalf("loss on f: layer %d, want 1", got)
	}
	if c.wait != 2*probeWait {
		t.Fatalf("after a failed try the wait is %v, want %v", c.wait, 2*probeWait)
	}
	// A transport-cc style estimate that covers f with headroom takes it at once.
	now = now.Add(settle)
	if got := step(time.Second, Feedback{Bitrate: 2_000_000, Loss: 0}, 1); got != 2 {
		t.Fatalf("estimate 2 Mbit/s: layer %d, want 2", got)
	}
}

func TestChooserLossOnly(t *testing.T) {
	in := ladder()
	c := newChooser("")
	now := time.Unix(1000, 0)
	c.feedback(now, Feedback{Loss: 0.3}, 2, in)
	if got := c.choose(now, in, 2); got != 1 {
		t.Fatalf("30%% loss on f: layer %d, want 1", got)
	}
	// Reports right after the switch describe the old layer.
	c.feedback(now.Add(500*time.Millisecond), Feedback{Loss: 0.3}, 1, in)
	if got := c.choose(now, in, 1); got != 1 {
		t.Fatalf("loss report before the switch settled: layer %d, want 1", got)
	}
	// f is not tried again while the link is known not to carry it.
	c.feedback(now.Add(2500*time.Millisecond), Feedback{Loss: 0}, 1, in)
	if got := c.choose(now, in, 1); got != 1 {
		t.Fatalf("2.5 s without loss: layer %d, want 1 (f failed %v ago)", got, 2500*time.Millisecond)
	}
	at := now.Add(limitTTL)
	c.feedback(at, Feedback{Loss: 0}, 1, in)
	if got := c.choose(at, in, 1); got != 2 {
		t.Fatalf("%v without loss: layer %d, want 2", limitTTL, got)
	}
	// The try fails: the next one waits twice as long.
	at = at.Add(time.Second)
	c.feedback(at, Feedback{Loss: 0.4}, 2, in)
	if got := c.choose(at, in, 2); got != 1 || c.limitTTL != 2*limitTTL {
		t.Fatalf("failed try: layer %d, limit wait %v; want 1, %v", got, c.limitTTL, 2*limitTTL)
	}
	at = at.Add(limitTTL + time.Second)
	c.feedback(at, Feedback{Loss: 0}, 1, in)
	if got := c.choose(at, in, 1); got != 1 {
		t.Fatalf("%v after the failed try: layer %d, want 1", limitTTL, got)
	}
}

func TestChooserPinAndPausedLayers(t *testing.T) {
	in := ladder()
	for pin, want := range map[string]int{"q": 0, "low": 0, "mid": 1, "h": 1, "high": 2, "1": 1, "9": 2} {
		c := newChooser(pin)
		if got := c.choose(time.Now(), in, -1); got != want {
			t.Errorf("pin %q: layer %d, want %d", pin, got, want)
		}
	}
	in[2].Active = false
	c := newChooser("")
	if got := c.choose(time.Now(), in, 2); got != 1 {
		t.Errorf("top paused: layer %d, want 1", got)
	}
	c = newChooser("f")
	if got := c.choose(time.Now(), in, 2); got != 1 {
		t.Errorf("pinned top paused: layer %d, want the next one down", got)
	}
	for _, bad := range []string{"a b", "x/y", "\x00"} {
		if ValidPin(bad) {
			t.Errorf("ValidPin(%q)", bad)
		}
	}
}
