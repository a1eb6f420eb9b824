package relay

import (
	"slices"
	"sync/atomic"
	"time"
)

// DelayBuckets are the upper bounds, in seconds, of the histogram of the
// delay from the publisher to this node.
var DelayBuckets = []float64{.001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5}

// delayMeter measures, for each frame (the first packet of each RTP
// timestamp), how long after the publisher sent it it arrived here: the
// arrival time minus the sender's wall-clock time for that timestamp, from
// the newest RTCP sender report. A relay forwards the publisher's sender
// reports (translated to its numbering), so every node of a tree measures
// the whole way from the publisher; the difference between a node and its
// parent is the hop. Across machines the figure includes the offset between
// the publisher's clock and this node's (NTP keeps it to a few ms); on one
// machine it is exact to the scheduling of the two processes.
type delayMeter struct {
	// Guarded by the track's mu (the ingest path holds it).
	clock  float64
	srAt   time.Time
	srRTP  uint32
	haveSR bool
	lastTS uint32
	haveTS bool
	ring   [128]int64 // recent delays (ns), for the percentiles
	next   int

	counts [13]atomic.Uint64 // by DelayBuckets, then +Inf
	sumNs  atomic.Int64
	n      atomic.Uint64
	last   atomic.Int64 // ns
	avg    atomic.Int64 // ns, exponentially weighted (1/16)
	parent atomic.Int64 // ns, the parent node's p50 (relayed streams); 0: unknown
}

// ntpTime converts an NTP timestamp (seconds since 1900, 32.32) to a time.
func ntpTime(ntp uint64) time.Time {
	const unixOffset = 2208988800
	sec := int64(ntp>>32) - unixOffset
	frac := (ntp & 0xffffffff) * 1e9 >> 32
	return time.Unix(sec, int64(frac))
}

// senderReport takes a sender report in the publisher's numbering.
func (d *delayMeter) senderReport(ntp uint64, rtpTime uint32) {
	d.srAt, d.srRTP, d.haveSR = ntpTime(ntp), rtpTime, true
}

// newPublisher forgets the mapping: a new publisher numbers anew.
func (d *delayMeter) newPublisher() { d.haveSR, d.haveTS = false, false }

// packet notes the arrival of a packet with RTP timestamp ts.
func (d *delayMeter) packet(now time.Time, ts uint32) {
	if !d.haveSR || d.clock <= 0 || (d.haveTS && ts == d.lastTS) {
		return
	}
	d.lastTS, d.haveTS = ts, true
	sent := d.srAt.Add(time.Duration(float64(int32(ts-d.srRTP)) / d.clock * float64(time.Second)))
	delay := now.Sub(sent)
	if delay > time.Minute || delay < -time.Minute {
		return // a sender report from a clock that is far off: nothing to say
	}
	d.ring[d.next] = int64(delay)
	d.next = (d.next + 1) % len(d.ring)
	i, _ := slices.BinarySearch(DelayBuckets, delay.Seconds())
	d.counts[i].Add(1)
	d.sumNs.Add(int64(delay))
	if d.n.Add(1) == 1 {
		d.avg.Store(int64(delay))
	} else {
		a := d.avg.Load()
		d.avg.Store(a + (int64(delay)-a)/16)
	}
	d.last.Store(int64(delay))
}

// DelayStats is the delay from the publisher to this node of one track.
type DelayStats struct {
	Samples uint64  `json:"samples"`
	LastMs  float64 `json:"lastMs"`
	AvgMs   float64 `json:"avgMs"` // exponentially weighted over the last ~16 frames
	P50Ms   float64 `json:"p50Ms"` // of the last 128 frames
	P95Ms   float64 `json:"p95Ms"`
	// ParentMs is P50Ms at the parent node a relayed stream is pulled from
	// (asked every 2 s), and HopMs this node's P50Ms minus it: what the
	// last hop added.
	ParentMs *float64 `json:"parentMs,omitempty"`
	HopMs    *float64 `json:"hopMs,omitempty"`
	// Buckets counts frames by delay (bounds in DelayBuckets, then +Inf),
	// for /metrics; SumSeconds is their sum.
	Buckets    []uint64 `json:"-"`
	SumSeconds float64  `json:"-"`
}

func ms(ns int64) float64 { return float64(ns) / 1e6 }

// stats snapshots the meter; ring is a copy taken under the track's lock.
func (d *delayMeter) stats(ring []int64) *DelayStats {
	n := d.n.Load()
	if n == 0 {
		return nil
	}
	st := &DelayStats{Samples: n, LastMs: ms(d.last.Load()), AvgMs: ms(d.avg.Load()),
		SumSeconds: float64(d.sumNs.Load()) / 1e9, Buckets: make([]uint64, len(d.counts))}
	for i := range d.counts {
		st.Buckets[i] = d.counts[i].Load()
	}
	if k := min(int(n), len(ring)); k > 0 {
		recent := slices.Clone(ring[:k])
		slices.Sort(recent)
		st.P50Ms, st.P95Ms = ms(recent[k/2]), ms(recent[min(k-1, k*95/100)])
	}
	if p := d.parent.Load(); p != 0 {
		// Medians of the last frames on both sides: one late frame on
		// either node must not make the hop look negative or huge.
		parent, hop := ms(p), st.P50Ms-ms(p)
		st.ParentMs, st.HopMs = &parent, &hop
	}
	return st
}

// SetParentDelay records the delay from the publisher that the parent node
// of a relayed stream measures for this track (tree.Puller asks it), so
// that the track's stats show what the last hop added. 0 clears it.
func (t *Track) SetParentDelay(d time.Duration) { t.delay.parent.Store(int64(d)) }
