package relay_test

import (
	"testing"
	"time"

	"github.com/livegate/livegate/relay"
)

// Sender reports reach every viewer that has started, with the RTP time in
// the viewer's timeline (so lip sync survives a publisher reconnect) and the
// viewer's own packet and octet counts.
func TestSenderReportsAreTranslated(t *testing.T) {
	h := newHub(t, relay.Params{Workers: 2, Grace: time.Minute})
	a, _ := publish(t, h, "room/cam", h264Info, opusInfo)
	s := a.Stream()
	_, sink := addReader(t, s, 0)
	_, other := addReader(t, s, 0)
	_, waiting := addReader(t, s, 1) // audio: nothing sent on it yet

	va := newVideoSender(a, 0, 1000, 5000)
	va.delta() // no keyframe yet: readers have not started
	a.WriteSenderReport(0, 0x1111, 5000)
	tsKey := va.ts // publisher's timestamp of the keyframe
	fromA := va.gop(4)
	got := sink.waitCount(t, len(fromA))
	other.waitCount(t, len(fromA))
	if sr := sink.senderReports(); len(sr) != 0 {
		t.Fatalf("sender report sent to a reader before its first packet: %+v", sr)
	}

	const ntpA = 0xe000000100000000
	a.WriteSenderReport(0, ntpA, tsKey+2*3000)
	waitFor(t, "the sender report", func() bool { return len(sink.senderReports()) == 1 && len(other.senderReports()) == 1 })
	sr := sink.senderReports()[0]
	octets := uint32(0)
	for _, p := range got {
		octets += uint32(len(p.Payload))
	}
	if sr.NTP != ntpA || sr.RTP != uint64(got[2].Header.Timestamp) || sr.Packets != uint32(len(got)) || sr.Octets != octets {
		t.Errorf("sender report %+v, want ntp %#x rtp %d packets %d octets %d", sr, uint64(ntpA), got[2].Header.Timestamp, len(got), octets)
	}
	if n := len(waiting.senderReports()); n != 0 {
		t.Errorf("sender report of the video track sent to an audio reader")
	}

	// The publisher reconnects with another timestamp base.
	a.End("reconnect")
	a.WriteSenderReport(0, ntpA+1, 5000+5*3000) // ended: ignored
	time.Sleep(10 * time.Millisecond)
	b, _ := publish(t, h, "room/cam", h264Info, opusInfo)
	b.WriteSenderReport(0, ntpA+2, 12345678) // before any packet of B: no mapping yet
	vb := newVideoSender(b, 0, 40000, 12345678)
	fromB := vb.gop(4)
	got = sink.waitCount(t, len(fromA)+len(fromB))
	const ntpB = 0xe000000200000000
	b.WriteSenderReport(0, ntpB, 12345678+3*3000)
	waitFor(t, "the second sender report", func() bool { return len(sink.senderReports()) >= 2 })
	srs := sink.senderReports()
	if len(srs) != 2 {
		t.Fatalf("got %d sender reports, want 2 (ended or unmapped publishers' reports must be dropped): %+v", len(srs), srs)
	}
	want := got[len(fromA)+3].Header.Timestamp
	if srs[1].NTP != ntpB || srs[1].RTP != uint64(want) || srs[1].Packets != uint32(len(got)) {
		t.Errorf("sender report after reconnect %+v, want ntp %#x rtp %d (the reader's timestamp of that frame) packets %d",
			srs[1], uint64(ntpB), want, len(got))
	}
}
