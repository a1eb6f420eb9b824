package simulcast

import (
	"testing"
	"time"
)

// With a Prober, a viewer held below the top layer moves up only after a
// probe at the next layer's bitrate says the link carries it; failed probes
// double the wait before the next one, without moving the viewer.
func TestChooserProbesBeforeMovingUp(t *testing.T) {
	in := ladder()
	c := newChooser("")
	c.probing = true
	now := time.Unix(1000, 0)
	step := func(d time.Duration, fb Feedback, cur int) int {
		now = now.Add(d)
		c.feedback(now, fb, cur, in)
		return c.choose(now, in, cur)
	}
	// A send-side overuse report on f: what the link carried, 400 kbit/s.
	cur := step(time.Second, Feedback{Bitrate: 400_000, Loss: 0.3, Overuse: true}, 2)
	if cur != 0 {
		t.Fatalf("overuse at 400 kbit/s on f: layer %d, want q (h needs 500 kbit/s)", cur)
	}
	// Clean on q: after the clean spell a probe of h is asked for, at h's
	// bitrate with headroom; the viewer stays until it is judged.
	var rate float64
	for i := 0; i < 12 && rate == 0; i++ {
		cur = step(250*time.Millisecond, Feedback{Loss: 0}, cur)
		rate = c.takeProbe()
	}
	if want := 500_000 * upHeadroom; rate != want || cur != 0 {
		t.Fatalf("probe rate %v on layer %d, want %v on q", rate, cur, want)
	}
	// The probe fails: no move, and the next probe waits twice as long.
	wait := c.wait
	if cur = step(100*time.Millisecond, Feedback{Probe: ProbeFailed, Bitrate: 410_000, Loss: -1}, cur); cur != 0 {
		t.Fatalf("failed probe: layer %d, want q", cur)
	}
	if c.wait != 2*wait {
		t.Fatalf("wait after a failed probe %v, want %v", c.wait, 2*wait)
	}
	// Loss right after the probe is the probe's own: no move down either.
	for i := 0; i < 4; i++ {
		if step(250*time.Millisecond, Feedback{Loss: 0.2}, 1); c.cap != 0 {
			t.Fatalf("loss right after a probe changed the cap to %d", c.cap)
		}
	}
	asked := time.Duration(0)
	start := now
	for asked == 0 && now.Sub(start) < time.Minute {
		step(250*time.Millisecond, Feedback{Loss: 0}, cur)
		if c.takeProbe() > 0 {
			asked = now.Sub(start)
		}
	}
	if asked < 2*wait-time.Second || asked > 2*wait+time.Second {
		t.Fatalf("next probe after %v, want about %v", asked, 2*wait)
	}
	// This one carries: up to h, and from there probes (not tries) of f,
	// although f was congested a moment ago (a probe is cheap).
	if cur = step(100*time.Millisecond, Feedback{Probe: ProbeCarried, Bitrate: 700_000, Loss: -1}, cur); cur != 1 {
		t.Fatalf("carried probe: layer %d, want h", cur)
	}
	rate = 0
	for i := 0; i < 400 && rate == 0; i++ {
		step(250*time.Millisecond, Feedback{Loss: 0}, cur)
		rate = c.takeProbe()
	}
	if want := 1_500_000 * upHeadroom; rate != want || c.choose(now, in, cur) != 1 {
		t.Fatalf("probe of f: rate %v, want %v, staying on h meanwhile", rate, want)
	}
	// No outcome comes (feedback lost): after probeTimeout it counts as
	// failed, and the viewer stays.
	if cur = step(probeTimeout+time.Millisecond, Feedback{Loss: 0}, cur); cur != 1 || c.probeTo >= 0 {
		t.Fatalf("probe without an outcome: layer %d, probe out for %d", cur, c.probeTo)
	}
}

// A transport that cannot start a probe gets the try without one.
func TestChooserCannotProbe(t *testing.T) {
	in := ladder()
	c := newChooser("")
	c.probing = true
	now := time.Unix(1000, 0)
	c.feedback(now, Feedback{Loss: 0.5}, 2, in)
	for i := 0; i < 20 && c.askProbe == 0; i++ {
		now = now.Add(250 * time.Millisecond)
		c.feedback(now, Feedback{Loss: 0}, 1, in)
	}
	if c.takeProbe() == 0 {
		t.Fatal("no probe asked for")
	}
	c.cannotProbe(now, len(in))
	if got := c.choose(now, in, 1); got != 2 {
		t.Fatalf("layer %d, want a try of f", got)
	}
}

