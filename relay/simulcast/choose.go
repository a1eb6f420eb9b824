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
}

// Policy constants. The headroom factors are the hysteresis: a layer is
// kept while the estimate covers its bitrate, and taken only when the
// estimate covers it with a margin, so an estimate hovering at a layer's
// bitrate does not flip the viewer between two layers.
const (
	upHeadroom   = 1.25 // estimate / layer bitrate needed to move up to a layer
	keepHeadroom = 1.0  // needed to stay on the current layer
	estimateTTL  = 5 * time.Second

	lossDown  = 0.10 // loss above this takes the viewer one layer down
	lossClear = 0.02 // loss below this for lossProbe lets it try one layer up
	// lossProbe is the first wait before trying a layer up after losses;
	// it doubles (up to maxLossProbe) each time a try fails within
	// lossProbeFail, so a viewer whose link cannot carry a layer does not
	// lose packets every few seconds trying it.
	lossProbe     = 2 * time.Second
	maxLossProbe  = 30 * time.Second
	lossProbeFail = 5 * time.Second
	// lossSettle: receiver reports right after a switch down still describe
	// the layer the viewer left.
	lossSettle = 1500 * time.Millisecond
)

// chooser decides which layer one viewer should get. Layers are given
// lowest first (relay.Track.Layers); choices are indexes into them.
type chooser struct {
	pin string // ?layer=: a rid, low, mid, high or an index from 0 (lowest)

	estimate   float64
	estimateAt time.Time

	lossCap   int // highest layer loss allows, -1: no cap
	goodSince time.Time
	probeWait time.Duration
	lastUp    time.Time
	settle    time.Time
	lastLoss  float64
}

func newChooser(pin string) chooser {
	return chooser{pin: pin, lossCap: -1, probeWait: lossProbe}
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

// feedback takes a viewer's report; cur is the layer it gets now.
func (c *chooser) feedback(now time.Time, fb Feedback, cur, layers int) {
	if fb.Bitrate > 0 {
		c.estimate, c.estimateAt = fb.Bitrate, now
	}
	if fb.Loss < 0 || cur < 0 {
		return
	}
	c.lastLoss = fb.Loss
	if now.Before(c.settle) {
		return
	}
	switch {
	case fb.Loss > lossDown:
		if cur > 0 && (c.lossCap < 0 || c.lossCap >= cur) {
			c.lossCap = cur - 1
			c.settle = now.Add(lossSettle)
			if !c.lastUp.IsZero() && now.Sub(c.lastUp) < lossProbeFail {
				c.probeWait = min(2*c.probeWait, maxLossProbe)
			}
		}
		c.goodSince = time.Time{}
	case fb.Loss < lossClear:
		if c.goodSince.IsZero() {
			c.goodSince = now
		}
		if c.lossCap >= 0 && now.Sub(c.goodSince) >= c.probeWait {
			c.lossCap++
			if c.lossCap >= layers-1 {
				c.lossCap = -1
			}
			c.lastUp, c.goodSince = now, now
		}
		if c.lossCap < 0 && !c.lastUp.IsZero() && now.Sub(c.lastUp) > 4*lossProbeFail {
			c.probeWait = lossProbe // a long clean run: forget the failed tries
		}
	default:
		c.goodSince = time.Time{}
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
	want := len(infos) - 1
	if c.estimate > 0 && now.Sub(c.estimateAt) < estimateTTL {
		fit := 0
		for i := range infos {
			need := upHeadroom
			if i <= cur {
				need = keepHeadroom
			}
			if b := float64(infos[i].Bitrate); b == 0 || b*need <= c.estimate {
				fit = i
			}
		}
		want = fit
	}
	if c.lossCap >= 0 {
		want = min(want, c.lossCap)
	}
	return highestActive(want)
}
