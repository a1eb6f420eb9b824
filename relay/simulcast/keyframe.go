package simulcast

import (
	"strings"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/vp9"
	"github.com/pion/rtp/codecs"

	"github.com/livegate/livegate/relay/codec"
)

// keyStart reports whether payload is the first packet of a keyframe a
// viewer can switch to, and the picture size it announces (0 when the
// codec's keyframes do not say, e.g. AV1, whose sequence header is not parsed).
//
// For H.264 only a packet carrying an SPS counts: the new layer's parameter
// sets must reach the decoder before its IDR, or the IDR would be decoded
// with the previous layer's SPS. Browsers and OBS send SPS and PPS in front
// of every IDR.
func keyStart(mime string, payload []byte) (start bool, width, height int) {
	switch {
	case strings.EqualFold(mime, codec.MimeH264):
		sps := h264SPS(payload)
		if sps == nil {
			return false, 0, 0
		}
		var s h264.SPS
		if s.Unmarshal(sps) != nil {
			return true, 0, 0
		}
		return true, s.Width(), s.Height()
	case strings.EqualFold(mime, codec.MimeVP8):
		if !codec.IsKeyframe(mime, payload) {
			return false, 0, 0
		}
		w, h := vp8Size(payload)
		return true, w, h
	case strings.EqualFold(mime, codec.MimeVP9):
		if !codec.IsKeyframe(mime, payload) {
			return false, 0, 0
		}
		w, h := vp9Size(payload)
		return true, w, h
	case strings.EqualFold(mime, codec.MimeAV1):
		return codec.IsKeyframe(mime, payload), 0, 0
	}
	return false, 0, 0
}

// h264SPS returns the SPS NAL unit of a single-NAL or STAP-A payload.
func h264SPS(p []byte) []byte {
	if len(p) < 1 {
		return nil
	}
	switch p[0] & 0x1f {
	case 7:
		return p
	case 24: // STAP-A: header, then (16-bit size, NAL unit)*
		for i := 1; i+2 < len(p); {
			size := int(p[i])<<8 | int(p[i+1])
			i += 2
			if size == 0 || i+size > len(p) {
				return nil
			}
			if p[i]&0x1f == 7 {
				return p[i : i+size]
			}
			i += size
		}
	}
	return nil
}

// vp8Size reads the picture size from a VP8 key frame's header (RFC 6386
// section 9.1): a 3-byte frame tag, the start code 9d 01 2a, then 14-bit
// width and height.
func vp8Size(payload []byte) (int, int) {
	var pkt codecs.VP8Packet
	b, err := pkt.Unmarshal(payload)
	if err != nil || len(b) < 10 || b[3] != 0x9d || b[4] != 0x01 || b[5] != 0x2a {
		return 0, 0
	}
	return int(uint16(b[6])|uint16(b[7])<<8) & 0x3fff, int(uint16(b[8])|uint16(b[9])<<8) & 0x3fff
}

// vp9Size takes the size from the payload descriptor's scalability
// structure (sent by browsers with key frames), else from the frame header.
func vp9Size(payload []byte) (int, int) {
	var pkt codecs.VP9Packet
	b, err := pkt.Unmarshal(payload)
	if err != nil {
		return 0, 0
	}
	if pkt.V && pkt.Y && len(pkt.Width) > 0 {
		// The largest spatial layer is the picture a viewer ends up with.
		n := len(pkt.Width) - 1
		return int(pkt.Width[n]), int(pkt.Height[n])
	}
	var h vp9.Header
	if h.Unmarshal(b) != nil || h.FrameSize == nil {
		return 0, 0
	}
	return h.Width(), h.Height()
}
