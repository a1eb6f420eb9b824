// Package mediain holds what RTMP and RTSP ingest share: turning H.264
// access units into the relay's RTP packets once per track, describing the
// track so that WebRTC viewers accept it, and transcoding AAC to Opus with
// one ffmpeg process per stream. It depends only on the relay core, so the
// ingest adapters stay independent of each other.
package mediain

import (
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/pion/rtp"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
	"github.com/livegate/livegate/relay/frames"
)

// VideoPT and AudioPT are the payload types of packets handed to the relay
// (readers rewrite them to what they negotiated).
const (
	VideoPT = 96
	AudioPT = 111
)

// H264 packetises one H.264 track for the relay. WebRTC decoders need the
// parameter sets in band, and RTMP and RTSP publishers usually send them
// only out of band (FLV sequence header, SDP sprop-parameter-sets): H264
// puts the latest SPS and PPS in front of every IDR picture that lacks them.
type H264 struct {
	sps, pps []byte
	pk       *frames.Packetizer
}

// NewH264 returns a packetiser starting with the given parameter sets
// (either may be nil).
func NewH264(sps, pps []byte) *H264 {
	return &H264{sps: sps, pps: pps, pk: frames.NewPacketizer(codec.MimeH264, VideoPT)}
}

// SPS is the latest sequence parameter set seen (nil before the first).
func (h *H264) SPS() []byte { return h.sps }

// Packets returns the RTP packets of access unit au at RTP time ts (90 kHz).
// Access unit delimiters and filler data are dropped.
func (h *H264) Packets(ts uint32, au [][]byte) []*rtp.Packet {
	units := make([][]byte, 0, len(au)+2)
	idr, hasSPS, hasPPS := false, false, false
	for _, n := range au {
		if len(n) == 0 {
			continue
		}
		switch h264.NALUType(n[0] & 0x1f) {
		case h264.NALUTypeAccessUnitDelimiter, h264.NALUTypeFillerData:
			continue
		case h264.NALUTypeSPS:
			h.sps, hasSPS = append([]byte(nil), n...), true
		case h264.NALUTypePPS:
			h.pps, hasPPS = append([]byte(nil), n...), true
		case h264.NALUTypeIDR:
			idr = true
		}
		units = append(units, n)
	}
	if len(units) == 0 {
		return nil
	}
	if idr && (!hasSPS || !hasPPS) && h.sps != nil && h.pps != nil {
		units = append([][]byte{h.sps, h.pps}, withoutParamSets(units)...)
	}
	return h.pk.Packetize(ts, units)
}

func withoutParamSets(units [][]byte) [][]byte {
	out := units[:0:0]
	for _, n := range units {
		if t := h264.NALUType(n[0] & 0x1f); t != h264.NALUTypeSPS && t != h264.NALUTypePPS {
			out = append(out, n)
		}
	}
	return out
}

// H264Info describes an H.264 track with these parameter sets the way
// browsers offer H.264, so that WHEP viewers accept it: packetization-mode
// 1 and a profile-level-id whose profile part is one browsers use
// (constrained baseline 42e0, baseline 4200, main 4d00, high 6400). The
// parameter sets also go in sprop-parameter-sets for frame readers.
func H264Info(sps, pps []byte) relay.TrackInfo {
	fmtp := "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=" + ProfileLevelID(sps)
	if len(sps) > 0 && len(pps) > 0 {
		fmtp += ";sprop-parameter-sets=" + base64.StdEncoding.EncodeToString(sps) + "," +
			base64.StdEncoding.EncodeToString(pps)
	}
	return relay.TrackInfo{Kind: codec.Video, Codec: relay.Codec{MimeType: codec.MimeH264, ClockRate: 90000, Fmtp: fmtp}}
}

// ProfileLevelID is the profile-level-id to announce for an SPS (42e01f
// when it is unknown).
func ProfileLevelID(sps []byte) string {
	if len(sps) < 4 {
		return "42e01f"
	}
	profile, flags, level := sps[1], sps[2], sps[3]
	switch profile {
	case 66: // baseline: constrained when constraint_set1 is set
		if flags&0x40 != 0 {
			flags = 0xe0
		} else {
			flags = 0x00
		}
	case 77, 100:
		flags = 0x00
	}
	return strings.ToLower(fmt.Sprintf("%02x%02x%02x", profile, flags, level))
}

// OpusInfo describes the Opus track made by the transcoder or published
// natively: 48 kHz, two channels, as WebRTC requires.
func OpusInfo() relay.TrackInfo {
	return relay.TrackInfo{Kind: codec.Audio, Codec: relay.Codec{MimeType: codec.MimeOpus, ClockRate: 48000,
		Channels: 2, Fmtp: "minptime=10;useinbandfec=1"}}
}

// NopSource is the relay.Source of RTMP and RTSP publishers: they cannot be
// asked for a keyframe, so requests are ignored and late viewers start from
// the relay's GOP cache.
type NopSource struct{}

// RequestKeyframe implements relay.Source.
func (NopSource) RequestKeyframe(int) {}

// Authorizer decides whether a client may publish (or read) ROOM/NAME. It
// gets the token the client sent (empty if none) and its IP address, and
// returns who the client is (the token's identity; "" without one): a
// publisher's new connection of the same identity may take over its stream
// from a silent one (relay.Hub.PublishAs), as an encoder reconnecting after
// a network drop does while the server still holds its dead connection.
type Authorizer func(room, name, token, remoteIP string) (owner string, err error)
