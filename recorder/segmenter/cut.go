package segmenter

import (
	"fmt"
	"sort"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"

	"github.com/livegate/livegate/relay/codec"
	"github.com/livegate/livegate/relay/frames"
)

type track struct {
	idx     int
	info    codec.Codec
	clock   int64
	enabled bool
	video   bool
	dp      frames.Depacketizer
	seq     codec.SeqTracker

	// RTP timestamp unwrapping.
	lastTS    uint32
	unwrapped int64
	haveTS    bool

	// Alignment: until mapped, frames wait in preroll.
	preroll []pframe
	arrOff  float64 // min(arrival - ts/clock): the least delayed packet
	haveArr bool
	srNTP   float64
	srRTP   uint32
	haveSR  bool
	mapped  bool
	base    int64 // dts = unwrapped ts - base

	started bool // first keyframe seen
	needKey bool // video lost: wait for a keyframe
	pending *pending
	lastDur uint32

	codec    codecs.Codec
	sps, pps []byte
}

type pframe struct {
	f  frames.RawFrame
	ts int64
}

type pending struct {
	converted
	dts int64
}

func (t *track) unwrap(ts uint32) int64 {
	if !t.haveTS {
		t.lastTS, t.unwrapped, t.haveTS = ts, int64(ts), true
		return t.unwrapped
	}
	t.unwrapped += int64(int32(ts - t.lastTS))
	t.lastTS = ts
	return t.unwrapped
}

func (t *track) noteArrival(ts int64, arrival time.Time) {
	off := float64(arrival.UnixNano())/1e9 - float64(ts)/float64(t.clock)
	if !t.haveArr || off < t.arrOff {
		t.arrOff, t.haveArr = off, true
	}
}

// srOffset is NTP seconds minus media seconds, from the last sender report.
func (t *track) srOffset() float64 {
	u := t.unwrapped + int64(int32(t.srRTP-t.lastTS))
	return t.srNTP - float64(u)/float64(t.clock)
}

func (t *track) toNS(dts int64) int64 {
	return dts/t.clock*1e9 + dts%t.clock*1e9/t.clock
}

// segBuf collects one segment's samples per track.
type segBuf struct {
	parts  map[int]*fmp4.PartTrack
	codecs map[int]codecs.Codec // per track, of its first sample: the init the segment needs
	end    int64                // ns: end of the latest sample
}

func newSegBuf() *segBuf {
	return &segBuf{parts: map[int]*fmp4.PartTrack{}, codecs: map[int]codecs.Codec{}}
}

func (b *segBuf) add(t *track, p *pending) {
	pt := b.parts[t.idx]
	if pt == nil {
		pt = &fmp4.PartTrack{ID: t.idx + 1, BaseTime: uint64(p.dts)}
		b.parts[t.idx] = pt
		b.codecs[t.idx] = p.codec
	}
	pt.Samples = append(pt.Samples, p.sample)
	if e := t.toNS(p.dts + int64(p.sample.Duration)); e > b.end {
		b.end = e
	}
}

// route puts a completed sample into the current or the next segment and
// cuts when the lead track reaches a keyframe past the target duration.
// Between the cut and the flush, the other tracks' samples before the cut
// still go to the current segment: tracks arrive through different workers
// and are not interleaved exactly.
func (s *Segmenter) route(t *track, p *pending) {
	ns := t.toNS(p.dts)
	target := int64(s.p.SegmentDuration)
	_, leadIn := s.cur.parts[s.lead]
	switch {
	case t.idx == s.lead:
		if s.held != nil && ns-s.heldEnd >= s.holdFor() {
			s.releaseHeld()
		}
		if s.cutting && ns >= s.cutAt {
			s.next.add(t, p)
		} else {
			s.cur.add(t, p)
		}
		if s.cutting && ns-s.cutAt >= int64(s.p.MaxLag) {
			s.flushCut() // the other tracks are late or gone: do not wait
			return
		}
	case s.cutting && ns >= s.cutAt:
		s.next.add(t, p)
	default:
		if !s.cutting && !leadIn && ns-s.segStart >= target+int64(s.p.MaxLag) {
			// No lead samples (video without a keyframe yet): cut on this
			// track so that memory stays bounded.
			s.cutting, s.cutAt = true, ns
			s.next.add(t, p)
		} else {
			s.cur.add(t, p)
		}
	}
	if s.cutting && s.othersReached() {
		s.flushCut()
	}
}

