// Package segmenter turns the RTP packets of a stream's tracks into fMP4
// (CMAF-style) init and media segments, without re-encoding. It does no I/O
// and keeps no clock of its own: segments are cut on the media timestamps,
// so it runs as fast as packets are fed, and a test can drive it faster
// than real time.
//
// A Segmenter is used by one goroutine.
package segmenter

import (
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"
	"github.com/pion/rtp"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
	"github.com/livegate/livegate/relay/frames"
)

// Segment is one media segment.
type Segment struct {
	Seq  int    // 1-based, in recording order
	Init string // name of the init segment it needs
	// NewInit marks the first segment after the init changed: the
	// publisher changed its parameters (a browser's resolution step, a
	// reconnect at another size). The timeline goes on, so it is not an
	// HLS discontinuity: the playlist's new EXT-X-MAP tells players.
	NewInit  bool
	Start    time.Duration // on the recording's timeline
	Duration time.Duration
	Data     []byte
}

// Output receives what the segmenter produces, in order. An init segment
// always comes before the first segment that needs it.
type Output interface {
	WriteInit(name string, data []byte) error
	WriteSegment(seg *Segment) error
}

// Params configures a Segmenter.
type Params struct {
	Tracks []relay.TrackInfo
	// SegmentDuration is the target duration (default 4 s). Segments are
	// cut on video keyframes, at the one nearest the target (judged by the
	// last keyframe interval, and never before half the target), and on
	// every change of the codec's parameters. When a segment reaches the
	// target without a keyframe, RequestKeyframe is called so that it ends
	// soon after; a publisher that cannot be asked (RTMP, RTSP) makes
	// segments as long as its GOP.
	SegmentDuration time.Duration
	// AlignWindow is how long, after the first packet, the segmenter waits
	// for RTCP sender reports of every track to place them on one timeline
	// (default 1 s). Without reports it falls back to arrival times.
	AlignWindow time.Duration
	// MaxLag is how far the lead (video) track may run ahead of a cut
	// while waiting for the other tracks to reach it (default 1 s).
	MaxLag time.Duration
	// RequestKeyframe, if set, is called when video was lost and the track
	// waits for a keyframe, and when a segment is due to be cut.
	RequestKeyframe func(track int)
	Out             Output
	Logger          *slog.Logger
}

// Segmenter is the muxer. See the package comment.
type Segmenter struct {
	p      Params
	log    *slog.Logger
	tracks []*track
	lead   int // track whose keyframes decide the cuts; -1 if none

	firstArrival time.Time
	aligned      bool
	srMode       bool
	arrToSR      float64
	zero         float64

	cur, next *segBuf
	cutting   bool
	cutAt     int64 // ns on the timeline
	segStart  int64
	seq       int
	cutCodec  bool // the pending cut is for a parameter change
	// held is the last segment cut at its target, kept for a moment in case
	// a parameter change follows at once (a browser steps its resolution
	// just after a keyframe): the few frames between are then added to it
	// instead of making a segment of their own.
	held               *segBuf
	heldStart, heldEnd int64
	lastKey            int64 // ns of the lead track's last keyframe (-1: none yet)
	keyGap             int64 // ns between the lead track's last two keyframes
	askedAt            int64 // ns at which a keyframe was last asked for a cut (-1: never)

	initCodecs []codecs.Codec // per track, as in the last written init
	initName   string
	inits      int
	err        error // first output error since the last call returned
}

// New validates the tracks. Tracks whose codec cannot be muxed are logged
// and left out; the others are recorded.
func New(p Params) (*Segmenter, error) {
	if p.SegmentDuration <= 0 {
		p.SegmentDuration = 4 * time.Second
	}
	if p.AlignWindow <= 0 {
		p.AlignWindow = time.Second
	}
	if p.MaxLag <= 0 {
		p.MaxLag = time.Second
	}
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	if p.Out == nil {
		return nil, fmt.Errorf("segmenter: no output")
	}
	s := &Segmenter{p: p, log: p.Logger, lead: -1, cur: newSegBuf(), next: newSegBuf(), lastKey: -1, askedAt: -1}
	for i, ti := range p.Tracks {
		t := &track{idx: i, info: ti.Codec, clock: int64(ti.Codec.ClockRate)}
		if Muxable(ti.Codec.MimeType) && ti.Codec.ClockRate > 0 {
			t.enabled, t.dp = true, frames.NewDepacketizer(ti.Codec.MimeType)
			t.video = ti.Kind == codec.Video
			if strings.EqualFold(ti.Codec.MimeType, codec.MimeH264) {
				t.sps, t.pps = codec.H264SpropParameterSets(ti.Codec.Fmtp)
			}
			if s.lead < 0 || (t.video && !s.tracks[s.lead].video) {
				s.lead = i
			}
		} else {
			s.log.Warn("recording: codec cannot be muxed into fMP4; this track is not recorded, the others are",
				"track", i, "codec", ti.Codec.MimeType)
		}
		s.tracks = append(s.tracks, t)
	}
	if s.lead < 0 {
		return nil, fmt.Errorf("segmenter: no recordable track (fMP4 takes H.264, VP9, AV1 and Opus)")
	}
	s.initCodecs = make([]codecs.Codec, len(s.tracks))
	return s, nil
}

