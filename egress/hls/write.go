package hls

import (
	"encoding/hex"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"

	"github.com/livegate/livegate/relay/aac"
	"github.com/livegate/livegate/relay/codec"
	"github.com/livegate/livegate/relay/frames"
)

// writer places frames on the muxer's timeline: ticks of each track's
// clock since base.
type writer struct {
	m        *muxer
	vr       *frames.Reader
	base     time.Time
	vin, ain *input
	seg      segmenter
	lastV    int64
	lastA    int64
	haveV    bool
	haveA    bool
	firstPTS int64
	asked    time.Time // last keyframe request for the first segment

	// Gaps (see gap): the capture time of the last frame written, the
	// media time taken out of the timeline so far, the start of the
	// current segment on the timeline, and whether the next segment
	// follows a gap.
	lastAt  time.Time
	skip    time.Duration
	segAt   time.Time
	pendCut bool
	askKey  bool // the first video frame after a gap asks for a keyframe unless it is one

	// AAC whose times fell behind (see aacBehind).
	aacFix      time.Duration // added to the transcoder's times
	aacLat      time.Duration // usual arrival minus capture time
	behindSince time.Time     // arrival of the first frame of a run behind
	behindFrom  time.Time     // its capture time
}

// A publisher that pauses (a host's tab stalls, a reconnect within the
// grace) leaves a gap in the media. Kept on the timeline, it would go into
// the last sample of the segment being written (gohlslib ends a sample at
// the next one), which then lasts as long as the gap and grows
// EXT-X-TARGETDURATION past what players loaded. So a gap is taken out of
// the timeline, down to gapFill, the segment is ended at the next keyframe
// (asked for unless the media comes back with one), and the playlist marks the segment after the gap
// EXT-X-DISCONTINUITY, with its real EXT-X-PROGRAM-DATE-TIME.
const (
	// gapMin is the shortest silence on every track that counts as a
	// gap: no publisher's audio has one, and a screen share without audio
	// that sends a frame a second keeps its timeline as long as its
	// segments stay short (see gap).
	gapMin = time.Second
	// gapFill is what is left of a gap on the timeline: more than an
	// audio frame and a video frame, and more than the two tracks'
	// frames are apart when they come back.
	gapFill = 100 * time.Millisecond
)

// gap reports whether a frame captured at is the first after a gap, and
// takes the gap out of the timeline: at least gapMin since the last frame
// written on any track, and a segment that would otherwise be longer than
// the keyframe interval expected.
func (w *writer) gap(at time.Time) bool {
	if !w.haveV || w.lastAt.IsZero() {
		return false
	}
	d := at.Sub(w.lastAt)
	if d < gapMin || at.Add(-w.skip).Sub(w.segAt) <= w.m.s.p.TargetDuration {
		return false
	}
	w.skip += d - gapFill
	w.pendCut, w.askKey = true, true
	w.m.s.log.Info("hls: the publisher's media paused; the gap is cut from the timeline (discontinuity at the next keyframe)",
		"stream", w.m.path, "gap", d.Round(time.Millisecond))
	return true
}

// aacBehind is told of an AAC frame (captured at, arrived now) that falls
// before the audio already written, and reports whether it re-anchored the
// AAC times. The transcoder fills a pause of up to 10 s with silence, which
// comes as a burst of frames the gap took off the timeline: those are
// dropped. A longer pause it does not carry: its times go on as if there
// had been none, behind the video from then on. Frames that keep coming
// behind at the pace of real time (300 ms of them, not a burst) are put
// back at their arrival time less the usual latency.
func (w *writer) aacBehind(now, at time.Time) bool {
	if w.behindSince.IsZero() {
		w.behindSince, w.behindFrom = now, at
		return false
	}
	arrived := now.Sub(w.behindSince)
	if arrived < 300*time.Millisecond || at.Sub(w.behindFrom) > 2*arrived {
		return false
	}
	fix := now.Add(-w.aacLat).Sub(at)
	w.aacFix += fix
	w.behindSince = time.Time{}
	w.m.s.log.Info("hls: the AAC transcoder's times are behind the stream's (a long pause); audio re-anchored",
		"stream", w.m.path, "by", fix.Round(time.Millisecond))
	return true
}

// written notes the capture time of a frame written.
func (w *writer) written(at time.Time) {
	if at.After(w.lastAt) {
		w.lastAt = at
	}
}

func (w *writer) pts(in *input, at time.Time) int64 {
	// In two steps: nanoseconds times a 90 kHz clock overflow after a day.
	d := at.Sub(w.base)
	return int64(d/time.Second)*in.clock + int64(d%time.Second)*in.clock/int64(time.Second)
}