// A viewer whose link is known from its previous session starts on the
// layer that estimate covers, and one without an estimate on the top.
func TestChooserStartsOnKnownEstimate(t *testing.T) {
	in := ladder()
	now := time.Unix(1000, 0)
	for _, tc := range []struct {
		start float64
		want  int
	}{{0, 2}, {400_000, 0}, {600_000, 1}, {5_000_000, 2}} {
		c := newChooser("")
		c.start = tc.start
		if got := c.choose(now, in, -1); got != tc.want {
			t.Errorf("start estimate %v: layer %d, want %d", tc.start, got, tc.want)
		}
	}
	// Layers not measured yet: the top one until they are.
	c := newChooser("")
	c.start = 400_000
	unmeasured := ladder()
	for i := range unmeasured {
		unmeasured[i].Bitrate = 0
	}
	if got := c.choose(now, unmeasured, -1); got != 2 {
		t.Fatalf("unmeasured layers: layer %d, want the top one", got)
	}
	if got := c.choose(now, in, 2); got != 0 {
		t.Fatalf("once measured: layer %d, want q", got)
	}
	// What is remembered: a send-side measurement that held the viewer
	// below the top; nothing after a session on the top layer.
	if got := c.remembered(); got != 400_000 {
		t.Fatalf("remembered %v, want 400000", got)
	}
	if fresh := newChooser(""); fresh.remembered() != 0 {
		t.Fatal("remembered an estimate of a viewer on the top layer")
	}
}

// A receiver's estimate that covers a higher layer asks for a probe of it
// at once (no clean spell); a move a probe approved that then loses is no
// blind try: the layer is probed again after the (doubled) wait, not held
// back for limitTTL.
func TestChooserProbesOnReceiverEstimate(t *testing.T) {
	in := ladder()
	c := newChooser("")
	c.probing = true
	now := time.Unix(1000, 0)
	step := func(d time.Duration, fb Feedback, cur int) int {
		now = now.Add(d)
		c.feedback(now, fb, cur, in)
		return c.choose(now, in, cur)
	}
	step(0, Feedback{Bitrate: 2_000_000, Loss: -1}, 2)
	cur := step(time.Second, Feedback{Bitrate: 200_000, Loss: -1}, 2)
	if cur != 0 {
		t.Fatalf("estimate 200 kbit/s on f: layer %d, want q", cur)
	}
	step(settle, Feedback{Bitrate: 200_000, Loss: -1}, cur)
	if c.takeProbe() != 0 {
		t.Fatal("a probe before the estimate covered a higher layer")
	}
	step(100*time.Millisecond, Feedback{Bitrate: 20_000_000, Loss: -1}, cur)
	if got, want := c.takeProbe(), 1_500_000*upHeadroom; got != want {
		t.Fatalf("estimate 20 Mbit/s on q: probe at %v, want one of f at %v", got, want)
	}
	if cur = step(300*time.Millisecond, Feedback{Probe: ProbeCarried, Bitrate: 1_900_000, Loss: -1}, cur); cur != 2 {
		t.Fatalf("carried probe of f: layer %d, want f", cur)
	}
	// f loses right away: down, and probed again after the doubled wait.
	wait := c.wait
	if cur = step(time.Second, Feedback{Loss: 0.3}, cur); cur != 1 {
		t.Fatalf("30 %% loss on f: layer %d, want h", cur)
	}
	start := now
	var asked time.Duration
	for asked == 0 && now.Sub(start) < time.Minute {
		step(250*time.Millisecond, Feedback{Loss: 0}, cur)
		if c.takeProbe() > 0 {
			asked = now.Sub(start)
		}
	}
	if asked == 0 || asked > 2*wait+time.Second || asked >= limitTTL {
		t.Fatalf("probe of f again after %v, want about %v (not the %v limit)", asked, 2*wait, limitTTL)
	}
}

// Loss while the new layer's first keyframe drains is the keyframe's: the
// viewer stays for switchGrace after a switch took effect, then loss
// counts again.
func TestChooserGraceAfterSwitch(t *testing.T) {
	in := ladder()
	c := newChooser("")
	now := time.Unix(1000, 0)
	c.switched(now)
	for d := 250 * time.Millisecond; d < switchGrace; d += 250 * time.Millisecond {
		c.feedback(now.Add(d), Feedback{Loss: 0.3}, 2, in)
		if got := c.choose(now.Add(d), in, 2); got != 2 {
			t.Fatalf("30 %% loss %v after the switch: layer %d, want f still", d, got)
		}
	}
	c.feedback(now.Add(switchGrace), Feedback{Loss: 0.3}, 2, in)
	if got := c.choose(now.Add(switchGrace), in, 2); got != 1 {
		t.Fatalf("30 %% loss after the grace: layer %d, want h", got)
	}
}

// Failed probes back off exponentially, to maxProbeBackoff.
func TestChooserProbeBackoff(t *testing.T) {
	in := ladder()
	c := newChooser("")
	c.probing = true
	now := time.Unix(1000, 0)
	c.feedback(now, Feedback{Loss: 0.5}, 2, in)
	var gaps []time.Duration
	last := now
	for len(gaps) < 6 {
		now = now.Add(250 * time.Millisecond)
		c.feedback(now, Feedback{Loss: 0}, 1, in)
		if c.takeProbe() > 0 {
			gaps = append(gaps, now.Sub(last).Round(time.Second))
			c.feedback(now, Feedback{Probe: ProbeFailed, Loss: -1}, 1, in)
			last = now
		}
	}
	want := []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, maxProbeBackoff, maxProbeBackoff, maxProbeBackoff}
	for i := range want {
		if gaps[i] != want[i] {
			t.Fatalf("gaps between failed probes %v, want %v", gaps, want)
		}
	}
}
