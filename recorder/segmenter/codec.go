package segmenter

import (
	"bytes"
	"strings"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/av1"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/opus"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/vp9"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"

	"github.com/livegate/livegate/relay/codec"
	"github.com/livegate/livegate/relay/frames"
)

// Muxable reports whether a codec can be written to fMP4 by this package:
// every codec the frame layer frames (VP8 has no fMP4 binding in
// mediacommon, and none in CMAF, so VP8 tracks are left out of recordings).
func Muxable(mime string) bool { return codec.Framed(mime) }

// converted is a frame ready for the muxer.
type converted struct {
	sample *fmp4.Sample
	key    bool
	codec  codecs.Codec // parameters in force for this frame
}

// convert turns a frame into an fMP4 sample and tracks the codec's
// parameters (SPS/PPS, VP9 frame size, AV1 sequence header), which the init
// segment needs. ok is false for frames that cannot be recorded yet
// (before the first keyframe with parameters).
func (t *track) convert(f frames.RawFrame) (c converted, ok bool) {
	switch strings.ToLower(t.info.MimeType) {
	case "video/h264":
		return t.convertH264(f)
	case "video/vp9":
		data := f.Units[0]
		c.key = vp9.IsRandomAccess(data)
		if c.key {
			var h vp9.Header
			if h.Unmarshal(data) == nil && h.ColorConfig != nil {
				t.codec = &codecs.VP9{Width: h.Width(), Height: h.Height(), Profile: h.Profile,
					BitDepth: h.ColorConfig.BitDepth, ChromaSubsampling: h.ChromaSubsampling(),
					ColorRange: h.ColorConfig.ColorRange}
			}
		}
		if t.codec == nil {
			return c, false
		}
		c.sample = &fmp4.Sample{Payload: data, IsNonSyncSample: !c.key}
	case "video/av1":
		for _, obu := range f.Units {
			if len(obu) > 0 && av1.OBUType((obu[0]>>3)&0xf) == av1.OBUTypeSequenceHeader {
				t.codec = &codecs.AV1{SequenceHeader: obu}
			}
		}
		if t.codec == nil {
			return c, false
		}
		s, err := fmp4.NewSampleAV12(f.Units)
		if err != nil {
			return c, false
		}
		c.sample, c.key = s, !s.IsNonSyncSample
	case "audio/opus":
		if t.codec == nil {
			ch := int(t.info.Channels)
			if ch <= 0 {
				ch = 2
			}
			t.codec = &codecs.Opus{ChannelCount: ch}
		}
		c.sample, c.key = &fmp4.Sample{Payload: f.Units[0]}, true
	default:
		return c, false
	}
	c.codec = t.codec
	return c, true
}

func (t *track) convertH264(f frames.RawFrame) (c converted, ok bool) {
	au := make([][]byte, 0, len(f.Units))
	for _, n := range f.Units {
		if len(n) == 0 {
			continue
		}
		switch h264.NALUType(n[0] & 0x1f) {
		case h264.NALUTypeSPS:
			t.sps = n
		case h264.NALUTypePPS:
			t.pps = n
		case h264.NALUTypeAccessUnitDelimiter:
			continue // not allowed in MP4 samples
		case h264.NALUTypeIDR:
			c.key = true
		}
		au = append(au, n)
	}
	if t.sps != nil && t.pps != nil {
		if cur, isH264 := t.codec.(*codecs.H264); !isH264 || !bytes.Equal(cur.SPS, t.sps) || !bytes.Equal(cur.PPS, t.pps) {
			t.codec = &codecs.H264{SPS: t.sps, PPS: t.pps}
		}
	}
	if t.codec == nil || len(au) == 0 {
		return c, false
	}
	s, err := fmp4.NewSampleH264(0, au)
	if err != nil {
		return c, false
	}
	c.sample, c.codec = s, t.codec
	return c, true
}

// sameCodec reports whether two parameter sets describe the same init.
func sameCodec(a, b codecs.Codec) bool {
	switch x := a.(type) {
	case *codecs.H264:
		y, ok := b.(*codecs.H264)
		return ok && bytes.Equal(x.SPS, y.SPS) && bytes.Equal(x.PPS, y.PPS)
	case *codecs.VP9:
		y, ok := b.(*codecs.VP9)
		return ok && *x == *y
	case *codecs.AV1:
		y, ok := b.(*codecs.AV1)
		return ok && bytes.Equal(x.SequenceHeader, y.SequenceHeader)
	case *codecs.Opus:
		y, ok := b.(*codecs.Opus)
		return ok && *x == *y
	}
	return a == nil && b == nil
}

// defaultDuration is the duration given to a track's very last sample,
// which has no successor to measure it by.
func (t *track) defaultDuration(s *fmp4.Sample) uint32 {
	if t.lastDur > 0 {
		return t.lastDur
	}
	if strings.EqualFold(t.info.MimeType, "audio/opus") {
		if n := opus.PacketDuration2(s.Payload); n > 0 {
			return uint32(n * int64(t.clock) / 48000)
		}
	}
	return uint32(t.clock / 30)
}
