// Package codec is the one home of codec knowledge: which codecs livegate
// forwards and frames, a track's codec parameters and how SDP (rtpmap, fmtp,
// sprop-parameter-sets) spells them, H.264 profiles and levels, whether an
// RTP packet starts a frame that a decoder can begin with (a keyframe), and
// RTP sequence gaps. It never depacketises whole frames (relay/frames does).
package codec

import "strings"

// Kind is the media kind of a track.
type Kind string

// Media kinds.
const (
	Audio Kind = "audio"
	Video Kind = "video"
)

// MIME types of the codecs livegate forwards.
const (
	MimeH264 = "video/H264"
	MimeVP8  = "video/VP8"
	MimeVP9  = "video/VP9"
	MimeAV1  = "video/AV1"
	MimeOpus = "audio/opus"
)

// Supported reports whether livegate can forward a codec with this MIME type.
func Supported(mime string) bool {
	switch {
	case strings.EqualFold(mime, MimeH264), strings.EqualFold(mime, MimeVP8),
		strings.EqualFold(mime, MimeVP9), strings.EqualFold(mime, MimeAV1),
		strings.EqualFold(mime, MimeOpus):
		return true
	}
	return false
}

// Framed reports whether the frame layer (relay/frames) can turn a codec's
// RTP packets into whole frames: H.264, VP9, AV1 and Opus. VP8 is forwarded
// but not framed (it also has no fMP4 binding, so recordings and HLS leave
// it out).
func Framed(mime string) bool {
	switch {
	case strings.EqualFold(mime, MimeH264), strings.EqualFold(mime, MimeVP9),
		strings.EqualFold(mime, MimeAV1), strings.EqualFold(mime, MimeOpus):
		return true
	}
	return false
}

// Canonical returns the supported MIME type spelled as this package does
// ("OPUS" from GStreamer becomes "audio/opus"), or mime unchanged.
func Canonical(mime string) string {
	for _, m := range []string{MimeH264, MimeVP8, MimeVP9, MimeAV1, MimeOpus} {
		if strings.EqualFold(mime, m) {
			return m
		}
	}
	return mime
}

// KindOf returns the media kind of a MIME type ("video/..." or "audio/...").
func KindOf(mime string) Kind {
	if strings.HasPrefix(strings.ToLower(mime), "audio/") {
		return Audio
	}
	return Video
}

// IsKeyframe reports whether an RTP payload of the given codec carries the
// beginning of a keyframe (or, for H.264, a parameter set that precedes one).
// Audio payloads are always independently decodable and report true.
// It does not allocate.
func IsKeyframe(mime string, payload []byte) bool {
	switch {
	case strings.EqualFold(mime, MimeH264):
		return h264Keyframe(payload)
	case strings.EqualFold(mime, MimeVP8):
		return vp8Keyframe(payload)
	case strings.EqualFold(mime, MimeVP9):
		return vp9Keyframe(payload)
	case strings.EqualFold(mime, MimeAV1):
		return av1Keyframe(payload)
	case KindOf(mime) == Audio:
		return true
	}
	return false
}

const (
	h264NALUIDR    = 5
	h264NALUSPS    = 7
	h264NALUPPS    = 8
	h264NALUSTAPA  = 24
	h264NALUFUA    = 28
	h264NALUHeader = 1
)

func h264Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	switch t := p[0] & 0x1f; t {
	case h264NALUIDR, h264NALUSPS:
		return true
	case h264NALUSTAPA:
		// STAP-A: 1 byte header, then (16-bit size, NALU)*.
		for i := 1; i+2 < len(p); {
			size := int(p[i])<<8 | int(p[i+1])
			i += 2
			if size == 0 || i+size > len(p) {
				return false
			}
			if nt := p[i] & 0x1f; nt == h264NALUIDR || nt == h264NALUSPS {
				return true
			}
			i += size
		}
	case h264NALUFUA:
		// FU-A: indicator, then header with S bit and the original type.
		if len(p) < 2 {
			return false
		}
		return p[1]&0x80 != 0 && p[1]&0x1f == h264NALUIDR
	}
	return false
}

// vp8Keyframe parses the RFC 7741 payload descriptor and then the first
// byte of the VP8 frame header, whose lowest bit is 0 for key frames.
func vp8Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	x, s, pid := p[0]&0x80 != 0, p[0]&0x10 != 0, p[0]&0x07
	if !s || pid != 0 {
		return false
	}
	i := 1
	if x {
		if len(p) < 2 {
			return false
		}
		ext := p[1]
		i++
		if ext&0x80 != 0 { // I: picture ID
			if len(p) <= i {
				return false
			}
			if p[i]&0x80 != 0 {
				i += 2
			} else {
				i++
			}
		}
		if ext&0x40 != 0 { // L: TL0PICIDX
			i++
		}
		if ext&0x20 != 0 || ext&0x10 != 0 { // T or K share one byte
			i++
		}
	}
	if len(p) <= i {
		return false
	}
	return p[i]&0x01 == 0
}

// vp9Keyframe uses the RFC 9628 descriptor: B (start of frame) set and P
// (inter-picture predicted) clear on the first spatial layer.
func vp9Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	predicted, start := p[0]&0x40 != 0, p[0]&0x08 != 0
	return start && !predicted
}

// av1Keyframe uses the N bit of the RTP aggregation header, which marks the
// first packet of a coded video sequence.
func av1Keyframe(p []byte) bool {
	return len(p) >= 1 && p[0]&0x08 != 0
}
