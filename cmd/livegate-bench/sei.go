package main

import (
	"bytes"
	"encoding/binary"
)

// seiUUID marks livegate-bench timing messages in H.264
// user_data_unregistered SEI (payloadType 5). It has no zero bytes, so it
// never needs emulation prevention itself.
var seiUUID = [16]byte{'l', 'i', 'v', 'e', 'g', 'a', 't', 'e', '-', 'b', 'e', 'n', 'c', 'h', 'T', 'S'}

const (
	naluSEI   = 6
	naluIDR   = 5
	naluSlice = 1
	naluSPS   = 7
	naluSTAPA = 24
	naluFUA   = 28

	seiUserDataUnregistered = 5
	// seiPayloadSize is the UUID, the send time (UnixNano, big endian) and
	// a frame counter (big endian).
	seiPayloadSize = 16 + 8 + 4
)

// appendEmulationPrevention appends rbsp to dst as NAL unit payload bytes:
// a 0x03 goes in after every two zero bytes that are followed by a byte
// <= 0x03 (H.264 7.4.1).
func appendEmulationPrevention(dst, rbsp []byte) []byte {
	zeros := 0
	for _, b := range rbsp {
		if zeros >= 2 && b <= 3 {
			dst = append(dst, 3)
			zeros = 0
		}
		dst = append(dst, b)
		if b == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return dst
}

// removeEmulationPrevention appends the RBSP of NAL unit payload bytes to dst.
func removeEmulationPrevention(dst, ebsp []byte) []byte {
	zeros := 0
	for _, b := range ebsp {
		if zeros >= 2 && b == 3 {
			zeros = 0
			continue
		}
		dst = append(dst, b)
		if b == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return dst
}

// appendTimingSEI appends one SEI NAL unit (header byte included, no start
// code) carrying a user_data_unregistered message with seiUUID, the send
// time and the frame counter, followed by the rbsp trailing bits.
func appendTimingSEI(dst []byte, sendUnixNano int64, counter uint32) []byte {
	var rbsp [2 + seiPayloadSize + 1]byte
	rbsp[0] = seiUserDataUnregistered
	rbsp[1] = seiPayloadSize
	copy(rbsp[2:18], seiUUID[:])
	binary.BigEndian.PutUint64(rbsp[18:26], uint64(sendUnixNano))
	binary.BigEndian.PutUint32(rbsp[26:30], counter)
	rbsp[30] = 0x80            // rbsp_stop_one_bit + alignment
	dst = append(dst, naluSEI) // forbidden_zero_bit 0, nal_ref_idc 0, type 6
	return appendEmulationPrevention(dst, rbsp[:])
}

// seiParser finds livegate-bench timing messages in SEI NAL units. It keeps
// a scratch buffer, so one parser must not be used concurrently.
type seiParser struct {
	rbsp []byte
}

// parse returns the send time and frame counter of the first timing message
// in nal (an SEI NAL unit with its header byte).
func (p *seiParser) parse(nal []byte) (sendUnixNano int64, counter uint32, ok bool) {
	if len(nal) < 2 || nal[0]&0x1f != naluSEI {
		return 0, 0, false
	}
	p.rbsp = removeEmulationPrevention(p.rbsp[:0], nal[1:])
	b := p.rbsp
	for len(b) > 0 && !(len(b) == 1 && b[0] == 0x80) {
		typ, n := seiVarint(b)
		if n == 0 {
			return 0, 0, false
		}
		b = b[n:]
		size, n := seiVarint(b)
		if n == 0 || size > len(b)-n {
			return 0, 0, false
		}
		b = b[n:]
		msg := b[:size]
		b = b[size:]
		if typ == seiUserDataUnregistered && len(msg) >= 24 && bytes.Equal(msg[:16], seiUUID[:]) {
			sendUnixNano = int64(binary.BigEndian.Uint64(msg[16:24]))
			if len(msg) >= 28 {
				counter = binary.BigEndian.Uint32(msg[24:28])
			}
			return sendUnixNano, counter, true
		}
	}
	return 0, 0, false
}

// seiVarint reads an SEI payload type or size (a run of 0xFF bytes, each
// adding 255, then a final byte). n is 0 if b ends first.
func seiVarint(b []byte) (v, n int) {
	for n < len(b) {
		c := b[n]
		n++
		v += int(c)
		if c != 0xff {
			return v, n
		}
	}
	return 0, 0
}

// insertTimingSEI appends the Annex-B access unit au to dst with a timing
// SEI NAL unit (behind a 4-byte start code) in front of its first VCL NAL
// unit, i.e. after any SPS/PPS/other SEI, as H.264 7.4.1.2.3 orders them.
func insertTimingSEI(dst, au []byte, sendUnixNano int64, counter uint32) []byte {
	pos := firstVCLStartCode(au)
	dst = append(dst, au[:pos]...)
	dst = append(dst, 0, 0, 0, 1)
	dst = appendTimingSEI(dst, sendUnixNano, counter)
	return append(dst, au[pos:]...)
}

// firstVCLStartCode returns the offset of the start code (3 or 4 bytes) of
// the first coded slice NAL unit in an Annex-B buffer, or len(au) if none.
func firstVCLStartCode(au []byte) int {
	for i := 0; i+3 < len(au); {
		j := bytes.Index(au[i:], []byte{0, 0, 1})
		if j < 0 || i+j+3 >= len(au) {
			break
		}
		sc := i + j
		if t := au[sc+3] & 0x1f; t == naluSlice || t == naluIDR {
			if sc > 0 && au[sc-1] == 0 {
				sc--
			}
			return sc
		}
		i += j + 3
	}
	return len(au)
}

// scanH264 inspects one H.264 RTP payload (RFC 6184). key reports a
// packet a decoder can start from: a single IDR or SPS NAL unit, a STAP-A
// holding an SPS or IDR, or the first fragment of an IDR. The SEI NAL units
// it carries (single or inside a STAP-A) are appended to seis, which may be
// reused between calls; they alias payload.
func scanH264(payload []byte, seis [][]byte) (key bool, _ [][]byte) {
	if len(payload) < 1 {
		return false, seis
	}
	switch t := payload[0] & 0x1f; t {
	case naluIDR, naluSPS:
		return true, seis
	case naluSEI:
		return false, append(seis, payload)
	case naluSTAPA:
		for i := 1; i+2 <= len(payload); {
			size := int(binary.BigEndian.Uint16(payload[i:]))
			i += 2
			if size == 0 || size > len(payload)-i {
				break
			}
			nal := payload[i : i+size]
			switch nal[0] & 0x1f {
			case naluIDR, naluSPS:
				key = true
			case naluSEI:
				seis = append(seis, nal)
			}
			i += size
		}
		return key, seis
	case naluFUA:
		return len(payload) >= 2 && payload[1]&0x80 != 0 && payload[1]&0x1f == naluIDR, seis
	}
	return false, seis
}
