package relay

import (
	"sync/atomic"

	"github.com/pion/rtp"
)

// Packet is one RTP packet of a track in the track's output numbering:
// sequence numbers and timestamps stay continuous across publisher
// reconnects. A Packet is immutable once handed to the fan-out and shared by
// every reader, the NACK history and the GOP cache.
type Packet struct {
	// Header has no extensions (their IDs were negotiated with the publisher,
	// not with readers); SSRC and payload type are set per reader.
	Header  rtp.Header
	Payload []byte
	// Keyframe marks the first packet of a frame a decoder can start from.
	// Every audio packet is one.
	Keyframe bool
}

// history keeps the last packets of a track by sequence number so that NACKs
// from any number of readers are answered from one shared copy.
type history struct {
	slots []atomic.Pointer[Packet]
	mask  uint16
}

func newHistory(size int) *history {
	n := 1
	for n < size && n < 1<<15 {
		n <<= 1
	}
	return &history{slots: make([]atomic.Pointer[Packet], n), mask: uint16(n - 1)}
}

func (h *history) put(p *Packet) {
	h.slots[p.Header.SequenceNumber&h.mask].Store(p)
}

// get returns the packet with this sequence number, or nil once it has been
// overwritten by a newer one.
func (h *history) get(seq uint16) *Packet {
	p := h.slots[seq&h.mask].Load()
	if p == nil || p.Header.SequenceNumber != seq {
		return nil
	}
	return p
}

// seqNewer reports whether sequence number a is after b, modulo 2^16.
func seqNewer(a, b uint16) bool {
	return a != b && a-b < 1<<15
}
