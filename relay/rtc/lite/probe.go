package lite

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"time"

	"github.com/pion/rtp"
)

// Probes. Before a viewer is moved to a higher simulcast layer, the peer
// sends a short cluster of padding-only packets on the viewer's RTX stream
// so that the link carries the higher layer's rate for a moment, and the
// viewer's transport-cc feedback says whether it did: all of it arrived, at
// the rate it was sent or without a queue building up. Padding goes on the
// RTX stream, not the media SSRC, so it takes no media sequence numbers
// (the layer switch's renumbering stays as it is) and a padding packet the
// link drops counts in no media loss statistic. The cluster lasts 150 ms,
// longer than shapers' bursts let through at line rate (the test's htb
// passes 8 KB), so what the link carries shows. A probe that fails costs
// the media packets the link dropped meanwhile (none to a few), against
// the second of packets a try of a layer the link cannot carry cost.

const (
	probeDuration = 150 * time.Millisecond
	probeTick     = 5 * time.Millisecond
	probeMinPkts  = 10
	// probeWaitFeedback: a probe whose packets are not all reported this
	// long after it ended is judged on what was.
	probeWaitFeedback = time.Second
	// Outcome: at most this share of the cluster lost, delivered at this
	// share of the rate it was sent at, and the one-way delay grown by no
	// more than probeMaxGrowth over the cluster.
	probeMaxLoss   = 0.05
	probeMinRatio  = 0.8
	probeMaxGrowth = 25 * time.Millisecond
)

// probePadding is the payload of a probe packet: padding only (RFC 3550
// 5.1: the last octet counts the padding, itself included).
var probePadding = func() (b [255]byte) { b[254] = 255; return }()

// probeSend is the send side of the current (or last) probe cluster,
// guarded by Peer.wmu.
type probeSend struct {
	id          uint16 // cluster id, 0: none yet
	busy        bool
	first, last uint16 // transport sequence numbers of its first and last packet
	started     bool
	ended       bool
	endAt       time.Time
	startAt     int64 // ns since cc.base
	rtx         [maxRTXStreams]rtxStream
}

// maxRTXStreams bounds the RTX streams of one viewer (one per video
// section; max-tracks is 4 by default).
const maxRTXStreams = 8

// rtxStream numbers the packets of one RTX SSRC.
type rtxStream struct {
	ssrc uint32 // 0: free
	seq  uint16
}

var errTooManyRTX = errors.New("lite: too many RTX streams")

// nextRTX is the next sequence number of RTX stream ssrc, which probes and
// retransmissions share; each stream starts at random (RFC 3550) and
// counts on its own: a number that jumped by the packets of another RTX
// stream could leap half the sequence space, which the sealer would take
// for an old packet and seal under an index already used.
// Caller holds Peer.wmu.
func (p *probeSend) nextRTX(ssrc uint32) (uint16, error) {
	for i := range p.rtx {
		s := &p.rtx[i]
		if s.ssrc == 0 {
			var b [2]byte
			_, _ = rand.Read(b[:])
			s.ssrc, s.seq = ssrc, binary.BigEndian.Uint16(b[:])
		}
		if s.ssrc == ssrc {
			s.seq++
			return s.seq, nil
		}
	}
	return 0, errTooManyRTX
}

func (p *probeSend) noteSent(seq uint16) {
	if !p.started {
		p.first, p.started = seq, true
	}
	p.last = seq
}

// probeSnap is a copy of probeSend for the feedback side.
type probeSnap struct {
	id          uint16
	first, last uint16
	started     bool
	ended       bool
	endAt       time.Time
	startAt     int64
}

func (p *probeSend) snapshot() probeSnap {
	return probeSnap{id: p.id, first: p.first, last: p.last, started: p.started, ended: p.ended, endAt: p.endAt,
		startAt: p.startAt}
}

// covers reports whether transport sequence number seq was sent during the
// cluster (a probe packet, or media sent between them).
func (s probeSnap) covers(seq uint16) bool {
	if s.id == 0 || !s.started {
		return false
	}
	if int16(seq-s.first) < 0 {
		return false
	}
	return !s.ended || int16(s.last-seq) >= 0
}

