package simulcast

import (
	"strconv"
	"strings"
	"time"

	"github.com/livegate/livegate/relay"
)

// Feedback is what a viewer's transport learned about the viewer's
// reception. Whichever transport serves the viewer (pion or the lite
// transport) pushes it to the viewer's Switcher as RTCP arrives.
type Feedback struct {
	// Bitrate is the viewer's available bitrate in bits per second (its
	// REMB, or a send-side estimate from transport-cc); 0 if not known.
	Bitrate float64
	// Loss is the fraction of packets lost since the viewer's previous
	// receiver report, 0 to 1; negative if this feedback has none.
	Loss float64
	// Overuse: a send-side estimator saw the link carry less than was
	// sent (loss, or a standing queue); Bitrate is what it carried.
	Overuse bool
	// Probe is the outcome of a probe the Switcher asked its Prober for;
	// Bitrate is then what the link delivered during the probe.
	Probe ProbeResult
}

// ProbeResult is the outcome of a probe.
type ProbeResult uint8

// Probe results.
const (
	NoProbe      ProbeResult = iota // the feedback is no probe's
	ProbeCarried                    // the link carried the probe's rate
	ProbeFailed                     // it did not
)

// Prober is a viewer transport that can test whether the viewer's link
// carries a higher bitrate (padding for a moment, judged by transport-cc
// feedback) before the viewer is moved to a layer that sends it.
type Prober interface {
	// CanProbe reports whether probes are possible for this viewer.
	CanProbe() bool
	// Probe starts one so that the viewer receives about rate bits per
	// second in all; false if it cannot now. The outcome comes as Feedback
	// with Probe set.
	Probe(rate float64) bool
}

// Policy. A receiver's estimate (REMB) cannot say how much more its link
// would carry: Chromium caps it at 1.5 times what it receives, and keeps it
// unchanged for long stretches while it receives less (seen: the same value
// for a minute), and the layers of a browser's ladder are 3 to 4 times
// apart. So an estimate is taken as a sign of congestion only when it falls
// below the bitrate of the layer the viewer gets, and as leave to move up
// when it covers a higher layer with headroom; loss (receiver reports, and
// the share of packets the viewer NACKs) takes the viewer down a layer;
// otherwise a viewer that went down tries the next layer up after a clean
// spell, not a layer as high as one it was congested on lately.
const (
	upHeadroom   = 1.25 // estimate / layer bitrate to move up on the estimate alone
	keepHeadroom = 1.0  // a falling estimate below this is too little for the current layer
	estimateTTL  = 5 * time.Second
	// estimateFall: an estimate this much below the last is congestion.
	estimateFall = 0.95

	lossDown  = 0.10 // loss above this takes the viewer one layer down
	lossClear = 0.02 // loss above this is no clean spell
	// probeWait is the first clean spell before trying a layer up after
	// congestion; it doubles (up to maxProbeWait) each time a try ends in
	// congestion within probeFail, so a viewer whose link cannot carry a
	// layer does not lose packets every few seconds trying it.
	probeWait    = 2 * time.Second
	maxProbeWait = 30 * time.Second
	probeFail    = 5 * time.Second
	// limitTTL: after congestion on a layer, it and the layers above are
	// not tried for this long (a try of a layer the link cannot carry loses
	// about a second of its packets); it doubles, up to maxLimitTTL, each
	// time such a try fails again, and starts over when one succeeds.
	limitTTL    = 20 * time.Second
	maxLimitTTL = 300 * time.Second
	// settle: feedback right after a switch down still describes the layer
	// the viewer left.
	settle = 1500 * time.Millisecond
	// switchGrace: a switch starts the new layer with a keyframe, often the
	// largest burst the viewer's link sees (a 640x360 one is 15-30 KB: half
	// a second of a 400 kbit/s link, more than its queue may hold). Loss
	// and queueing while it drains are the keyframe's, not news that the
	// layer does not fit (acting on them took viewers a layer too far down
	// on the test's slow link).
	switchGrace = 1500 * time.Millisecond

	// With a Prober, a try up is a probe at the next layer's bitrate times
	// upHeadroom first; the viewer moves only if the link carried it. A
	// failed probe costs a packet or two, not a second of them, so the
	// limit above does not hold probes back (only a move up that failed
	// after a probe said yes does); failed probes double the clean spell
	// (probeWait, up to maxProbeWait) as failed tries do.
	probeTimeout = 3 * time.Second
	// maxProbeBackoff caps the wait after failed probes, lower than after
	// failed tries: a failed probe cost no media packet in the slow-link
	// test, and a link that clears is found within this.
	maxProbeBackoff = 15 * time.Second
	// probeQuiet: loss while a probe is out and right after one failed is
	// the probe's own (it filled the queue for a moment), not news about
	// the link.
	probeQuiet = 1500 * time.Millisecond
)

