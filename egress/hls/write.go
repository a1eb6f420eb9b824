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
	pts := w.pts(w.vin, at)
	if pts < 0 || (w.haveV && pts <= w.lastV) || !hasSlice(f.Units) {
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
		m.vs.segmentStarts(seg)
		m.vs.started(seg, at)
	}
	m.mu.Unlock()

	if err := m.hls.WriteH264(w.vin.track, at, pts, f.Units); err != nil {
		m.s.log.Debug("hls: write video", "stream", m.path, "err", err)
	}
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
	pts := w.pts(w.ain, at)
	if pts < 0 || (w.haveA && pts <= w.lastA) {
		return
	}
	w.lastA, w.haveA = pts, true
	if err := w.m.hls.WriteOpus(w.ain.track, at, pts, f.Units); err != nil {
		w.m.s.log.Debug("hls: write audio", "stream", w.m.path, "err", err)
	}
}

func (w *writer) aac(f aac.Frame) {
	if w.ain == nil || f.At.IsZero() {
		return
	}
	pts := w.pts(w.ain, f.At)
	if pts < 0 || (w.haveA && pts <= w.lastA) {
		return
	}
	w.lastA, w.haveA = pts, true
	if err := w.m.hls.WriteMPEG4Audio(w.ain.track, f.At, pts, [][]byte{f.AU}); err != nil {
		w.m.s.log.Debug("hls: write audio", "stream", w.m.path, "err", err)
	}
}
