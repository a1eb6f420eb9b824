// Package simulcast turns the layers of one simulcast media section (the RTP
// streams a publisher sends with rids, e.g. q, h and f at 1/4, 1/2 and full
// resolution) into the single stream that a relay track carries.
//
// Design of the top-layer stream:
//
//   - Every layer is received (NACKs, receiver reports per SSRC as for any
//     stream), but only the selected layer is forwarded. The relay keeps its
//     one-track-per-media-section model: it sees one stream whose sequence
//     numbers and timestamps are continuous across layer switches, so WHEP
//     viewers, relay links, HLS, RTMP push and recordings need no change.
//   - "Highest" is decided by what the layers carry, not by their rid names
//     (clients name and order them as they like): the picture size read from
//     each keyframe (H.264 SPS, VP8 and VP9 frame headers), and where the
//     codec does not tell (AV1) or a size is not known yet, the measured
//     bitrate (a layer must send 1.5 times the bitrate to count as higher).
//   - Switches happen only at the first packet of a keyframe of the target
//     layer, so the decoder never gets a picture whose references it lacks.
//     When a higher layer is active, a keyframe is requested from it (at most
//     every KeyframeInterval) and the switch happens when it arrives; a
//     browser that resumes a layer starts it with a keyframe anyway.
//   - A layer is paused when it sent no media for PauseAfter: browsers stop
//     sending their top layers when their bandwidth estimate drops. Then the
//     best layer still sending is asked for a keyframe and taken over at it,
//     so viewers freeze for about PauseAfter plus one round trip rather than
//     until the top layer comes back. While every layer is silent (a static
//     screen share, a network cut) nothing switches.
//   - Timestamps across a switch are aligned with the layers' RTCP sender
//     reports (each layer has its own RTP clock offset) when both layers had
//     one, otherwise by the wall-clock time since the last forwarded packet.
//   - VP8 and VP9 picture IDs and TL0PICIDX (and VP8 KEYIDX) continue
//     across switches too (see munge.go).
//   - Keyframe requests from readers go to the forwarded layer's SSRC.
//
// The Selector feeds the relay track that frame outputs (HLS, RTMP push,
// recordings, composites) and relay links read. WebRTC viewers each get
// their own choice among the layers instead: every layer is also a relay
// layer track of its own (relay/layers.go), and a viewer's Switcher
// (switcher.go) moves it between them by its feedback (choose.go).
package simulcast

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
)

