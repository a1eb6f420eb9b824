package relay_test

import (
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/livegate/livegate/relay"
)

// A viewer's NACK, in its own sequence numbers, is answered with the very
// packets it lost, from the shared history.
func TestRetransmitResendsFromHistory(t *testing.T) {
	_, pub, _, s := newStream(t, relay.Params{HistoryPackets: 64, Workers: 2}, "room/cam", h264Info)
	snd := newVideoSender(pub, 0, 65500, 12345)
	snd.delta() // not delivered: the reader's numbering starts at the keyframe
	r, sink := addReader(t, s, 0)
	_, other := addReader(t, s, 0)
	sent := snd.gop(39)
	orig := sink.waitCount(t, len(sent))
	other.waitCount(t, len(sent))

	nack := []uint16{
		orig[3].Header.SequenceNumber,
		orig[0].Header.SequenceNumber,
		orig[39].Header.SequenceNumber, // after the wrap of the publisher's numbering
	}
	sink.reset()
	r.Retransmit(nack)
	got := sink.packets()
	if len(got) != len(nack) {
		t.Fatalf("retransmitted %d packets, want %d", len(got), len(nack))
	}
	for i, idx := range []int{3, 0, 39} {
		if !sameHeader(got[i].Header, orig[idx].Header) || string(got[i].Payload) != string(orig[idx].Payload) {
			t.Errorf("retransmission %d = seq %d % x, want seq %d % x", i,
				got[i].Header.SequenceNumber, got[i].Payload, orig[idx].Header.SequenceNumber, orig[idx].Payload)
		}
	}
	if other.count() != len(sent) {
		t.Error("a NACK from one reader was answered to another")
	}
	if st := s.Stats().Tracks[0]; st.Retransmitted != uint64(len(nack)) {
		t.Errorf("stats retransmitted = %d, want %d", st.Retransmitted, len(nack))
	}

	// Sequence numbers the reader was never sent are not answered.
	sink.reset()
	last := orig[len(orig)-1].Header.SequenceNumber
	r.Retransmit([]uint16{last + 1, last + 1000, orig[0].Header.SequenceNumber - 1})
	if n := sink.count(); n != 0 {
		t.Fatalf("retransmitted %d packets that were never sent", n)
	}

	// Once the history has moved on, old packets are gone.
	sink.reset()
	more := snd.gop(99)
	all := sink.waitCount(t, len(more))
	sink.reset()
	r.Retransmit([]uint16{orig[0].Header.SequenceNumber, orig[20].Header.SequenceNumber})
	if n := sink.count(); n != 0 {
		t.Fatalf("retransmitted %d packets older than the history", n)
	}
	recent := all[len(all)-1]
	r.Retransmit([]uint16{recent.Header.SequenceNumber})
	got = sink.packets()
	if len(got) != 1 || !sameHeader(got[0].Header, recent.Header) || string(got[0].Payload) != string(recent.Payload) {
		t.Fatalf("recent packet not retransmitted correctly: %+v", got)
	}
}

// After a resync (here: a new publisher whose first packets the reader had
// to skip) the reader's earlier numbering is gone: NACKs for it are ignored
// rather than answered with the wrong packets.
func TestRetransmitIgnoresSequenceNumbersBeforeResync(t *testing.T) {
	h, a, _, s := newStream(t, relay.Params{HistoryPackets: 256, Grace: time.Minute}, "room/cam", h264Info)
	r, sink := addReader(t, s, 0)
	sndA := newVideoSender(a, 0, 1000, 5000)
	fromA := sndA.gop(9)
	gotA := sink.waitCount(t, len(fromA))
	a.End("reconnect")

	b, _ := publish(t, h, "room/cam", h264Info)
	sndB := newVideoSender(b, 0, 40000, 12345678)
	sndB.delta() // the reader cannot use these: it resumes at B's keyframe
	sndB.delta()
	fromB := sndB.gop(4)
	got := sink.waitCount(t, len(fromA)+len(fromB))
	assertPayloads(t, "reader", got, append(append([][]byte{}, fromA...), fromB...))
	assertContiguous(t, "reader", got)

	sink.reset()
	r.Retransmit([]uint16{gotA[0].Header.SequenceNumber, gotA[5].Header.SequenceNumber, gotA[9].Header.SequenceNumber})
	if p := sink.packets(); len(p) != 0 {
		t.Fatalf("NACK for numbers before the resync answered with %s", ids(payloadsOf(p)))
	}
	b1 := got[len(fromA)+1]
	r.Retransmit([]uint16{b1.Header.SequenceNumber})
	if p := sink.packets(); len(p) != 1 || string(p[0].Payload) != string(b1.Payload) || !sameHeader(p[0].Header, b1.Header) {
		t.Fatalf("NACK after the resync answered with %s, want %s", ids(payloadsOf(p)), ids([][]byte{b1.Payload}))
	}
}

func sameHeader(a, b rtp.Header) bool {
	return a.SequenceNumber == b.SequenceNumber && a.Timestamp == b.Timestamp &&
		a.Marker == b.Marker && a.PayloadType == b.PayloadType && a.SSRC == b.SSRC &&
		a.Extension == b.Extension
}