func hasSlice(units [][]byte) bool {
	for _, u := range units {
		if len(u) > 0 {
			if t := h264.NALUType(u[0] & 0x1f); t == h264.NALUTypeIDR || t == h264.NALUTypeNonIDR {
				return true
			}
		}
	}
	return false
}

func (w *writer) video(f *frames.Frame) {
	m := w.m
	at := w.vin.at(f.PTS)
	if !hasSlice(f.Units) {
		return
	}
	w.gap(at)
	if w.askKey {
		// A publisher that comes back after a reconnect or a long stall
		// often starts with one.
		w.askKey = false
		if !f.Key {
			w.vr.RequestKeyframe()
		}
	}
	pts := w.pts(w.vin, at.Add(-w.skip))
	if pts < 0 || (w.haveV && pts <= w.lastV) {
		return
	}
	if !w.haveV {
		w.firstPTS = pts
	}
	w.lastV, w.haveV = pts, true

	// New parameter sets (a resolution step) stay in-band; the playlists
	// announce them from the first segment that starts with them.
	m.mu.Lock()
	if f.Key {
		sps, pps := codec.H264ParamSets(f.Units)
		if _, changed, err := m.vs.observe(sps, pps); err != nil {
			m.s.log.Warn("hls: bad H.264 parameters", "stream", m.path, "err", err)
		} else if changed && m.vs.cur.n > 0 {
			m.s.log.Debug("hls: new H.264 parameters", "stream", m.path, "version", m.vs.cur.n,
				"sps", hex.EncodeToString(m.vs.cur.sps), "pps", hex.EncodeToString(m.vs.cur.pps))
		}
	}
	seg, starts := w.seg.frame(pts, f.Key)
	if starts {
		m.vs.segmentStarts(seg, w.pendCut && seg > firstSegmentID)
		m.vs.started(seg, at)
		w.segAt, w.pendCut = at.Add(-w.skip), false
	}
	m.mu.Unlock()

	// The capture time is what the playlist dates segments with.
	if err := m.hls.WriteH264(w.vin.track, at, pts, f.Units); err != nil {
		m.s.log.Debug("hls: write video", "stream", m.path, "err", err)
	}
	w.written(at)
	if seg > firstSegmentID {
		if !m.content.Swap(true) {
			m.s.log.Debug("hls: first segment ready", "stream", m.path)
		}
		m.parts.frame()
		return
	}
	// Players wait for the first complete segment: ask for its closing
	// keyframe once it is long enough to start playing from, instead of
	// waiting for the publisher's next one.
	elapsed := ticksToDuration(pts-w.firstPTS, w.vin.clock)
	if elapsed >= max(firstSegment, w.m.s.p.SegmentDuration) && time.Since(w.asked) > time.Second {
		w.asked = time.Now()
		w.vr.RequestKeyframe()
	}
}

func (w *writer) opus(f *frames.Frame) {
	if w.ain == nil {
		return
	}
	at := w.ain.at(f.PTS)
	w.gap(at)
	pts := w.pts(w.ain, at.Add(-w.skip))
	if pts < 0 || (w.haveA && pts <= w.lastA) {
		return
	}
	w.lastA, w.haveA = pts, true
	if err := w.m.hls.WriteOpus(w.ain.track, at, pts, f.Units); err != nil {
		w.m.s.log.Debug("hls: write audio", "stream", w.m.path, "err", err)
	}
	w.written(at)
}

func (w *writer) aac(f aac.Frame) {
	if w.ain == nil || f.At.IsZero() {
		return
	}
	now := time.Now()
	at := f.At.Add(w.aacFix)
	w.gap(at)
	pts := w.pts(w.ain, at.Add(-w.skip))
	if pts < 0 || (w.haveA && pts <= w.lastA) {
		if !w.aacBehind(now, at) {
			return
		}
		at = f.At.Add(w.aacFix)
		if pts = w.pts(w.ain, at.Add(-w.skip)); pts < 0 || pts <= w.lastA {
			return
		}
	}
	w.behindSince = time.Time{}
	if lat := now.Sub(at); w.aacLat == 0 {
		w.aacLat = lat
	} else {
		w.aacLat += (lat - w.aacLat) / 16
	}
	w.lastA, w.haveA = pts, true
	if err := w.m.hls.WriteMPEG4Audio(w.ain.track, at, pts, [][]byte{f.AU}); err != nil {
		w.m.s.log.Debug("hls: write audio", "stream", w.m.path, "err", err)
	}
	w.written(at)
}
