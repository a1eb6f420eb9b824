package hls

import (
	"bytes"
	"fmt"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"
	mp4codecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"
)

// A browser publisher changes its H.264 parameters (SPS/PPS) at every
// resolution step. fMP4 carries them in the init section, which gohlslib
// writes once. Rather than restart the muxer (new names, a playlist that
// starts over, errors for every player), the muxer keeps running with the
// new parameter sets in-band (every keyframe carries them) and the playlists
// are rewritten on their way out: the first segment that starts with new
// parameters gets EXT-X-DISCONTINUITY and an EXT-X-MAP of its own, an init
// section this package builds with the same track layout as gohlslib's.
//
// To know which segment a frame lands in, the writer follows gohlslib's
// segmentation rule (a segment ends at the first keyframe at least
// SegmentMinDuration after its start), counted with the same arithmetic.

// firstSegmentID is the number of gohlslib's first segment: an LL-HLS
// playlist opens with seven gap segments (0-6) that iOS requires.
const firstSegmentID = 7

// fmp4StartDTS is gohlslib's offset of every timestamp.
const fmp4StartDTS = 10 * time.Second

// maxVersions bounds the parameter sets kept for a muxer (each one is an
// init section of a few hundred bytes).
const maxVersions = 64

// version is one set of H.264 parameters and its init section.
type version struct {
	n        int
	sps, pps []byte
	init     []byte
}

// change says that segment seg is the first with parameters v; k counts
// the changes of the muxer (0: its first parameters), which makes the
// playlists' discontinuity sequence.
type change struct {
	seg uint64
	v   int
	k   int
}

func buildInit(sps, pps []byte) ([]byte, error) {
	init := fmp4.Init{Tracks: []*fmp4.InitTrack{{
		ID:        1,
		TimeScale: 90000,
		Codec:     &mp4codecs.H264{SPS: sps, PPS: pps},
	}}}
	var w seekablebuffer.Buffer
	if err := init.Marshal(&w); err != nil {
		return nil, fmt.Errorf("hls: init section: %w", err)
	}
	return w.Bytes(), nil
}

// ticksToDuration is gohlslib's conversion, so that the segment boundaries
// computed here fall where the muxer puts them.
func ticksToDuration(v int64, clock int64) time.Duration {
	secs := v / clock
	dec := v % clock
	return time.Duration(secs)*time.Second + time.Duration(dec)*time.Second/time.Duration(clock)
}

// segmenter follows the video track's segmentation.
type segmenter struct {
	min     time.Duration
	clock   int64
	started bool
	seg     uint64
	start   time.Duration
}

// frame places a video frame (PTS in ticks on the muxer's timeline) and
// reports its segment and whether it starts one.
func (s *segmenter) frame(pts int64, key bool) (uint64, bool) {
	dts := ticksToDuration(pts+int64(fmp4StartDTS/time.Millisecond)*s.clock/1000, s.clock)
	if !s.started {
		s.started, s.seg, s.start = true, firstSegmentID, dts
		return s.seg, true
	}
	if key && dts-s.start >= s.min {
		s.seg++
		s.start = dts
		return s.seg, true
	}
	return s.seg, false
}

// versions is the parameter history of one muxer, written by its writer
// and read by requests (under muxer.mu).
type versions struct {
	list    []*version // by n; the oldest are dropped beyond maxVersions
	changes []change   // ascending seg; changes[0] covers the gap segments
	cur     *version
	peak    peak // of every parameter set seen, for the multivariant playlist
	// starts are the capture times of the last segments' first frames,
	// which gohlslib shows as EXT-X-PROGRAM-DATE-TIME: a check that the
	// segmentation followed here is gohlslib's.
	starts [32]segStart
}

type segStart struct {
	seg uint64
	at  time.Time
}

// started records when segment seg starts.
func (vs *versions) started(seg uint64, at time.Time) {
	vs.starts[seg%uint64(len(vs.starts))] = segStart{seg: seg, at: at}
}

// startOf is the recorded start of segment seg, if still known.
func (vs *versions) startOf(seg uint64) (time.Time, bool) {
	s := vs.starts[seg%uint64(len(vs.starts))]
	return s.at, s.seg == seg && !s.at.IsZero()
}

// observe notes the parameter sets of a frame; it returns true when they
// differ from the current ones.
func (vs *versions) observe(sps, pps []byte) (*version, bool, error) {
	if vs.cur != nil && (sps == nil || bytes.Equal(sps, vs.cur.sps)) && (pps == nil || bytes.Equal(pps, vs.cur.pps)) {
		return vs.cur, false, nil
	}
	if vs.cur != nil {
		if sps == nil {
			sps = vs.cur.sps
		}
		if pps == nil {
			pps = vs.cur.pps
		}
	}
	// A publisher that steps back to a size it had (bandwidth up and
	// down) reuses that init section: players have it cached.
	for _, v := range vs.list {
		if bytes.Equal(v.sps, sps) && bytes.Equal(v.pps, pps) {
			vs.cur = v
			return v, true, nil
		}
	}
	init, err := buildInit(sps, pps)
	if err != nil {
		return vs.cur, false, err
	}
	n := 0
	if k := len(vs.list); k > 0 {
		n = vs.list[k-1].n + 1
	}
	vs.peak.note(sps)
	v := &version{n: n, sps: sps, pps: pps, init: init}
	vs.list = append(vs.list, v)
	if len(vs.list) > maxVersions {
		vs.list = vs.list[1:]
	}
	vs.cur = v
	return v, true, nil
}

// segmentStarts records the parameters a new segment starts with; cut
// marks it as a discontinuity even with the same parameters (it follows a
// gap in the publisher's media, see writer.gap).
func (vs *versions) segmentStarts(seg uint64, cut bool) {
	if vs.cur == nil {
		return
	}
	if n := len(vs.changes); n > 0 && vs.changes[n-1].v == vs.cur.n && !cut {
		return
	}
	k := 0
	if n := len(vs.changes); n > 0 {
		k = vs.changes[n-1].k + 1
	} else {
		seg = 0 // the gap segments share the first parameters
	}
	vs.changes = append(vs.changes, change{seg: seg, v: vs.cur.n, k: k})
}

// prune forgets changes no playlist starting at segment first or later
// needs (it keeps the last one before first, which counts for before).
func (vs *versions) prune(first uint64) {
	i := 0
	for i+1 < len(vs.changes) && vs.changes[i+1].seg < first {
		i++
	}
	if i > 0 {
		vs.changes = append(vs.changes[:0], vs.changes[i:]...)
	}
}

// of is the parameter version of segment seg.
func (vs *versions) of(seg uint64) int {
	v := 0
	for _, c := range vs.changes {
		if c.seg > seg {
			break
		}
		v = c.v
	}
	return v
}

// startsAt reports whether segment seg starts new parameters.
func (vs *versions) startsAt(seg uint64) bool {
	for _, c := range vs.changes {
		if c.seg == seg {
			return c.k > 0
		}
	}
	return false
}

// before is the number of parameter changes in segments before seg: the
// discontinuity sequence of a playlist that starts at seg.
func (vs *versions) before(seg uint64) int {
	n := 0
	for _, c := range vs.changes {
		if c.seg >= seg {
			break
		}
		n = c.k
	}
	return n
}

func (vs *versions) get(n int) *version {
	for _, v := range vs.list {
		if v.n == n {
			return v
		}
	}
	return nil
}