// maybeCut decides a cut when a lead keyframe arrives (not when its
// duration is known one frame later), so that the other tracks' samples
// from the cut on already go to the next segment.
//
// It cuts at the keyframe nearest the target: here, if the next one
// (expected a keyframe interval later, as the last one was) would end the
// segment further past the target than this one ends it before. With a
// browser host whose GOP the relay keeps at about 2 s, a 4 s target gives
// segments of 3-5 s instead of up to 6 s. A segment is never cut before
// half the target, except on a parameter change: samples with new SPS/PPS
// need a new init segment, which applies from a segment's start.
func (s *Segmenter) maybeCut(t *track, c converted, dts int64) {
	if t.idx != s.lead || !c.key {
		return
	}
	ns := t.toNS(dts)
	if s.lastKey >= 0 && ns > s.lastKey {
		s.keyGap = ns - s.lastKey
	}
	s.lastKey = ns
	if s.cutting {
		return
	}
	codec, leadIn := s.cur.codecs[s.lead]
	if !leadIn {
		return
	}
	target := int64(s.p.SegmentDuration)
	early := min(s.keyGap, target) / 2
	if change := !sameCodec(codec, c.codec); change || ns-s.segStart >= target-early {
		s.cutting, s.cutAt, s.cutCodec = true, ns, change
	}
}

// askForCut asks the publisher for a keyframe when the segment has reached
// its target and none has come to cut it (a publisher that sends
// keyframes only when asked; the relay's cadence may be off or longer than
// the target). Asked again every quarter target while none comes.
func (s *Segmenter) askForCut(t *track, dts int64) {
	if t.idx != s.lead || !t.video || s.cutting || s.p.RequestKeyframe == nil {
		return
	}
	ns := t.toNS(dts)
	target := int64(s.p.SegmentDuration)
	if ns-s.segStart < target {
		return
	}
	if s.askedAt >= s.segStart && ns-s.askedAt < target/4 {
		return
	}
	s.askedAt = ns
	s.p.RequestKeyframe(t.idx)
}

// othersReached reports whether every other recorded track has produced
// a sample at or after the cut.
func (s *Segmenter) othersReached() bool {
	for _, t := range s.tracks {
		if !t.enabled || t.idx == s.lead || !t.started {
			continue
		}
		if t.pending == nil || t.toNS(t.pending.dts) < s.cutAt {
			return false
		}
	}
	return true
}

// flushCut completes the segment ending at the cut. A segment cut at its
// target is held for holdFor; a parameter change within that time ends it
// instead, with the frames since the target cut added to it (within 1.5x
// the target), rather than leaving a segment of a few frames.
func (s *Segmenter) flushCut() {
	b, start, end := s.cur, s.segStart, s.cutAt
	s.cur, s.next, s.cutting = s.next, newSegBuf(), false
	s.segStart = s.cutAt
	if h := s.held; h != nil {
		s.held = nil
		if s.cutCodec && h.joins(b) && end-s.heldStart <= int64(s.p.SegmentDuration)*3/2 {
			h.merge(b)
			s.emit(h, s.heldStart, end)
			return
		}
		s.emit(h, s.heldStart, s.heldEnd)
	}
	if !s.cutCodec {
		s.held, s.heldStart, s.heldEnd = b, start, end
		return
	}
	s.emit(b, start, end)
}

// holdFor is how long (in media time) a segment cut at its target waits
// for a parameter change: an eighth of the target, at most 500 ms. Chromium
// steps its resolution 50-350 ms after a keyframe; a crash loses at most
// this much more than the segment being assembled.
func (s *Segmenter) holdFor() int64 {
	return min(int64(s.p.SegmentDuration)/8, int64(500*time.Millisecond))
}

