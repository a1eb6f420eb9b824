package simulcast

import (
	"strings"

	"github.com/livegate/livegate/relay/codec"
)

// VP8 and VP9 number their pictures in the payload descriptor (picture ID,
// TL0PICIDX, VP8's KEYIDX), and every layer counts on its own. A receiver
// that sees the numbers jump back at a switch takes the new layer's frames
// for old ones and drops them (Chromium froze for seconds), so the forwarded
// numbers continue across switches like sequence numbers do. H.264 has no
// such fields; AV1's are in a header extension the relay does not forward.

// descFields locates the picture numbering fields of one payload: offsets
// into the payload, -1 when absent.
type descFields struct {
	pic     int   // picture ID
	picBits uint8 // 7 or 15
	tl0     int   // TL0PICIDX
	keyIdx  int   // VP8 KEYIDX (low 5 bits of its byte)
}

var noFields = descFields{pic: -1, tl0: -1, keyIdx: -1}

func fieldsOf(mime string, p []byte) descFields {
	switch {
	case strings.EqualFold(mime, codec.MimeVP8):
		return vp8Fields(p)
	case strings.EqualFold(mime, codec.MimeVP9):
		return vp9Fields(p)
	}
	return noFields
}

// vp8Fields parses the RFC 7741 payload descriptor.
func vp8Fields(p []byte) descFields {
	f := noFields
	if len(p) < 2 || p[0]&0x80 == 0 {
		return f
	}
	ext, i := p[1], 2
	if ext&0x80 != 0 { // I
		var ok bool
		if i, ok = f.pictureID(p, i); !ok {
			return noFields
		}
	}
	if ext&0x40 != 0 { // L
		if len(p) <= i {
			return noFields
		}
		f.tl0 = i
		i++
	}
	if ext&0x10 != 0 { // K (shares its byte with T)
		if len(p) <= i {
			return noFields
		}
		f.keyIdx = i
	}
	return f
}

// pictureID notes the picture ID at p[i] (7 bits, or 15 with the M bit),
// which VP8 and VP9 write alike, and returns the index after it; false
// when p ends inside it.
func (f *descFields) pictureID(p []byte, i int) (int, bool) {
	if len(p) <= i {
		return 0, false
	}
	f.pic, f.picBits = i, 7
	if p[i]&0x80 != 0 {
		if len(p) <= i+1 {
			return 0, false
		}
		f.picBits = 15
		i++
	}
	return i + 1, true
}

// vp9Fields parses the RFC 9628 payload descriptor.
func vp9Fields(p []byte) descFields {
	f := noFields
	if len(p) < 1 {
		return f
	}
	i := 1
	if p[0]&0x80 != 0 { // I
		var ok bool
		if i, ok = f.pictureID(p, i); !ok {
			return noFields
		}
	}
	if p[0]&0x20 != 0 && p[0]&0x10 == 0 { // L, non-flexible: layer byte, TL0PICIDX
		if len(p) <= i+1 {
			return noFields
		}
		f.tl0 = i + 1
	}
	return f
}

func (f descFields) picture(p []byte) uint16 {
	if f.picBits == 15 {
		return uint16(p[f.pic]&0x7f)<<8 | uint16(p[f.pic+1])
	}
	return uint16(p[f.pic] & 0x7f)
}

func (f descFields) setPicture(p []byte, v uint16) {
	if f.picBits == 15 {
		p[f.pic] = 0x80 | byte(v>>8)&0x7f
		p[f.pic+1] = byte(v)
		return
	}
	p[f.pic] = byte(v) & 0x7f
}

// numbering continues picture numbers across layer switches.
type numbering struct {
	picDelta, lastPic uint16
	tl0Delta, lastTL0 uint8
	keyDelta, lastKey uint8
	havePic, haveTL0  bool
	haveKey           bool
}

// rebase makes the first packet of a new layer (a keyframe) continue the
// numbers last forwarded.
func (n *numbering) rebase(f descFields, p []byte) {
	n.picDelta, n.tl0Delta, n.keyDelta = 0, 0, 0
	if f.pic >= 0 && n.havePic {
		n.picDelta = n.lastPic + 1 - f.picture(p)
	}
	if f.tl0 >= 0 && n.haveTL0 {
		n.tl0Delta = n.lastTL0 + 1 - p[f.tl0]
	}
	if f.keyIdx >= 0 && n.haveKey {
		n.keyDelta = n.lastKey + 1 - p[f.keyIdx]&0x1f
	}
}

// rewrite applies the deltas to a forwarded packet in place; newest says
// the packet is the newest forwarded so far (its numbers are the last).
func (n *numbering) rewrite(f descFields, p []byte, newest bool) {
	if f.pic >= 0 {
		mask := uint16(1)<<f.picBits - 1
		v := (f.picture(p) + n.picDelta) & mask
		f.setPicture(p, v)
		if newest {
			n.lastPic, n.havePic = v, true
		}
	}
	if f.tl0 >= 0 {
		p[f.tl0] += n.tl0Delta
		if newest {
			n.lastTL0, n.haveTL0 = p[f.tl0], true
		}
	}
	if f.keyIdx >= 0 {
		k := (p[f.keyIdx]&0x1f + n.keyDelta) & 0x1f
		p[f.keyIdx] = p[f.keyIdx]&0xe0 | k
		if newest {
			n.lastKey, n.haveKey = k, true
		}
	}
}