// chooser decides which layer one viewer should get. Layers are given
// lowest first (relay.Track.Layers); choices are indexes into them.
type chooser struct {
	pin string // ?layer=: a rid, low, mid, high or an index from 0 (lowest)

	estimate   float64
	estimateAt time.Time

	cap       int // highest layer the viewer's link allows, -1: no limit known
	goodSince time.Time
	wait      time.Duration // clean spell before the next try up
	lastUp    time.Time     // last try up
	limitIdx  int           // the layer congestion was seen on; -1: none
	limitAt   time.Time
	limitTTL  time.Duration
	settleTo  time.Time
	lastLoss  float64
	limitTry  bool // the limit comes from a move up that failed

	probing   bool      // the viewer's transport probes before a move up
	probeTo   int       // layer a probe is out for; -1: none
	probeAt   time.Time // when it was asked for (zero: none yet)
	askProbe  float64   // rate of a probe to start (the Switcher takes it)
	nextProbe time.Time // no probe on a receiver's estimate before this
	probedUp  time.Time // last move up a probe approved
	quietTo   time.Time // loss before this is a failed probe's own
	measured  bool      // estimate is from the send side (overuse or probe)
	// start is a known estimate for a new viewer (see startCap); 0: none.
	start float64
}

func newChooser(pin string) chooser {
	return chooser{pin: pin, cap: -1, wait: probeWait, limitIdx: -1, probeTo: -1}
}

// pinIndex resolves a pinned layer among n layers (-1 if it names none).
func pinIndex(pin string, infos []relay.LayerInfo) int {
	n := len(infos)
	if pin == "" || n == 0 {
		return -1
	}
	for i, in := range infos {
		if in.RID == pin {
			return i
		}
	}
	switch strings.ToLower(pin) {
	case "low", "lowest":
		return 0
	case "mid", "medium", "middle":
		return n / 2
	case "high", "highest", "top":
		return n - 1
	}
	if i, err := strconv.Atoi(pin); err == nil && i >= 0 {
		return min(i, n-1)
	}
	return -1
}

