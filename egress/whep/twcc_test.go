package whep

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"

	"github.com/livegate/livegate/relay/rtc"
	"github.com/livegate/livegate/relay/rtc/lite"
)

// A Chromium offer gets transport-cc (its extension id, rtcp-fb) and an RTX
// stream paired with the chosen codec for the video section, which probes
// pad on; the audio section gets the same extension id. An offer without
// the extension gets neither (viewers fall back to REMB and loss), nor does
// a viewer of a stream without simulcast.
func TestLiteAnswerTransportCC(t *testing.T) {
	raw, err := os.ReadFile("../../relay/rtc/testdata/offers/chromium-156-whep.sdp")
	if err != nil {
		t.Fatal(err)
	}
	offer := string(raw)
	answer := func(offer string, want bool) (string, []liteSection, uint8) {
		t.Helper()
		o, err := rtc.ParseOffer(offer, 4)
		if err != nil {
			t.Fatal(err)
		}
		var secs []liteSection
		for _, m := range o.Media {
			for _, c := range m.Codecs {
				if strings.EqualFold(c.MimeType, "video/H264") || strings.EqualFold(c.MimeType, "audio/opus") {
					secs = append(secs, liteSection{plan: plan{mid: m.Mid, codec: c}, ssrc: randomSSRC()})
					break
				}
			}
		}
		id, err := offerCC(offer, o, secs, want)
		if err != nil {
			t.Fatal(err)
		}
		a, err := liteAnswer(offer, o, secs, "ufrag", "pwd", "AB:CD", nil)
		if err != nil {
			t.Fatal(err)
		}
		var sd sdp.SessionDescription
		if err := sd.UnmarshalString(a); err != nil {
			t.Fatalf("answer does not parse: %v\n%s", err, a)
		}
		return a, secs, id
	}
	a, secs, id := answer(offer, true)
	if id != 4 {
		t.Fatalf("transport-cc id %d, want the offer's 4", id)
	}
	var video *liteSection
	for i := range secs {
		if secs[i].plan.codec.MimeType == "video/H264" {
			video = &secs[i]
		}
		if secs[i].twcc != 4 {
			t.Errorf("section %s: transport-cc id %d, want 4", secs[i].plan.mid, secs[i].twcc)
		}
	}
	if video == nil || video.rtxPT == 0 || video.rtxSSRC == 0 {
		t.Fatalf("no RTX for the video section: %+v", video)
	}
	// Audio has transport-cc but no RTX: a resend would reuse an AES-GCM
	// IV under a new header, so no generic NACK is offered or answered.
	for _, s := range secs {
		nack := fmt.Sprintf("a=rtcp-fb:%d nack\r\n", s.plan.codec.PayloadType)
		if s.canResend() != strings.Contains(a, nack) {
			t.Errorf("section %s (rtx %d): can resend %v, answer offers NACK %v", s.plan.mid, s.rtxSSRC, s.canResend(), strings.Contains(a, nack))
		}
		sink := &liteSink{rtxSSRC: s.rtxSSRC, noResend: !s.canResend()}
		if !s.canResend() {
			if err := sink.WriteRTP(&rtp.Header{}, nil); !errors.Is(err, errNoResend) {
				t.Errorf("section %s: NACK answer %v, want errNoResend", s.plan.mid, err)
			}
		}
	}
	if video.canResend() == false || secs[0].canResend() == secs[1].canResend() {
		t.Errorf("want video resendable (RTX), audio not: %+v", secs)
	}
	for _, want := range []string{
		"a=extmap:4 " + lite.TWCCURI,
		"transport-cc",
		"rtx/90000",
		"apt=",
		"a=ssrc-group:FID ",
	} {
		if !strings.Contains(a, want) {
			t.Errorf("answer lacks %q:\n%s", want, a)
		}
	}
	// Without the extension in the offer: no transport-cc, no RTX.
	var kept []string
	for _, l := range strings.Split(offer, "\r\n") {
		if !strings.Contains(l, lite.TWCCURI) {
			kept = append(kept, l)
		}
	}
	for _, tc := range []struct {
		name  string
		offer string
		want  bool
	}{
		{"offer without transport-cc", strings.Join(kept, "\r\n"), true},
		{"a stream without simulcast (nothing uses the estimate)", offer, false},
	} {
		a, secs, id = answer(tc.offer, tc.want)
		if id != 0 || strings.Contains(a, "transport-cc") || strings.Contains(a, "rtx/") {
			t.Fatalf("%s: id %d, answer:\n%s", tc.name, id, a)
		}
		for _, s := range secs {
			if s.rtxSSRC != 0 || s.twcc != 0 {
				t.Fatalf("%s: %+v", tc.name, s)
			}
		}
	}
}

// A viewer's estimate is remembered by address for its next session, and
// forgotten when a session ends on the top layer.
func TestEstimateMemo(t *testing.T) {
	var m estimateMemo
	if start, _ := m.forPeer("192.0.2.1"); start != 0 {
		t.Fatalf("unknown viewer starts with %v", start)
	}
	_, remember := m.forPeer("192.0.2.1")
	remember(400_000)
	if start, _ := m.forPeer("192.0.2.1"); start != 400_000 {
		t.Fatalf("returning viewer starts with %v, want 400000", start)
	}
	if start, _ := m.forPeer("192.0.2.2"); start != 0 {
		t.Fatalf("another address starts with %v", start)
	}
	m.remember("192.0.2.1", 400_000, time.Now().Add(-estimateTTL))
	if start, _ := m.forPeer("192.0.2.1"); start != 0 {
		t.Fatalf("an estimate older than %v is still used: %v", estimateTTL, start)
	}
	_, remember = m.forPeer("192.0.2.1")
	remember(400_000)
	remember(0)
	if start, _ := m.forPeer("192.0.2.1"); start != 0 {
		t.Fatalf("a session that ended on the top layer left %v", start)
	}
	if start, remember := m.forPeer(""); start != 0 || remember != nil {
		t.Fatal("a viewer without an address is remembered")
	}
	// Bounded: a full memo takes no new addresses (until entries expire).
	for i := 0; i < estimateMemoSize+10; i++ {
		m.remember(strings.Repeat("x", i%7)+string(rune('a'+i%26))+string(rune(i)), 1, time.Now())
	}
	if len(m.m) > estimateMemoSize {
		t.Fatalf("%d entries, want at most %d", len(m.m), estimateMemoSize)
	}
}
