package frames

import (
	"math/rand/v2"
	"strings"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// MTU is the RTP payload size the packetiser aims for: small enough for
// WebRTC viewers behind tunnels and SRTP overhead.
const MTU = 1200

// Packetizer turns frames (from RTMP or RTSP ingest) into RTP packets for
// the relay, once per track: every RTP reader then forwards them as they are.
type Packetizer struct {
	h264 bool
	pay  rtp.Payloader
	seq  uint16
	pt   uint8
}

// NewPacketizer returns a packetiser for H.264 (packetization-mode 1) or
// Opus, or nil for other codecs.
func NewPacketizer(mime string, payloadType uint8) *Packetizer {
	p := &Packetizer{seq: uint16(rand.Uint32()), pt: payloadType}
	switch strings.ToLower(mime) {
	case "video/h264":
		p.h264, p.pay = true, &codecs.H264Payloader{}
	case "audio/opus":
		p.pay = &codecs.OpusPayloader{}
	default:
		return nil
	}
	return p
}

// Packetize returns the packets of one frame at RTP timestamp ts. units
// are H.264 NAL units (without start codes) or one Opus packet.
func (p *Packetizer) Packetize(ts uint32, units [][]byte) []*rtp.Packet {
	var payloads [][]byte
	if p.h264 {
		n := 0
		for _, u := range units {
			n += 4 + len(u)
		}
		annexB := make([]byte, 0, n)
		for _, u := range units {
			annexB = append(annexB, 0, 0, 0, 1)
			annexB = append(annexB, u...)
		}
		payloads = p.pay.Payload(MTU, annexB)
	} else {
		for _, u := range units {
			payloads = append(payloads, p.pay.Payload(MTU, u)...)
		}
	}
	out := make([]*rtp.Packet, 0, len(payloads))
	for i, pl := range payloads {
		out = append(out, &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: p.pt, SequenceNumber: p.seq,
			Timestamp: ts, Marker: i == len(payloads)-1}, Payload: pl})
		p.seq++
	}
	return out
}
