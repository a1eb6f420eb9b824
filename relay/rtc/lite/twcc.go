package lite

import (
	"encoding/binary"
	"math"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// Send-side bandwidth estimation for one viewer, from transport-wide
// congestion control feedback (draft-holmer-rmcat-transport-wide-cc-
// extensions-01): every packet the peer sends carries a transport sequence
// number, its send time and size are kept, and the viewer reports when each
// arrived (or that it did not). From that the peer tells whoever serves the
// viewer (the simulcast layer choice) three things: the media loss and the
// rate the link delivered over short windows, whether the link is overused
// (loss, or a standing queue), and the outcome of probes (probe.go).
//
// No goroutine is added: stamping runs in the packet's seal (under the
// write lock the packet takes anyway), feedback on the goroutine that reads
// the viewer's RTCP. The per-packet cost is a header copy, a clock read and
// a store into a fixed ring; nothing is allocated.

// TWCCURI is the header extension's URI in SDP.
const TWCCURI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"

// CC configures a peer's send-side congestion control.
type CC struct {
	// ExtID is the transport sequence number extension's id negotiated
	// with the viewer (1-14, the one-byte form); 0 turns it all off.
	ExtID uint8
	// OnEstimate runs on the goroutine that reads the viewer's RTCP each
	// time feedback completes a window or a probe. It must not block.
	OnEstimate func(Estimate)
}

// ProbeOutcome says whether a probe showed the link carries its rate.
type ProbeOutcome uint8

// Probe outcomes.
const (
	ProbeNone    ProbeOutcome = iota // this estimate is no probe's
	ProbeCarried                     // the link delivered the probe's rate
	ProbeFailed                      // it did not (loss, or a queue that grew)
)

// Estimate is what feedback says about the viewer's link.
type Estimate struct {
	// Loss is the share of media packets lost over the window; -1 when the
	// window had too few to say.
	Loss float64
	// Bitrate is the rate the link delivered in bits per second: over the
	// window, or during the probe (see Probe); 0 when not known.
	Bitrate float64
	// Overuse: the link carried less than was sent (loss over 10 %, or a
	// queue standing for two windows); Bitrate is then what it carries.
	Overuse bool
	// QueueDelay is the mean one-way delay above the lowest seen lately.
	QueueDelay time.Duration
	// Probe is set when this estimate ends a probe; ProbeRate is the rate
	// the probe sent (media and padding) in bits per second.
	Probe     ProbeOutcome
	ProbeRate float64
}

// ccHist is the number of sent packets remembered (a power of two): 2 s
// of a 2.5 Mbit/s stream, several times what feedback lags. 12 bytes each:
// 6 KB per viewer with transport-cc.
const ccHist = 512

// Estimation constants.
const (
	ccWindow      = 250 * time.Millisecond // loss and rate window
	ccMinPackets  = 8                      // a window with fewer says nothing
	ccOverLoss    = 0.10                   // loss above this is overuse
	ccQueueLimit  = 150 * time.Millisecond // a queue above this, standing...
	ccQueueWins   = 2                      // ...for this many windows, is overuse
	ccBaseRefresh = 5 * time.Second        // the lowest delay is kept for 2x this
	ccQuietEmit   = time.Second            // clean windows are reported this often
)

type sentState uint8

const (
	sentNone sentState = iota
	sentOut
	sentLost     // reported lost (a later report may still say received)
	sentReceived // reported received: counted
)

type sentPacket struct {
	at      uint32 // µs since cc.base, modulo 2^32 (see sentAt)
	seq     uint16
	size    uint16 // bytes on the wire before SRTP
	cluster uint16 // probe cluster, 0 for media
	state   sentState
}

// fbResult is one packet of a feedback message.
type fbResult struct {
	seq     uint16
	recv    bool
	known   bool  // it is in the send history
	wasLost bool  // reported lost before: this report says it arrived late
	arrival int64 // µs, the viewer's clock
	at      int64 // send time, ns since cc.base
	size    int
	cluster uint16
}

// ccWin accumulates the media packets of one window.
type ccWin struct {
	start              time.Time
	total, lost        int
	bytes              int
	firstArr, lastArr  int64
	firstSize          int
	queueSum, queueCnt int64
}

// cc is a peer's congestion control state.
type cc struct {
	id    uint8
	onEst func(Estimate)
	base  time.Time

	// Send side, guarded by Peer.wmu.
	next    uint16
	hist    *[ccHist]sentPacket // allocated at the first packet
	cluster uint16              // probe cluster of the packet being sealed
	hdr     rtp.Header
	ext     [1]rtp.Extension
	extBuf  [2]byte
	probe   probeSend

	// Feedback side, guarded by mu.
	mu       sync.Mutex
	res      []fbResult
	win      ccWin
	baseCur  int64 // lowest one-way delay (ns, arbitrary origin) since baseAt
	basePrev int64
	baseAt   time.Time
	overWins int
	lastEmit time.Time
	eval     probeEval
	fbSecond time.Time // start of the second fbCount counts messages in
	fbCount  int
}

// maxFeedbackPerSecond bounds the transport-cc messages a peer's feedback
// is read from: browsers send 10 to 40 a second; the rest of a flood is
// dropped before it costs the shared reading goroutine anything.
const maxFeedbackPerSecond = 100

func newCC(c CC) *cc {
	if c.ExtID == 0 || c.ExtID > 14 {
		return nil
	}
	return &cc{id: c.ExtID, onEst: c.OnEstimate, base: time.Now(),
		baseCur: math.MaxInt64, basePrev: math.MaxInt64}
}

// stamp returns the header to send h as: a copy with the next transport
// sequence number, recorded with its send time. wmu must be held. A nil cc
// returns h.
func (c *cc) stamp(h *rtp.Header, payload int) *rtp.Header {
	if c == nil {
		return h
	}
	if c.hist == nil {
		c.hist = new([ccHist]sentPacket)
	}
	seq := c.next
	c.hdr = *h
	// The relay forwards no extensions: the sequence number is the only one.
	c.hdr.Extension, c.hdr.Extensions = false, c.ext[:0]
	binary.BigEndian.PutUint16(c.extBuf[:], seq)
	if c.hdr.SetExtension(c.id, c.extBuf[:]) != nil {
		return h
	}
	c.next++
	size := min(c.hdr.MarshalSize()+payload, math.MaxUint16)
	c.hist[seq%ccHist] = sentPacket{at: uint32(time.Since(c.base).Microseconds()), seq: seq, size: uint16(size),
		cluster: c.cluster, state: sentOut}
	if c.cluster != 0 {
		c.probe.noteSent(seq)
	}
	return &c.hdr
}

// onRTCP takes the viewer's RTCP; p is the peer whose history it reads.
func (c *cc) onRTCP(p *Peer, pkts []rtcp.Packet) {
	if c == nil {
		return
	}
	for _, pk := range pkts {
		if t, ok := pk.(*rtcp.TransportLayerCC); ok {
			c.feedback(&p.wmu, t, time.Now())
		}
	}
}

// parseTWCC lists the packets a feedback message reports, in order, at
// most ccHist of them: the count comes from the viewer (up to 65535 in a
// 40-byte message), and a report longer than the send history cannot match
// more than that anyway, while walking it would cost the shared socket's
// reading goroutine about a millisecond per message.
func parseTWCC(dst []fbResult, t *rtcp.TransportLayerCC) []fbResult {
	n := min(int(t.PacketStatusCount), ccHist)
	arrival := int64(t.ReferenceTime) * 64000
	seq := t.BaseSequenceNumber
	d := 0
	add := func(sym uint16) bool {
		if len(dst) >= n {
			return false
		}
		r := fbResult{seq: seq}
		if sym == rtcp.TypeTCCPacketReceivedSmallDelta || sym == rtcp.TypeTCCPacketReceivedLargeDelta {
			if d >= len(t.RecvDeltas) || t.RecvDeltas[d] == nil {
				return false // malformed: more received than deltas
			}
			arrival += t.RecvDeltas[d].Delta
			d++
			r.recv, r.arrival = true, arrival
		}
		dst = append(dst, r)
		seq++
		return true
	}
	for _, ch := range t.PacketChunks {
		switch ch := ch.(type) {
		case *rtcp.RunLengthChunk:
			for range ch.RunLength {
				if !add(ch.PacketStatusSymbol) {
					return dst
				}
			}
		case *rtcp.StatusVectorChunk:
			for _, s := range ch.SymbolList {
				if !add(s) {
					return dst
				}
			}
		}
	}
	return dst
}

// feedback takes one transport-cc message. wmu guards the send history.
func (c *cc) feedback(wmu *sync.Mutex, t *rtcp.TransportLayerCC, now time.Time) {
	c.mu.Lock()
	if now.Sub(c.fbSecond) >= time.Second {
		c.fbSecond, c.fbCount = now, 0
	}
	if c.fbCount++; c.fbCount > maxFeedbackPerSecond {
		c.mu.Unlock()
		return
	}
	c.res = parseTWCC(c.res[:0], t)
	res := c.res
	nowUs := time.Since(c.base).Microseconds()
	wmu.Lock()
	if c.hist != nil {
		for i := range res {
			r := &res[i]
			e := &c.hist[r.seq%ccHist]
			if e.state == sentNone || e.seq != r.seq || e.state == sentReceived || (e.state == sentLost && !r.recv) {
				continue // unknown, or reported before
			}
			r.known, r.at, r.size, r.cluster = true, sentAt(nowUs, e.at), int(e.size), e.cluster
			r.wasLost = e.state == sentLost
			if r.recv {
				e.state = sentReceived
			} else {
				e.state = sentLost
			}
		}
	}
	pr := c.probe.snapshot()
	wmu.Unlock()

	var out []Estimate
	if est, ok := c.eval.take(res, pr, now); ok {
		out = append(out, est)
	}
	if est, ok := c.window(res, pr, now); ok {
		out = append(out, est)
	}
	c.mu.Unlock()
	if c.onEst != nil {
		for _, e := range out {
			c.onEst(e)
		}
	}
}

// window adds the media packets of one feedback message (those sent
// during a probe excepted: the probe's own queue is no news about the
// link) and reports when a window is complete. mu must be held.
func (c *cc) window(res []fbResult, pr probeSnap, now time.Time) (Estimate, bool) {
	if now.Sub(c.baseAt) >= ccBaseRefresh {
		c.basePrev, c.baseCur, c.baseAt = c.baseCur, math.MaxInt64, now
	}
	w := &c.win
	if w.start.IsZero() {
		w.start = now
	}
	for _, r := range res {
		if !r.known || r.wasLost || r.cluster != 0 || pr.covers(r.seq) {
			continue // a late arrival was counted lost: it was, for the player
		}
		w.total++
		if !r.recv {
			w.lost++
			continue
		}
		owd := r.arrival*1000 - r.at
		c.baseCur = min(c.baseCur, owd)
		if base := min(c.baseCur, c.basePrev); base != math.MaxInt64 {
			w.queueSum += owd - base
			w.queueCnt++
		}
		if w.bytes == 0 {
			w.firstArr, w.firstSize = r.arrival, r.size
		}
		w.bytes += r.size
		w.lastArr = max(w.lastArr, r.arrival)
	}
	if now.Sub(w.start) < ccWindow {
		return Estimate{}, false
	}
	est := Estimate{Loss: -1}
	if w.total >= ccMinPackets {
		est.Loss = float64(w.lost) / float64(w.total)
	}
	if span := w.lastArr - w.firstArr; span >= int64(ccWindow/time.Microsecond)/2 {
		est.Bitrate = float64(w.bytes-w.firstSize) * 8e6 / float64(span)
	}
	if w.queueCnt > 0 {
		est.QueueDelay = time.Duration(w.queueSum / w.queueCnt)
	}
	if est.QueueDelay > ccQueueLimit {
		c.overWins++
	} else {
		c.overWins = 0
	}
	est.Overuse = est.Loss > ccOverLoss || c.overWins >= ccQueueWins
	// A clean window is news once a second: the layer choice acts on
	// loss and overuse at once, and needs no more to time a clean spell.
	emit := w.total > 0 && (est.Loss > 0 || est.Overuse || now.Sub(c.lastEmit) >= ccQuietEmit)
	c.win = ccWin{start: now}
	if emit {
		c.lastEmit = now
	}
	return est, emit
}

// sentAt restores a send time kept modulo 2^32 µs (71 minutes) as ns
// since cc.base: a remembered packet is at most seconds older than nowUs.
func sentAt(nowUs int64, at uint32) int64 {
	return (nowUs - int64(uint32(nowUs)-at)) * 1000
}