func (s *Segmenter) releaseHeld() {
	if h := s.held; h != nil {
		s.held = nil
		s.emit(h, s.heldStart, s.heldEnd)
	}
}

// joins reports whether b's samples can continue h's in one segment: the
// same parameters for every track both have.
func (h *segBuf) joins(b *segBuf) bool {
	for i, c := range b.codecs {
		if hc, ok := h.codecs[i]; ok && !sameCodec(hc, c) {
			return false
		}
	}
	return true
}

// merge appends b's samples to h's. Each track's last sample in h already
// lasts until its first sample in b.
func (h *segBuf) merge(b *segBuf) {
	for i, pt := range b.parts {
		if hp := h.parts[i]; hp != nil {
			hp.Samples = append(hp.Samples, pt.Samples...)
		} else {
			h.parts[i], h.codecs[i] = pt, b.codecs[i]
		}
	}
	h.end = max(h.end, b.end)
}

// emit writes the init segment if the codecs of b's samples differ from
// the last init, then the segment covering [start, end).
func (s *Segmenter) emit(b *segBuf, start, end int64) {
	if len(b.parts) == 0 {
		return
	}
	// The init describes b's samples (t.codec may already be the next
	// segment's, after a parameter change); a track without samples in b
	// keeps what the last init said, or its current codec.
	want := make([]codecs.Codec, len(s.tracks))
	newInit := false
	for i, t := range s.tracks {
		if !t.enabled {
			continue
		}
		switch c, ok := b.codecs[i]; {
		case ok:
			want[i] = c
		case s.initCodecs[i] != nil:
			want[i] = s.initCodecs[i]
		default:
			want[i] = t.codec
		}
		if want[i] != nil && !sameCodec(s.initCodecs[i], want[i]) {
			newInit = true
		}
	}
	if newInit {
		if err := s.writeInit(want); err != nil {
			s.setErr(err)
			return
		}
	}
	part := fmp4.Part{SequenceNumber: uint32(s.seq + 1)}
	ids := make([]int, 0, len(b.parts))
	for i := range b.parts {
		if s.initCodecs[i] != nil {
			ids = append(ids, i)
		}
	}
	sort.Ints(ids)
	for _, i := range ids {
		part.Tracks = append(part.Tracks, b.parts[i])
	}
	if len(part.Tracks) == 0 {
		return
	}
	var buf seekablebuffer.Buffer
	if err := part.Marshal(&buf); err != nil {
		s.setErr(fmt.Errorf("segmenter: marshal segment: %w", err))
		return
	}
	if end < b.end && end == start {
		end = b.end
	}
	s.seq++
	seg := &Segment{Seq: s.seq, Init: s.initName, NewInit: newInit && s.inits > 1,
		Start: time.Duration(start), Duration: time.Duration(end - start), Data: buf.Bytes()}
	if err := s.p.Out.WriteSegment(seg); err != nil {
		s.setErr(err)
	}
}

func (s *Segmenter) writeInit(want []codecs.Codec) error {
	var init fmp4.Init
	for i, t := range s.tracks {
		s.initCodecs[i] = nil
		if t.enabled && want[i] != nil {
			init.Tracks = append(init.Tracks, &fmp4.InitTrack{ID: i + 1, TimeScale: uint32(t.clock), Codec: want[i]})
			s.initCodecs[i] = want[i]
		}
	}
	var buf seekablebuffer.Buffer
	if err := init.Marshal(&buf); err != nil {
		return fmt.Errorf("segmenter: marshal init: %w", err)
	}
	s.inits++
	s.initName = fmt.Sprintf("init_%d.mp4", s.inits)
	if err := s.p.Out.WriteInit(s.initName, buf.Bytes()); err != nil {
		// Not stored: write it again before the next segment.
		clear(s.initCodecs)
		return err
	}
	return nil
}

func (s *Segmenter) setErr(err error) {
	if s.err == nil {
		s.err = err
	}
}