// probeEval accumulates a cluster's feedback, guarded by cc.mu.
type probeEval struct {
	id, done            uint16
	total, lost         int
	reported            int
	sentBytes, lastSize int
	firstAt, lastAt     int64
	recvBytes           int
	firstRecvSize       int
	firstArr, lastArr   int64
	// The lowest one-way delay of the packets sent in the cluster's first
	// and last third: a queue that builds shows as their difference, and
	// the lowest of several ignores jitter (Wi-Fi's bursts) that a single
	// packet's would not.
	earlyOWD, lateOWD int64
	haveEarly         bool
	haveLate          bool
}

// take adds the cluster's packets of one feedback message and reports the
// outcome once the whole cluster is reported (or probeWaitFeedback passed).
func (e *probeEval) take(res []fbResult, pr probeSnap, now time.Time) (Estimate, bool) {
	if pr.id == 0 || pr.id == e.done {
		return Estimate{}, false
	}
	if e.id != pr.id {
		*e = probeEval{id: pr.id, done: e.done}
	}
	for _, r := range res {
		if !r.known || !pr.covers(r.seq) {
			continue
		}
		if r.recv && r.wasLost {
			e.lost-- // reported lost before, arrived late
		} else {
			e.reported++
			e.total++
			if e.total == 1 || r.at < e.firstAt {
				e.firstAt = r.at
			}
			if r.at >= e.lastAt {
				e.lastAt, e.lastSize = r.at, r.size
			}
			e.sentBytes += r.size
			if !r.recv {
				e.lost++
				continue
			}
		}
		if e.recvBytes == 0 || r.arrival < e.firstArr {
			e.firstArr, e.firstRecvSize = r.arrival, r.size
		}
		e.lastArr = max(e.lastArr, r.arrival)
		e.recvBytes += r.size
		owd := r.arrival*1000 - r.at
		third := int64(probeDuration) / 3
		switch {
		case r.at < pr.startAt+third:
			if !e.haveEarly || owd < e.earlyOWD {
				e.earlyOWD, e.haveEarly = owd, true
			}
		case r.at >= pr.startAt+2*third:
			if !e.haveLate || owd < e.lateOWD {
				e.lateOWD, e.haveLate = owd, true
			}
		}
	}
	if !pr.ended || !pr.started {
		return Estimate{}, false
	}
	whole := e.reported >= int(pr.last-pr.first)+1
	if !whole && now.Sub(pr.endAt) < probeWaitFeedback {
		return Estimate{}, false
	}
	e.done = pr.id
	return e.outcome(), true
}

func (e *probeEval) outcome() Estimate {
	est := Estimate{Loss: -1, Probe: ProbeFailed}
	if e.total < probeMinPkts/2 {
		return est
	}
	loss := float64(e.lost) / float64(e.total)
	if span := e.lastAt - e.firstAt; span > 0 {
		est.ProbeRate = float64(e.sentBytes-e.lastSize) * 8e9 / float64(span)
	}
	if span := e.lastArr - e.firstArr; span > 0 {
		est.Bitrate = float64(e.recvBytes-e.firstRecvSize) * 8e6 / float64(span)
	}
	var growth time.Duration
	if e.haveEarly && e.haveLate {
		growth = time.Duration(e.lateOWD - e.earlyOWD)
	}
	if loss <= probeMaxLoss && est.Bitrate >= probeMinRatio*est.ProbeRate && growth <= probeMaxGrowth {
		est.Probe = ProbeCarried
		est.Bitrate = max(est.Bitrate, est.ProbeRate)
	}
	est.QueueDelay = growth
	return est
}

// sendRate is what the peer sent over the last half second, bits per
// second. wmu must be held.
func (c *cc) sendRate() float64 {
	if c.hist == nil {
		return 0
	}
	const over = 500 * time.Millisecond
	now := uint32(time.Since(c.base).Microseconds())
	bytes := 0
	for i := range uint16(ccHist) {
		e := &c.hist[(c.next-1-i)%ccHist]
		if e.state == sentNone || e.seq != c.next-1-i || now-e.at > uint32(over.Microseconds()) {
			break
		}
		bytes += int(e.size)
	}
	return float64(bytes) * 8 / over.Seconds()
}

// CanProbe reports whether the peer can send probes: transport-cc is on.
func (p *Peer) CanProbe() bool { return p.cc != nil }

