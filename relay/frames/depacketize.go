package frames

import (
	"encoding/binary"
	"strings"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/av1"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/livegate/livegate/relay/codec"
)

// RawFrame is one access unit (H.264), temporal unit (AV1), frame (VP9) or
// packet (Opus) with the RTP timestamp of its packets.
type RawFrame struct {
	TS    uint32
	Units [][]byte // NAL units / OBUs; one element for VP9 and Opus
}

// Depacketizer turns a track's RTP packets, in order, into frames. A frame
// is returned once complete (marker bit or a new timestamp). Packets lost
// upstream (a sequence gap) drop the frame being assembled rather than
// return a corrupt one. A Depacketizer is used by one goroutine.
type Depacketizer interface {
	Push(h *rtp.Header, payload []byte) []RawFrame
}

// NewDepacketizer returns a depacketizer for H.264 (packetization-mode 1),
// VP9, AV1 or Opus, or nil for other codecs.
func NewDepacketizer(mime string) Depacketizer {
	switch strings.ToLower(mime) {
	case "video/h264":
		return &h264Depack{}
	case "video/vp9":
		return &vp9Depack{}
	case "video/av1":
		return &av1Depack{}
	case "audio/opus":
		return &opusDepack{}
	}
	return nil
}

// assembler collects the units of the current frame.
type assembler struct {
	seq    codec.SeqTracker
	lost   bool // packets were lost just before the one begun last
	units  [][]byte
	ts     uint32
	have   bool
	broken bool
}

// begin handles a packet's timestamp and sequence number and returns the
// previous frame if this packet starts a new one.
func (a *assembler) begin(h *rtp.Header) []RawFrame {
	var out []RawFrame
	a.lost = a.seq.Gap(h.SequenceNumber)
	if a.lost {
		a.broken = true
	}
	if a.have && h.Timestamp != a.ts {
		out = a.finish()
		a.broken = false
	}
	if !a.have {
		a.ts, a.have = h.Timestamp, true
	}
	return out
}

func (a *assembler) finish() []RawFrame {
	var out []RawFrame
	if a.have && !a.broken && len(a.units) > 0 {
		out = []RawFrame{{TS: a.ts, Units: a.units}}
	}
	a.units, a.have, a.broken = nil, false, false
	return out
}

// h264Depack implements RFC 6184 packetization-mode 1 (single NAL unit,
// STAP-A, FU-A), which is what WebRTC uses.
type h264Depack struct {
	assembler
	fu []byte
}

func (d *h264Depack) Push(h *rtp.Header, p []byte) []RawFrame {
	out := d.begin(h)
	if d.lost {
		d.fu = nil
	}
	if len(p) < 1 {
		return out
	}
	switch typ := p[0] & 0x1f; {
	case typ >= 1 && typ <= 23:
		d.units = append(d.units, p)
	case typ == 24: // STAP-A
		for i := 1; i+2 <= len(p); {
			n := int(binary.BigEndian.Uint16(p[i:]))
			i += 2
			if n == 0 || i+n > len(p) {
				d.broken = true
				break
			}
			d.units = append(d.units, p[i:i+n])
			i += n
		}
	case typ == 28: // FU-A
		if len(p) < 3 {
			d.broken = true
			break
		}
		start, end := p[1]&0x80 != 0, p[1]&0x40 != 0
		if start {
			d.fu = append(make([]byte, 0, len(p)*4), p[0]&0xe0|p[1]&0x1f)
		} else if d.fu == nil {
			d.broken = true // the start was lost
			break
		}
		d.fu = append(d.fu, p[2:]...)
		if end {
			d.units = append(d.units, d.fu)
			d.fu = nil
		}
	default:
		d.broken = true
	}
	if h.Marker {
		out = append(out, d.finish()...)
	}
	return out
}

// vp9Depack reassembles frames from RFC 9628 payloads (one spatial layer,
// which is what browsers send unless SVC is asked for).
type vp9Depack struct {
	assembler
	pkt codecs.VP9Packet
	buf []byte
}

func (d *vp9Depack) Push(h *rtp.Header, p []byte) []RawFrame {
	out := d.begin(h)
	data, err := d.pkt.Unmarshal(p)
	if err != nil {
		d.broken = true
		return out
	}
	if d.pkt.B {
		d.buf = d.buf[:0:0]
	}
	d.buf = append(d.buf, data...)
	if d.pkt.E || h.Marker {
		if len(d.buf) > 0 {
			d.units = [][]byte{d.buf}
		}
		d.buf = nil
		out = append(out, d.finish()...)
	}
	return out
}

// av1Depack uses pion's RFC AV1 depacketizer, which returns complete OBUs
// with size fields, and splits them again.
type av1Depack struct {
	assembler
	dp codecs.AV1Depacketizer
}

func (d *av1Depack) Push(h *rtp.Header, p []byte) []RawFrame {
	out := d.begin(h)
	if d.lost {
		d.dp = codecs.AV1Depacketizer{}
	}
	buf, err := d.dp.Unmarshal(p)
	if err != nil {
		d.broken = true
	} else if len(buf) > 0 {
		var bs av1.Bitstream
		if err := bs.Unmarshal(buf); err != nil {
			d.broken = true
		}
		for _, obu := range bs {
			// fMP4 samples must not carry temporal delimiters.
			if len(obu) > 0 && av1.OBUType((obu[0]>>3)&0xf) == av1.OBUTypeTemporalDelimiter {
				continue
			}
			d.units = append(d.units, obu)
		}
	}
	if h.Marker {
		out = append(out, d.finish()...)
	}
	return out
}

// opusDepack: one RTP packet is one Opus packet.
type opusDepack struct{}

func (opusDepack) Push(h *rtp.Header, p []byte) []RawFrame {
	if len(p) == 0 {
		return nil
	}
	return []RawFrame{{TS: h.Timestamp, Units: [][]byte{p}}}
}