// ValidPin reports whether pin is a layer request Switcher understands:
// a rid (any token), low, mid, high or an index.
func ValidPin(pin string) bool {
	if pin == "" || len(pin) > 255 {
		return pin == ""
	}
	for _, c := range pin {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// fit is the highest layer an estimate covers (0 if none): with
// keepHeadroom for the current layer and those below, upHeadroom above.
func fit(infos []relay.LayerInfo, estimate float64, cur int) int {
	f := 0
	for i, in := range infos {
		need := upHeadroom
		if i <= cur {
			need = keepHeadroom
		}
		if b := float64(in.Bitrate); b == 0 || b*need <= estimate {
			f = i
		}
	}
	return f
}

// congested lowers the cap to at most to; from is the layer the viewer
// had when the congestion showed.
func (c *chooser) congested(now time.Time, to, from int) {
	if from > to {
		switch {
		case c.limitTTL == 0:
			c.limitTTL = limitTTL
		case !c.lastUp.IsZero() && now.Sub(c.lastUp) < probeFail:
			c.limitTTL = min(2*c.limitTTL, maxLimitTTL) // a try failed again
		}
		c.limitIdx, c.limitAt = from, now
		c.limitTry = !c.lastUp.IsZero() && now.Sub(c.lastUp) < probeFail
	}
	if !c.probedUp.IsZero() && now.Sub(c.probedUp) < probeFail {
		// A probe said yes and the layer did not hold: probe less often.
		// (Not a blind try: the limit above stays as it was.)
		c.wait = min(2*c.wait, maxProbeWait)
		c.nextProbe, c.probedUp = now.Add(c.wait), time.Time{}
	}
	to = max(to, 0)
	if c.cap < 0 || to < c.cap {
		c.cap = to
	}
	c.settleTo = now.Add(settle)
	if !c.lastUp.IsZero() && now.Sub(c.lastUp) < probeFail {
		c.wait = min(2*c.wait, maxProbeWait)
		c.lastUp = time.Time{}
	}
	c.goodSince = now
}

// feedback takes a viewer's report; cur is the layer it gets now.
func (c *chooser) feedback(now time.Time, fb Feedback, cur int, infos []relay.LayerInfo) {
	if cur < 0 || cur >= len(infos) {
		cur = -1
	}
	settled := !now.Before(c.settleTo)
	quiet := c.probeTo >= 0 || now.Before(c.quietTo)
	if c.probeTo >= 0 && now.Sub(c.probeAt) > probeTimeout {
		fb.Probe = ProbeFailed // no outcome came: as good as failed
	}
	switch {
	case fb.Probe != NoProbe:
		c.probed(now, fb, len(infos))
		return
	case fb.Overuse:
		if fb.Bitrate > 0 {
			c.estimate, c.estimateAt, c.measured = fb.Bitrate, now, true
		}
		if cur > 0 && settled && !quiet {
			to := cur - 1
			if fb.Bitrate > 0 {
				to = min(to, fit(infos, fb.Bitrate, cur))
			}
			c.congested(now, to, cur)
		}
		fb.Bitrate = 0 // not a receiver's estimate
	}
	if settled && quiet {
		settled = false
	}
	if fb.Bitrate > 0 {
		prev := c.estimate
		if prev > 0 && now.Sub(c.estimateAt) > estimateTTL {
			prev = 0
		}
		c.estimate, c.estimateAt = fb.Bitrate, now
		falling := prev > 0 && fb.Bitrate < prev*estimateFall
		if cur >= 0 && settled {
			b := float64(infos[cur].Bitrate)
			if b > 0 && fb.Bitrate < b*keepHeadroom && falling {
				c.congested(now, fit(infos, fb.Bitrate, cur), cur)
			} else if c.cap >= 0 {
				if f := fit(infos, fb.Bitrate, cur); f > c.cap {
					if c.probing {
						// The receiver says its link carries more: see.
						c.askFor(now, f, infos)
					} else {
						c.raise(f, len(infos))
					}
				}
			}
		}
	}
	if fb.Loss >= 0 && cur >= 0 {
		c.lastLoss = fb.Loss
		if settled {
			switch {
			case fb.Loss > lossDown:
				if cur > 0 {
					c.congested(now, cur-1, cur)
				}
			case fb.Loss > lossClear:
				c.goodSince = now
			}
		}
	}
	// A clean spell: try the next layer up (with a Prober: probe it).
	if c.cap >= 0 && cur >= c.cap && c.probeTo < 0 && !c.goodSince.IsZero() && now.Sub(c.goodSince) >= c.wait && !c.limited(now, infos, c.cap+1) {
		if next := c.cap + 1; c.probing {
			c.askFor(now, next, infos)
		} else {
			c.raise(next, len(infos))
			// The receiver's estimate starts following the new layer now.
			c.lastUp, c.goodSince = now, now
		}
	}
	if c.cap < 0 && !c.lastUp.IsZero() && now.Sub(c.lastUp) > 4*probeFail {
		// A long clean run on the top layer: forget the failed tries.
		c.wait, c.limitIdx, c.limitTTL = probeWait, -1, 0
	}
}

// limited reports whether layer i sends about as much as a layer the
// viewer's link could not carry lately.
func (c *chooser) limited(now time.Time, infos []relay.LayerInfo, i int) bool {
	if c.limitIdx < 0 || now.Sub(c.limitAt) >= c.limitTTL || i < 0 || i >= len(infos) {
		return false
	}
	if c.probing && !c.limitTry {
		return false // a probe, not a move, tells whether the link carries it
	}
	// By position: a layer's measured bitrate swings with its encoder.
	return i >= c.limitIdx
}

func (c *chooser) raise(to, layers int) {
	c.cap = to
	if c.cap >= layers-1 {
		c.cap = -1
	}
}

// choose returns the layer the viewer should get, or -1 to keep what it
// has (no layer is sending). Only active layers are chosen: a paused layer
// would freeze the picture.
func (c *chooser) choose(now time.Time, infos []relay.LayerInfo, cur int) int {
	active := func(i int) bool { return i >= 0 && i < len(infos) && infos[i].Active }
	// highestActive returns the highest active layer at most i, else the
	// lowest active one above it, else -1.
	highestActive := func(i int) int {
		for j := min(i, len(infos)-1); j >= 0; j-- {
			if active(j) {
				return j
			}
		}
		for j := i + 1; j < len(infos); j++ {
			if active(j) {
				return j
			}
		}
		return -1
	}
	if p := pinIndex(c.pin, infos); p >= 0 {
		return highestActive(p)
	}
	if c.start > 0 {
		c.startCap(now, infos)
	}
	want := len(infos) - 1
	if c.cap >= 0 {
		want = min(want, c.cap)
	}
	return highestActive(want)
}

// probed takes a probe's outcome: a move up if the link carried it, else
// a longer clean spell before the next probe.
func (c *chooser) probed(now time.Time, fb Feedback, layers int) {
	to := c.probeTo
	c.probeTo, c.askProbe = -1, 0
	if to < 0 {
		return // not asked for (or timed out already)
	}
	if fb.Probe == ProbeCarried {
		if fb.Bitrate > 0 {
			c.estimate, c.estimateAt, c.measured = fb.Bitrate, now, true
		}
		if c.cap >= 0 && to > c.cap {
			c.raise(to, layers)
			c.probedUp = now
		}
		c.goodSince, c.nextProbe = now, time.Time{}
		return
	}
	c.wait = min(2*c.wait, max(maxProbeBackoff, c.wait))
	c.goodSince, c.nextProbe, c.quietTo = now, now.Add(c.wait), now.Add(probeQuiet)
}

// askFor asks for a probe of layer to (unless one is out, or the last
// failed lately); a layer of unknown bitrate is moved to without one.
func (c *chooser) askFor(now time.Time, to int, infos []relay.LayerInfo) {
	if c.probeTo >= 0 || now.Before(c.nextProbe) || to < 0 || to >= len(infos) {
		return
	}
	b := float64(infos[to].Bitrate)
	if b == 0 {
		c.raise(to, len(infos))
		c.lastUp, c.goodSince = now, now
		return
	}
	c.probeTo, c.probeAt, c.askProbe = to, now, b*upHeadroom
}

// takeProbe returns the rate of a probe to start now, 0 if none.
func (c *chooser) takeProbe() float64 {
	r := c.askProbe
	c.askProbe = 0
	return r
}

// cannotProbe: the Prober could not start the probe asked for: try the
// layer as without one.
func (c *chooser) cannotProbe(now time.Time, layers int) {
	if c.probeTo < 0 {
		return
	}
	to := c.probeTo
	c.probeTo, c.probeAt = -1, time.Time{}
	if c.cap >= 0 && to > c.cap {
		c.raise(to, layers)
		c.lastUp, c.goodSince = now, now
	}
}

// startCap applies a known estimate to a viewer that starts: the highest
// layer the estimate covers (without headroom) becomes its limit, so a
// viewer whose link is known to be slow does not start on a layer it
// cannot carry; it probes upward from there as after congestion.
func (c *chooser) startCap(now time.Time, infos []relay.LayerInfo) {
	if c.start <= 0 || len(infos) == 0 {
		return
	}
	for _, in := range infos {
		if in.Active && in.Bitrate == 0 {
			return // not measured yet: decide when it is
		}
	}
	est := c.start
	c.start = 0
	if f := fit(infos, est, len(infos)-1); f < len(infos)-1 {
		c.cap = f
		c.estimate, c.estimateAt, c.measured = est, now, true
		c.goodSince = now
	}
}

// remembered is the estimate worth keeping for the viewer's next session:
// what the send side measured while the viewer was held below the top.
func (c *chooser) remembered() float64 {
	if c.cap < 0 || !c.measured {
		return 0
	}
	return c.estimate
}

// switched notes that the viewer's switch to another layer took effect.
func (c *chooser) switched(now time.Time) {
	if t := now.Add(switchGrace); t.After(c.settleTo) {
		c.settleTo = t
	}
}