// Params configures a Selector.
type Params struct {
	// MimeType and ClockRate are the negotiated codec's.
	MimeType  string
	ClockRate uint32
	// Write receives the forwarded packets in output order. It is called
	// with the selector's lock held (which orders packets of different
	// layers around a switch), so it must not block; it may call
	// RequestKeyframe, and nothing else of the selector.
	Write func(h *rtp.Header, payload []byte)
	// WriteSenderReport receives the forwarded layer's sender reports,
	// translated to output timestamps. Called with the lock held.
	WriteSenderReport func(ntp uint64, rtpTime uint32)
	// RequestKeyframe asks the publisher for a keyframe on one layer
	// (a PLI for that SSRC). Called without the lock.
	RequestKeyframe func(ssrc uint32)
	// PauseAfter is how long a layer may send no media before it counts
	// as paused (default 600 ms: several frame intervals at low frame rates).
	PauseAfter time.Duration
	// KeyframeInterval bounds the selector's own keyframe requests per
	// layer (default 500 ms).
	KeyframeInterval time.Duration
	Logger           *slog.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// bitrateWindow is how long bytes are summed for a layer's bitrate.
const bitrateWindow = time.Second

// higherBitrate is how much more a layer must send to rank higher when
// picture sizes are not known.
const higherBitrate = 1.5

type layer struct {
	rid  string
	ssrc uint32

	lastMedia time.Time // arrival of the last packet with payload
	maxSeq    uint16
	haveSeq   bool
	keyTS     uint32 // timestamp of the last keyframe start seen
	haveKey   bool
	width     int
	height    int

	winStart time.Time
	winBytes int
	bitrate  float64 // bits per second over the last full window

	srNTP  uint64
	srRTP  uint32
	haveSR bool

	lastKeyReq time.Time
}

func (l *layer) pixels() int { return l.width * l.height }

// Selector forwards one layer of a simulcast section at a time.
type Selector struct {
	p Params

	mu     sync.Mutex
	layers []*layer
	cur    int // index into layers, -1 before the first keyframe

	seqOff    uint16
	tsOff     uint32
	switchSeq uint16 // input sequence number the current layer started at
	lastOut   rtp.Header
	lastOutAt time.Time
	haveOut   bool
	switches  uint64
	num       numbering // VP8/VP9 picture numbers across switches

	// Keyframe requests read these without the lock: the relay may ask
	// from inside Write (which runs under the lock), e.g. when a frame
	// reader's keyframe cadence is due.
	fwdSSRC atomic.Int64             // SSRC of the forwarded layer, -1 before the first
	ssrcs   atomic.Pointer[[]uint32] // every layer's SSRC
}

// New returns a Selector with no layers.
func New(p Params) *Selector {
	if p.PauseAfter <= 0 {
		p.PauseAfter = 600 * time.Millisecond
	}
	if p.KeyframeInterval <= 0 {
		p.KeyframeInterval = 500 * time.Millisecond
	}
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	if p.Now == nil {
		p.Now = time.Now
	}
	if p.ClockRate == 0 {
		p.ClockRate = 90000
	}
	s := &Selector{p: p, cur: -1}
	s.fwdSSRC.Store(-1)
	return s
}

// AddLayer registers a layer when its first packet arrives and returns its
// index for Push and SenderReport.
func (s *Selector) AddLayer(rid string, ssrc uint32) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, l := range s.layers {
		if l.rid == rid {
			// The same rid on a new SSRC (the publisher restarted its
			// encoder): the old numbering no longer applies.
			l.ssrc, l.haveSeq, l.haveKey, l.haveSR = ssrc, false, false, false
			if i == s.cur {
				s.cur = -1 // continue at the next keyframe of any layer
				s.fwdSSRC.Store(-1)
			}
			s.storeSSRCs()
			return i
		}
	}
	s.layers = append(s.layers, &layer{rid: rid, ssrc: ssrc})
	s.storeSSRCs()
	return len(s.layers) - 1
}

func (s *Selector) storeSSRCs() {
	ssrcs := make([]uint32, len(s.layers))
	for i, l := range s.layers {
		ssrcs[i] = l.ssrc
	}
	s.ssrcs.Store(&ssrcs)
}

// Push takes one packet of layer i. It reports whether the packet was
// forwarded (the caller may reuse the buffer of a packet that was not). A
// forwarded VP8 or VP9 payload is modified in place (picture numbering).
func (s *Selector) Push(i int, h *rtp.Header, payload []byte) bool {
	now := s.p.Now()
	s.mu.Lock()
	if i < 0 || i >= len(s.layers) {
		s.mu.Unlock()
		return false
	}
	l := s.layers[i]
	inOrder := !l.haveSeq || seqNewer(h.SequenceNumber, l.maxSeq)
	if inOrder {
		l.maxSeq, l.haveSeq = h.SequenceNumber, true
	}
	if len(payload) > 0 {
		l.lastMedia = now
		s.account(l, now, len(payload))
	}
	start := false
	if ks, w, ht := keyStart(s.p.MimeType, payload); ks && (!l.haveKey || h.Timestamp != l.keyTS) {
		l.keyTS, l.haveKey = h.Timestamp, true
		if w > 0 && ht > 0 {
			l.width, l.height = w, ht
		}
		// A keyframe start that arrives late (retransmitted after later
		// packets of its frame) is no switch point: those packets were
		// not forwarded.
		start = inOrder
	}

	var ask []uint32
	forwarded := false
	switch {
	case i == s.cur:
		forwarded = s.forward(h, payload, now)
	case start && s.better(l, now):
		s.switchTo(i, h, payload, now)
		forwarded = s.forward(h, payload, now)
	case s.cur >= 0:
		// Ask the layer viewers should get for the keyframe to switch at.
		// Before the first switch there is nothing to ask for: every
		// layer starts with a keyframe, and readers' requests go to all.
		if want := s.best(now); want >= 0 && want != s.cur {
			if w := s.layers[want]; now.Sub(w.lastKeyReq) >= s.p.KeyframeInterval {
				w.lastKeyReq = now
				ask = append(ask, w.ssrc)
			}
		}
	}
	s.mu.Unlock()
	for _, ssrc := range ask {
		s.p.RequestKeyframe(ssrc)
	}
	return forwarded
}