// Probe sends a probe cluster so that the viewer receives about rate bits
// per second in all (its media and padding) for probeDuration: padding-only
// packets on RTX stream ssrc with payload type pt. The outcome comes as an
// Estimate with Probe set. It reports false when the peer cannot probe (no
// transport-cc, not connected, a probe being sent).
func (p *Peer) Probe(rate float64, ssrc uint32, pt uint8) bool {
	c := p.cc
	if c == nil || ssrc == 0 || rate <= 0 || !p.connected.Load() || p.sel.Load() == nil {
		return false
	}
	p.wmu.Lock()
	if c.probe.busy || c.hist == nil {
		p.wmu.Unlock()
		return false
	}
	media := c.sendRate()
	c.probe.id++
	if c.probe.id == 0 {
		c.probe.id = 1
	}
	id := c.probe.id
	c.probe.busy, c.probe.started, c.probe.ended = true, false, false
	c.probe.startAt = int64(time.Since(c.base))
	p.wmu.Unlock()
	pad := max(rate-media, rate/4)
	wire := float64(12 + 8 + len(probePadding))
	n := max(probeMinPkts, int(pad*probeDuration.Seconds()/8/wire))
	if !p.t.spawn(func() { p.sendProbe(id, n, ssrc, pt) }) {
		p.wmu.Lock()
		c.probe.busy = false
		p.wmu.Unlock()
		return false // the transport is closing
	}
	return true
}

// sendProbe paces n padding packets over probeDuration. It runs on a
// goroutine of its own for those 150 ms, off every viewer's packet path.
func (p *Peer) sendProbe(id uint16, n int, ssrc uint32, pt uint8) {
	c := p.cc
	defer func() {
		p.wmu.Lock()
		c.probe.busy, c.probe.ended, c.probe.endAt = false, true, time.Now()
		p.wmu.Unlock()
	}()
	t := time.NewTicker(probeTick)
	defer t.Stop()
	start := time.Now()
	h := rtp.Header{Version: 2, Padding: true, PayloadType: pt, SSRC: ssrc}
	for sent := 0; sent < n; {
		due := min(n, 1+int(float64(n)*float64(time.Since(start))/float64(probeDuration)))
		for ; sent < due; sent++ {
			if !p.sendPadding(id, &h) {
				return
			}
		}
		if sent >= n {
			return
		}
		select {
		case <-t.C:
		case <-p.done:
			return
		case <-p.t.ctx.Done():
			return
		}
	}
}

func (p *Peer) sendPadding(id uint16, h *rtp.Header) bool {
	r := p.sel.Load()
	if r == nil || !p.connected.Load() {
		return false
	}
	c := p.cc
	buf := getBuf()
	defer putBuf(buf)
	p.wmu.Lock()
	defer p.wmu.Unlock()
	seq, err := c.probe.nextRTX(h.SSRC)
	if err != nil {
		return false
	}
	h.SequenceNumber = seq
	c.cluster = id
	pkt, err := p.seal((*buf)[:0], h, probePadding[:])
	c.cluster = 0
	if err != nil {
		return false
	}
	return p.sendTo(r, pkt) == nil
}

// WriteRTX resends the packet with header h and payload on the viewer's
// RTX stream (RFC 4588): SSRC ssrc, payload type pt, the stream's next
// sequence number, the original sequence number before the payload. A
// viewer with transport-cc gets its retransmissions this way, never on the
// media SSRC: each packet sent gets a new transport-wide number in its
// header, so a resend there would seal the same SRTP index (the IV) again
// over different authenticated data, and two AES-GCM tags under one IV
// give away the authentication key to anyone who sees both.
func (p *Peer) WriteRTX(h *rtp.Header, payload []byte, ssrc uint32, pt uint8) error {
	c := p.cc
	if c == nil || ssrc == 0 {
		return errors.New("lite: no RTX stream")
	}
	r := p.sel.Load()
	if r == nil || !p.connected.Load() {
		return ErrNotConnected
	}
	body := getBuf()
	defer putBuf(body)
	if 2+len(payload) > cap(*body) {
		return errors.New("lite: packet too large")
	}
	b := (*body)[:2+len(payload)]
	binary.BigEndian.PutUint16(b, h.SequenceNumber)
	copy(b[2:], payload)
	rh := *h
	rh.SSRC, rh.PayloadType = ssrc, pt
	buf := getBuf()
	defer putBuf(buf)
	p.wmu.Lock()
	defer p.wmu.Unlock()
	seq, err := c.probe.nextRTX(ssrc)
	if err != nil {
		return err
	}
	rh.SequenceNumber = seq
	pkt, err := p.seal((*buf)[:0], &rh, b)
	if err != nil {
		return err
	}
	return p.sendTo(r, pkt)
}
