package gateway

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"

	"github.com/livegate/livegate/relay/rtc"
	"github.com/livegate/livegate/relay/rtcclient"
)

// Interoperability with real clients' offers: the fixtures in
// relay/rtc/testdata/offers (captured from the programs where they run
// here, written from their source otherwise; see docs/interop.md) and live
// sessions with Chromium.

// envCaptureOffers names a directory where the interop tests write the
// offers the real programs made, to refresh the fixtures.
const envCaptureOffers = "LIVEGATE_CAPTURE_OFFERS"

const offersDir = "../../../relay/rtc/testdata/offers"

func captureOffer(t *testing.T, name, offer string) {
	t.Helper()
	dir := os.Getenv(envCaptureOffers)
	if dir == "" {
		return
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(offer), 0o644); err != nil {
		t.Errorf("saving offer %s: %v", name, err)
	}
}

// TestClientOfferFixtures: every client's offer gets an answer it accepts,
// with every usable track, and the refused sections are counted.
func TestClientOfferFixtures(t *testing.T) {
	g := startGateway(t, nil)
	refused := 0
	for i, f := range whipFixtures {
		t.Run("whip/"+f.file, func(t *testing.T) {
			offer := readFixture(t, f.file)
			path := fmt.Sprintf("fixtures/whip%d", i)
			f.check(t, offer, answerOf(t, g, g.base+"/whip/"+path, offer), "recvonly")
			st, ok := g.Hub().Get(path)
			if !ok {
				t.Fatalf("no stream %s after 201", path)
			}
			if n := len(st.Tracks()); n != len(f.want) {
				t.Errorf("stream has %d tracks, want %d (every usable section)", n, len(f.want))
			}
			o, _ := rtc.ParseOffer(offer, 0)
			refused += len(o.Media) - len(f.want)
		})
	}

	// Profiles the engine does not register are still negotiated exactly as
	// offered (pion gets the offer reduced to the chosen payload type).
	for _, c := range []webrtc.RTPCodecCapability{
		{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000, SDPFmtpLine: "profile-id=1"},
		{MimeType: webrtc.MimeTypeAV1, ClockRate: 90000, SDPFmtpLine: "level-idx=5;profile=1;tier=0"},
		{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "packetization-mode=1;profile-level-id=4d4028"},
		{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "profile-level-id=42c01f"},
	} {
		t.Run("whip/"+c.MimeType+" "+c.SDPFmtpLine, func(t *testing.T) {
			offer := offerSDP(t, []webrtc.RTPCodecParameters{{RTPCodecCapability: c, PayloadType: 100}}, webrtc.RTPTransceiverDirectionSendonly)
			answer := answerOf(t, g, g.base+"/whip/fixtures/"+strings.ReplaceAll(c.MimeType, "/", "-")+fmt.Sprint(len(c.SDPFmtpLine)), offer)
			clientFixture{want: map[string]string{"0": "^" + regexp.QuoteMeta(c.MimeType+" "+c.SDPFmtpLine) + "$"}}.check(t, offer, answer, "recvonly")
		})
	}

	// A data channel next to the media is refused (port 0): nothing relays it.
	t.Run("whip/pion with a data channel", func(t *testing.T) {
		offer := pionOffer(t, webrtc.RTPTransceiverDirectionSendonly, []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio},
			func(pc *webrtc.PeerConnection, _ []*webrtc.RTPTransceiver) error {
				_, err := pc.CreateDataChannel("chat", nil)
				return err
			})
		answer := answerOf(t, g, g.base+"/whip/fixtures/datachannel", offer)
		clientFixture{want: map[string]string{"0": `^video/H264 `, "1": `^audio/opus `}}.check(t, offer, answer, "recvonly")
		refused++
	})

	// WHEP: a live stream as browsers publish it (the clip: H.264
	// Constrained Baseline + Opus).
	g.playing(t, "fixtures/live")
	for _, f := range whepFixtures {
		t.Run("whep/"+f.file, func(t *testing.T) {
			offer := readFixture(t, f.file)
			f.check(t, offer, answerOf(t, g, g.base+"/whep/fixtures/live", offer), "sendonly")
		})
	}

	// A viewer that can decode none of the stream's tracks gets 406 saying
	// why, not an answer with nothing in it.
	t.Run("whep/VP8-only viewer of an H.264 stream", func(t *testing.T) {
		vp8 := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}
		resp, body := post(t, g.base+"/whep/fixtures/live", "application/sdp",
			offerSDP(t, []webrtc.RTPCodecParameters{vp8}, webrtc.RTPTransceiverDirectionRecvonly))
		msg, _ := body["error"].(string)
		if resp.StatusCode != http.StatusNotAcceptable || !strings.Contains(msg, "VP8") || !strings.Contains(msg, "not offered") {
			t.Fatalf("status %d, body %v: want 406 naming VP8 and why H.264 was not sent", resp.StatusCode, body)
		}
	})

	// Two video sections: the stream's one video track goes to the first and
	// the second is refused; if the first cannot receive it, the offer is
	// refused with a reason (pion binds tracks to sections in order).
	t.Run("whep/two video sections", func(t *testing.T) {
		for _, firstVP8Only := range []bool{false, true} {
			var edit func(*webrtc.PeerConnection, []*webrtc.RTPTransceiver) error
			// The lite transport (the default) writes its own answer: with
			// a VP8-only first video section the stream's H.264 goes to the
			// second, the first stays in the bundle, inactive. (On the pion
			// fallback, pion would put the track on the first video section:
			// that offer is refused there with 400 "offer one video section".)
			want := map[string]string{"0": `^video/H264 `, "2": `^audio/opus `}
			if firstVP8Only {
				edit = func(_ *webrtc.PeerConnection, trs []*webrtc.RTPTransceiver) error {
					vp8 := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}
					return trs[0].SetCodecPreferences([]webrtc.RTPCodecParameters{vp8})
				}
				want = map[string]string{"1": `^video/H264 `, "2": `^audio/opus `}
			}
			offer := pionOffer(t, webrtc.RTPTransceiverDirectionRecvonly,
				[]webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio}, edit)
			clientFixture{want: want}.check(t, offer, answerOf(t, g, g.base+"/whep/fixtures/live", offer), "sendonly")
		}
	})

	// Clients that leave their transceivers sendrecv (aiortc's and pion's
	// defaults) publish and play the same way.
	t.Run("sendrecv offers", func(t *testing.T) {
		h264 := webrtc.RTPCodecParameters{RTPCodecCapability: rtcclient.H264ConstrainedBaseline, PayloadType: 102}
		opus := webrtc.RTPCodecParameters{RTPCodecCapability: rtcclient.Opus, PayloadType: 111}
		offer := offerSDP(t, []webrtc.RTPCodecParameters{h264, opus}, webrtc.RTPTransceiverDirectionSendrecv)
		want := clientFixture{want: map[string]string{"0": `^video/H264 `, "1": `^audio/opus `}}
		want.check(t, offer, answerOf(t, g, g.base+"/whip/fixtures/sendrecv", offer), "recvonly")
		want.check(t, offer, answerOf(t, g, g.base+"/whep/fixtures/live", offer), "sendonly")
	})

	// The refused sections are in /metrics.
	_, metrics := httpGetText(t, g.base+"/metrics")
	total := 0
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, "livegate_refused_media_sections_total{") && strings.Contains(line, `direction="whip"`) {
			var n int
			if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &n); err == nil {
				total += n
			}
		}
	}
	if total != refused {
		t.Errorf("livegate_refused_media_sections_total for WHIP sums to %d, want %d", total, refused)
	}
	if !strings.Contains(metrics, `livegate_refused_media_sections_total{direction="whip",kind="video",reason="unsupported_codec"} 1`) {
		t.Errorf("the refused HEVC section is not counted:\n%s", grepLines(metrics, "livegate_refused"))
	}
}

// TestPionOfferFixtures writes pion's own offers (the default MediaEngine,
// as a pion-based client uses it) when LIVEGATE_CAPTURE_OFFERS is set, and
// checks that the stored fixtures still match what pion makes.
func TestPionOfferFixtures(t *testing.T) {
	for _, tc := range []struct {
		file string
		dir  webrtc.RTPTransceiverDirection
	}{{"pion-4.2-whip.sdp", webrtc.RTPTransceiverDirectionSendonly}, {"pion-4.2-whep.sdp", webrtc.RTPTransceiverDirectionRecvonly}} {
		offer := pionOffer(t, tc.dir, []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio}, nil)
		captureOffer(t, tc.file, offer)
		stored, err := rtc.ParseOffer(readFixture(t, tc.file), 0)
		if err != nil {
			t.Fatal(err)
		}
		now, _ := rtc.ParseOffer(offer, 0)
		if fmt.Sprint(stored.Names()) != fmt.Sprint(now.Names()) {
			t.Errorf("%s: pion now offers %v, the fixture has %v: refresh it with %s", tc.file, now.Names(), stored.Names(), envCaptureOffers)
		}
	}
}