// account adds n payload bytes to the layer's bitrate window.
func (s *Selector) account(l *layer, now time.Time, n int) {
	if l.winStart.IsZero() {
		l.winStart = now
	}
	l.winBytes += n
	if d := now.Sub(l.winStart); d >= bitrateWindow {
		l.bitrate = float64(l.winBytes*8) / d.Seconds()
		l.winStart, l.winBytes = now, 0
	}
}

func (s *Selector) active(l *layer, now time.Time) bool {
	return !l.lastMedia.IsZero() && now.Sub(l.lastMedia) < s.p.PauseAfter
}

// higher reports whether layer a carries a better picture than b: a larger
// picture when both sizes are known, else clearly more bits.
func higher(a, b *layer) bool {
	if a.pixels() > 0 && b.pixels() > 0 {
		return a.pixels() > b.pixels()
	}
	return a.bitrate > higherBitrate*b.bitrate && b.bitrate > 0
}

// better reports whether viewers should move to layer l (which just sent
// a keyframe): there is no current layer, the current one is paused (any
// layer still sending beats a frozen picture; a higher one is taken later),
// or l is higher.
func (s *Selector) better(l *layer, now time.Time) bool {
	if s.cur < 0 {
		return true
	}
	c := s.layers[s.cur]
	return !s.active(c, now) || higher(l, c)
}

// best is the layer viewers should get now: the highest active layer, the
// current one as long as nothing active is higher. -1 if none is active.
func (s *Selector) best(now time.Time) int {
	best := -1
	if s.cur >= 0 && s.active(s.layers[s.cur], now) {
		best = s.cur
	}
	for i, l := range s.layers {
		if i == best || !s.active(l, now) {
			continue
		}
		if best < 0 || higher(l, s.layers[best]) {
			best = i
		}
	}
	return best
}

// forward rewrites a packet of the current layer into output numbering.
func (s *Selector) forward(h *rtp.Header, payload []byte, now time.Time) bool {
	if h.SequenceNumber != s.switchSeq && !seqNewer(h.SequenceNumber, s.switchSeq) {
		return false // from before the switch: its output number is taken
	}
	out := rtp.Header{
		Version:        2,
		Marker:         h.Marker,
		PayloadType:    h.PayloadType,
		SSRC:           h.SSRC,
		SequenceNumber: h.SequenceNumber + s.seqOff,
		Timestamp:      h.Timestamp + s.tsOff,
	}
	newest := !s.haveOut || seqNewer(out.SequenceNumber, s.lastOut.SequenceNumber)
	if newest {
		s.lastOut, s.lastOutAt, s.haveOut = out, now, true
	}
	if f := fieldsOf(s.p.MimeType, payload); f != noFields {
		s.num.rewrite(f, payload, newest)
	}
	s.p.Write(&out, payload)
	return true
}

// switchTo makes layer i current from packet h (the first packet of one of
// its keyframes) on, continuing the output numbering.
func (s *Selector) switchTo(i int, h *rtp.Header, payload []byte, now time.Time) {
	from := s.cur
	l := s.layers[i]
	if s.haveOut {
		s.seqOff = s.lastOut.SequenceNumber + 1 - h.SequenceNumber
		s.tsOff = s.outTimestamp(from, l, h.Timestamp, now) - h.Timestamp
	}
	s.num.rebase(fieldsOf(s.p.MimeType, payload), payload)
	s.switchSeq = h.SequenceNumber
	s.cur = i
	s.fwdSSRC.Store(int64(l.ssrc))
	s.switches++
	attrs := []any{"rid", l.rid, "ssrc", l.ssrc, "width", l.width, "height", l.height,
		"kbps", int(l.bitrate / 1000)}
	if from >= 0 {
		f := s.layers[from]
		attrs = append(attrs, "from", f.rid, "fromActive", s.active(f, now))
		s.p.Logger.Info("simulcast: forwarding another layer", attrs...)
	} else {
		s.p.Logger.Debug("simulcast: first layer", attrs...)
	}
}

