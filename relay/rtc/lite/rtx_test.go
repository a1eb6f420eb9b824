package lite

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/rtp"
)

// A retransmission for a viewer with transport-cc goes on its RTX stream
// (RFC 4588) with a sequence number of that stream and the original one
// before the payload: resent on the media SSRC it would seal the same SRTP
// index again under a new transport-cc number, two AES-GCM tags for one IV.
func TestRetransmissionOnRTXStream(t *testing.T) {
	r := newRig(t)
	p, media, in := connectMedia(t, r, dtls.SRTP_AEAD_AES_128_GCM)
	const ssrc, rtxSSRC, rtxPT = 0xabcdef, 0x123456, 97
	payload := bytes.Repeat([]byte{0xa5}, 900)
	h := rtp.Header{Version: 2, PayloadType: 96, SSRC: ssrc, SequenceNumber: 4000, Timestamp: 90000, Marker: true}
	recv := func() rtp.Packet {
		t.Helper()
		select {
		case b := <-media:
			plain, err := in.DecryptRTP(nil, b, nil)
			if err != nil {
				t.Fatalf("viewer cannot open: %v", err)
			}
			var pk rtp.Packet
			if err := pk.Unmarshal(plain); err != nil {
				t.Fatal(err)
			}
			return pk
		case <-time.After(5 * time.Second):
			t.Fatal("nothing arrived")
		}
		return rtp.Packet{}
	}
	if err := p.WriteRTP(&h, payload); err != nil {
		t.Fatal(err)
	}
	orig := recv()
	var prev uint16
	for i := range 3 {
		if err := p.WriteRTX(&h, payload, rtxSSRC, rtxPT); err != nil {
			t.Fatal(err)
		}
		pk := recv()
		if pk.SSRC != rtxSSRC || pk.PayloadType != rtxPT || pk.Timestamp != h.Timestamp || pk.Marker != h.Marker {
			t.Fatalf("retransmission %d: ssrc %x pt %d ts %d marker %v, want the RTX stream's with the original's timing",
				i, pk.SSRC, pk.PayloadType, pk.Timestamp, pk.Marker)
		}
		if len(pk.Payload) != 2+len(payload) || binary.BigEndian.Uint16(pk.Payload) != h.SequenceNumber ||
			!bytes.Equal(pk.Payload[2:], payload) {
			t.Fatalf("retransmission %d: payload is not the original sequence number and payload", i)
		}
		if len(pk.GetExtension(3)) != 2 || bytes.Equal(pk.GetExtension(3), orig.GetExtension(3)) {
			t.Fatalf("retransmission %d: transport-cc number %x, the original's %x: want its own", i,
				pk.GetExtension(3), orig.GetExtension(3))
		}
		if i > 0 && pk.SequenceNumber != prev+1 {
			t.Fatalf("RTX sequence %d after %d", pk.SequenceNumber, prev)
		}
		prev = pk.SequenceNumber
	}
	if err := p.WriteRTX(&h, payload, 0, rtxPT); err == nil {
		t.Fatal("WriteRTX without an RTX stream succeeded")
	}
}

// Each RTX stream counts on its own: a viewer with two video sections has
// two, and the packets of one must not move the other's numbers (a jump of
// half the sequence space would make the sealer reuse an index).
func TestRTXStreamsNumberedApart(t *testing.T) {
	var p probeSend
	a1, _ := p.nextRTX(1)
	for range 40000 {
		if _, err := p.nextRTX(2); err != nil {
			t.Fatal(err)
		}
	}
	if a2, _ := p.nextRTX(1); a2 != a1+1 {
		t.Fatalf("stream 1: %d after %d, want the next number", a2, a1)
	}
	for ssrc := uint32(3); ssrc <= maxRTXStreams; ssrc++ {
		if _, err := p.nextRTX(ssrc); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.nextRTX(maxRTXStreams + 1); err == nil {
		t.Fatal("more RTX streams than the bound were numbered")
	}
}