// WriteRTP feeds one RTP packet of track i, received at arrival. Packets
// of a track must come in order. The error reports a failed output (a
// segment that could not be stored); the segmenter carries on regardless.
func (s *Segmenter) WriteRTP(i int, h *rtp.Header, payload []byte, arrival time.Time) error {
	if i < 0 || i >= len(s.tracks) || !s.tracks[i].enabled {
		return nil
	}
	t := s.tracks[i]
	if s.firstArrival.IsZero() {
		s.firstArrival = arrival
	}
	if t.seq.Gap(h.SequenceNumber) && t.video && t.started {
		// A lost video packet breaks the pictures that follow until the
		// next keyframe: record a frozen picture rather than garbage.
		t.needKey = true
		if s.p.RequestKeyframe != nil {
			s.p.RequestKeyframe(i)
		}
	}
	for _, f := range t.dp.Push(h, payload) {
		ts := t.unwrap(f.TS)
		if !t.mapped {
			t.noteArrival(ts, arrival)
			t.preroll = append(t.preroll, pframe{f: f, ts: ts})
			continue
		}
		s.addFrame(t, f, ts)
	}
	s.tryAlign(arrival)
	return s.takeErr()
}

// WriteSenderReport feeds an RTCP sender report of track i, which maps its
// RTP clock to the publisher's wall clock (NTP) and so aligns the tracks.
func (s *Segmenter) WriteSenderReport(i int, ntp uint64, rtpTime uint32) {
	if i < 0 || i >= len(s.tracks) {
		return
	}
	t := s.tracks[i]
	t.srNTP = float64(ntp>>32) + float64(ntp&0xffffffff)/(1<<32)
	t.srRTP, t.haveSR = rtpTime, true
}

func (s *Segmenter) takeErr() error {
	err := s.err
	s.err = nil
	return err
}

// tryAlign fixes every track's place on the common timeline once all have
// sender reports, or when the alignment window has passed.
func (s *Segmenter) tryAlign(now time.Time) {
	if s.aligned {
		for _, t := range s.tracks {
			if t.enabled && !t.mapped && len(t.preroll) > 0 {
				s.mapTrack(t, s.offset(t))
			}
		}
		return
	}
	ready, buffered := true, 0
	for _, t := range s.tracks {
		if t.enabled && (len(t.preroll) == 0 || !t.haveSR) {
			ready = false
		}
		buffered += len(t.preroll)
	}
	if !ready && now.Sub(s.firstArrival) < s.p.AlignWindow && buffered < maxPreroll {
		return
	}
	s.align()
}

const maxPreroll = 4096

func (s *Segmenter) align() {
	s.aligned, s.srMode = true, true
	var withFrames []*track
	for _, t := range s.tracks {
		if len(t.preroll) > 0 {
			withFrames = append(withFrames, t)
			if !t.haveSR {
				s.srMode = false
			}
		}
	}
	if len(withFrames) == 0 {
		s.aligned = false
		return
	}
	var sum float64
	for _, t := range withFrames {
		if t.haveSR {
			sum += t.srOffset() - t.arrOff
		}
	}
	if s.srMode {
		s.arrToSR = sum / float64(len(withFrames))
	}
	s.zero = math.Inf(1)
	for _, t := range withFrames {
		s.zero = math.Min(s.zero, float64(t.preroll[0].ts)/float64(t.clock)+s.offset(t))
	}
	mode := "rtcp"
	if !s.srMode {
		mode = "arrival"
	}
	s.log.Debug("recording: tracks aligned", "mode", mode, "tracks", len(withFrames))
	for _, t := range withFrames {
		s.mapTrack(t, s.offset(t))
	}
}

// offset is the track's media-to-wall offset in the timeline's clock.
func (s *Segmenter) offset(t *track) float64 {
	switch {
	case s.srMode && t.haveSR:
		return t.srOffset()
	case s.srMode:
		return t.arrOff + s.arrToSR
	}
	return t.arrOff
}

func (s *Segmenter) mapTrack(t *track, off float64) {
	t.base = int64(math.Round((s.zero - off) * float64(t.clock)))
	t.mapped = true
	pre := t.preroll
	t.preroll = nil
	for _, pf := range pre {
		s.addFrame(t, pf.f, pf.ts)
	}
}

// addFrame places a frame on the timeline and completes the previous one.
func (s *Segmenter) addFrame(t *track, f frames.RawFrame, ts int64) {
	dts := ts - t.base
	if dts < 0 {
		return // before the recording's start
	}
	c, ok := t.convert(f)
	if !ok {
		return
	}
	if t.video && (!t.started || t.needKey) && !c.key {
		return // a decoder cannot start here
	}
	if t.pending != nil {
		if dts <= t.pending.dts {
			return // timestamps must increase
		}
		d := dts - t.pending.dts
		if d > math.MaxUint32 {
			d = math.MaxUint32
		}
		t.pending.sample.Duration = uint32(d)
		t.lastDur = uint32(d)
		s.route(t, t.pending)
	}
	s.maybeCut(t, c, dts)
	if !c.key {
		s.askForCut(t, dts)
	}
	t.started, t.needKey = true, false
	t.pending = &pending{converted: c, dts: dts}
}

// Flush completes every pending sample and writes what is left as the
// last segment(s). Call it once, at the end of the recording.
func (s *Segmenter) Flush() error {
	if !s.aligned {
		s.align()
	}
	for _, t := range s.tracks {
		if t.pending != nil {
			t.pending.sample.Duration = t.defaultDuration(t.pending.sample)
			s.route(t, t.pending)
			t.pending = nil
		}
	}
	if s.cutting {
		s.flushCut()
	}
	s.releaseHeld()
	s.emit(s.cur, s.segStart, s.cur.end)
	s.cur = newSegBuf()
	return s.takeErr()
}