// outTimestamp maps ts of layer l to the output clock at a switch from
// layer from. With sender reports of both layers the mapping is exact (the
// same capture instant gets the same output time); otherwise the wall-clock
// time since the last forwarded packet is added, as for a publisher that
// reconnects. The result is always after the last output timestamp.
func (s *Selector) outTimestamp(from int, l *layer, ts uint32, now time.Time) uint32 {
	clock := int64(s.p.ClockRate)
	if from >= 0 {
		f := s.layers[from]
		// 32.32 fixed point seconds; reports far apart are not trusted.
		dNTP := int64(l.srNTP - f.srNTP)
		if f.haveSR && l.haveSR && dNTP < 600<<32 && dNTP > -600<<32 {
			// rtp_f(T) - rtp_l(T) for one NTP instant T.
			delta := f.srRTP - l.srRTP + uint32(dNTP*clock>>32)
			out := ts + delta + s.tsOff
			d := int64(int32(out - s.lastOut.Timestamp))
			if d > -clock/2 && d < 5*clock {
				if d <= 0 {
					out = s.lastOut.Timestamp + 1
				}
				return out
			}
		}
	}
	ticks := uint32(now.Sub(s.lastOutAt).Seconds() * float64(clock))
	return s.lastOut.Timestamp + max(ticks, 1)
}

// SenderReport takes an RTCP sender report of layer i and forwards it,
// translated, if i is the current layer.
func (s *Selector) SenderReport(i int, ntp uint64, rtpTime uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i < 0 || i >= len(s.layers) {
		return
	}
	l := s.layers[i]
	l.srNTP, l.srRTP, l.haveSR = ntp, rtpTime, true
	if i == s.cur && s.haveOut && s.p.WriteSenderReport != nil {
		s.p.WriteSenderReport(ntp, rtpTime+s.tsOff)
	}
}

// RequestKeyframe asks for a keyframe on the forwarded layer, or on every
// layer while none is forwarded yet. It takes no lock, so it may be called
// from within Write.
func (s *Selector) RequestKeyframe() {
	if ssrc := s.fwdSSRC.Load(); ssrc >= 0 {
		s.p.RequestKeyframe(uint32(ssrc))
		return
	}
	if all := s.ssrcs.Load(); all != nil {
		for _, ssrc := range *all {
			s.p.RequestKeyframe(ssrc)
		}
	}
}

// Layer describes one layer, for logs and the API.
type Layer struct {
	RID       string `json:"rid"`
	SSRC      uint32 `json:"ssrc"`
	Width     int    `json:"width,omitempty"`
	Height    int    `json:"height,omitempty"`
	Bitrate   int    `json:"bitrate"` // bits per second
	Active    bool   `json:"active"`
	Forwarded bool   `json:"forwarded"`
}

// Layers describes the layers seen so far.
func (s *Selector) Layers() []Layer {
	now := s.p.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Layer, len(s.layers))
	for i, l := range s.layers {
		out[i] = Layer{RID: l.rid, SSRC: l.ssrc, Width: l.width, Height: l.height,
			Bitrate: int(l.bitrate), Active: s.active(l, now), Forwarded: i == s.cur}
	}
	return out
}

// Switches is the number of times the forwarded layer changed (the first
// layer included).
func (s *Selector) Switches() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.switches
}

// seqNewer reports whether sequence number a is after b, modulo 2^16.
func seqNewer(a, b uint16) bool {
	return a != b && a-b < 1<<15
}
