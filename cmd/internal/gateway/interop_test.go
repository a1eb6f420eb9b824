package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/livegate/livegate/relay/rtc"
	"github.com/livegate/livegate/relay/rtcclient"
	"github.com/livegate/livegate/relay/rtcclient/clip"
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

// answerSection is one m= section of an answer.
type answerSection struct {
	kind, mid string
	port      int
	formats   []string
	fmtp      map[string]string // payload type -> fmtp
	direction string
	sdpText   string
}

func parseAnswer(t *testing.T, answer string) (*sdp.SessionDescription, []answerSection) {
	t.Helper()
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(answer); err != nil {
		t.Fatalf("answer does not parse: %v\n%s", err, answer)
	}
	var out []answerSection
	for _, md := range sd.MediaDescriptions {
		s := answerSection{kind: md.MediaName.Media, port: md.MediaName.Port.Value, formats: md.MediaName.Formats,
			fmtp: map[string]string{}}
		s.mid, _ = md.Attribute("mid")
		for _, a := range md.Attributes {
			switch a.Key {
			case "fmtp":
				pt, v, _ := strings.Cut(a.Value, " ")
				s.fmtp[pt] = v
			case "sendrecv", "sendonly", "recvonly", "inactive":
				s.direction = a.Key
			}
		}
		b, _ := (&sdp.SessionDescription{MediaDescriptions: []*sdp.MediaDescription{md}}).Marshal()
		s.sdpText = string(b)
		out = append(out, s)
	}
	return &sd, out
}

// checkAnswer asserts what a client needs from an answer to its offer:
// the same sections in the same order, each accepted one with exactly one
// of the offered payload types and its fmtp echoed unchanged, the wanted
// direction, a BUNDLE group of exactly the accepted sections, and
// candidates in the first of them. refused lists the mids expected to be
// refused: port 0, or inactive for the offer's BUNDLE tag. It returns the
// accepted payload type per mid.
func checkAnswer(t *testing.T, offer, answer, direction string, refused []string) map[string]rtc.OfferedCodec {
	t.Helper()
	o, err := rtc.ParseOffer(offer, 0)
	if err != nil {
		t.Fatalf("fixture offer does not parse: %v", err)
	}
	sd, secs := parseAnswer(t, answer)
	if len(secs) != len(o.Media) {
		t.Fatalf("answer has %d sections for %d offered:\n%s", len(secs), len(o.Media), answer)
	}
	chosen := map[string]rtc.OfferedCodec{}
	var bundle []string
	for i, m := range o.Media {
		s := secs[i]
		if s.mid != m.Mid || s.kind != string(m.Kind) {
			t.Errorf("answer section %d is %s mid %q, offered %s mid %q", i, s.kind, s.mid, m.Kind, m.Mid)
			continue
		}
		if slices.Contains(refused, m.Mid) {
			if m.Mid == o.BundleTag {
				// The offer's BUNDLE tag is refused as inactive: Chromium
				// cannot apply an answer that closes it.
				if s.port == 0 || s.direction != "inactive" {
					t.Errorf("refused BUNDLE-tag section %s mid %s: port %d, %s; want inactive in the bundle\n%s",
						s.kind, s.mid, s.port, s.direction, s.sdpText)
				}
				bundle = append(bundle, m.Mid)
			} else if s.port != 0 {
				t.Errorf("section %s mid %s: port %d, want 0 (refused)\n%s", s.kind, s.mid, s.port, s.sdpText)
			}
			continue
		}
		if s.port == 0 {
			t.Errorf("section %s mid %s refused, want it accepted\n%s", s.kind, s.mid, s.sdpText)
			continue
		}
		bundle = append(bundle, m.Mid)
		if s.direction != direction {
			t.Errorf("section %s mid %s: direction %q, want %q", s.kind, s.mid, s.direction, direction)
		}
		if len(s.formats) != 1 {
			t.Errorf("section %s mid %s answers %d payload types %v, want the one chosen", s.kind, s.mid, len(s.formats), s.formats)
			continue
		}
		var oc *rtc.OfferedCodec
		for _, c := range m.Codecs {
			if fmt.Sprint(c.PayloadType) == s.formats[0] {
				oc = &c
			}
		}
		if oc == nil {
			t.Errorf("section %s mid %s answers payload type %s, which was not offered", s.kind, s.mid, s.formats[0])
			continue
		}
		if got := s.fmtp[s.formats[0]]; got != oc.Fmtp {
			t.Errorf("section %s mid %s: answer fmtp %q, offered %q (must be echoed exactly)", s.kind, s.mid, got, oc.Fmtp)
		}
		chosen[m.Mid] = *oc
	}
	var group string
	for _, a := range sd.Attributes {
		if a.Key == "group" && strings.HasPrefix(a.Value, "BUNDLE") {
			group = a.Value
		}
	}
	if want := strings.Join(append([]string{"BUNDLE"}, bundle...), " "); group != want {
		t.Errorf("answer group %q, want %q", group, want)
	}
	for i, s := range secs {
		if s.port != 0 {
			if !strings.Contains(s.sdpText, "a=candidate:") {
				t.Errorf("first accepted section (%d) has no candidates", i)
			}
			break
		}
	}
	return chosen
}

// clientFixture is an offer from a real client and what livegate must make
// of it.
type clientFixture struct {
	file string
	// want maps each accepted mid to a regexp on "MIME fmtp" of the chosen
	// payload type; every other mid must be refused.
	want map[string]string
}

var whipFixtures = []clientFixture{
	{"gstreamer-1.22-webrtcbin-whip.sdp", map[string]string{"video0": `^video/H264 .*profile-level-id=42c01f`, "audio1": `^audio/OPUS `}},
	{"chromium-156-whip.sdp", map[string]string{"0": `^audio/opus `, "1": `^video/H264 .*packetization-mode=1.*profile-level-id=42e01f`}},
	{"chromium-156-whip-simulcast.sdp", map[string]string{"0": `^audio/opus `, "1": `^video/H264 .*packetization-mode=1.*profile-level-id=42e01f`}},
	{"pion-4.2-whip.sdp", map[string]string{"0": `^video/H264 .*packetization-mode=1.*profile-level-id=42e01f`, "1": `^audio/opus `}},
	{"obs-30-whip-h264.sdp", map[string]string{"0": `^audio/opus `, "1": `^video/H264 .*profile-level-id=42e01f;packetization-mode=1`}},
	{"obs-30-whip-av1.sdp", map[string]string{"0": `^audio/opus `, "1": `^video/AV1 $`}},
	// OBS 31 can encode HEVC, which livegate does not forward: the video
	// section is refused, audio goes through.
	{"obs-31-whip-hevc.sdp", map[string]string{"0": `^audio/opus `}},
	// Firefox offers H.264 in packetization-mode 1 (126) and 0 (97): 1 wins.
	{"firefox-133-whip.sdp", map[string]string{"0": `^audio/opus `, "1": `^video/H264 profile-level-id=42e01f;level-asymmetry-allowed=1;packetization-mode=1$`}},
	// Safari offers Constrained High (640c1f) first: Constrained Baseline
	// plays everywhere, so it is preferred.
	{"safari-18-whip.sdp", map[string]string{"0": `^audio/opus `, "1": `^video/H264 .*profile-level-id=42e01f`}},
}

var whepFixtures = []clientFixture{
	{"gstreamer-1.22-webrtcbin-whep.sdp", map[string]string{"video0": `^video/H264 .*profile-level-id=42e01f`, "audio1": `^audio/OPUS `}},
	{"chromium-156-whep.sdp", map[string]string{"0": `^video/H264 .*packetization-mode=1.*profile-level-id=42e01f`, "1": `^audio/opus `}},
	{"pion-4.2-whep.sdp", map[string]string{"0": `^video/H264 .*packetization-mode=1.*profile-level-id=42e01f`, "1": `^audio/opus `}},
	{"firefox-133-whep.sdp", map[string]string{"0": `^audio/opus `, "1": `^video/H264 .*packetization-mode=1`}},
	{"safari-18-whep.sdp", map[string]string{"0": `^audio/opus `, "1": `^video/H264 .*profile-level-id=42e01f`}},
}

func readFixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(offersDir, name))
	if err != nil {
		t.Fatalf("fixture %s: %v", name, err)
	}
	return string(b)
}

func (f clientFixture) check(t *testing.T, offer, answer, direction string) {
	t.Helper()
	o, err := rtc.ParseOffer(offer, 0)
	if err != nil {
		t.Fatal(err)
	}
	var refused []string
	for _, m := range o.Media {
		if _, ok := f.want[m.Mid]; !ok {
			refused = append(refused, m.Mid)
		}
	}
	chosen := checkAnswer(t, offer, answer, direction, refused)
	for mid, re := range f.want {
		c, ok := chosen[mid]
		if !ok {
			continue // reported by checkAnswer
		}
		if got := c.MimeType + " " + c.Fmtp; !regexp.MustCompile(re).MatchString(got) {
			t.Errorf("mid %s: chose %q, want %s", mid, got, re)
		}
	}
}

func postSDP(t *testing.T, url, offer string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(offer))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/sdp")
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header.Get("Location")
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
			status, answer, loc := postSDP(t, g.base+"/whip/"+path, offer)
			if status != http.StatusCreated {
				t.Fatalf("status %d: %s", status, answer)
			}
			defer request(t, http.MethodDelete, g.base+loc, "", "")
			f.check(t, offer, answer, "recvonly")
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
			status, answer, loc := postSDP(t, g.base+"/whip/fixtures/"+strings.ReplaceAll(c.MimeType, "/", "-")+fmt.Sprint(len(c.SDPFmtpLine)), offer)
			if status != http.StatusCreated {
				t.Fatalf("status %d: %s", status, answer)
			}
			defer request(t, http.MethodDelete, g.base+loc, "", "")
			clientFixture{want: map[string]string{"0": "^" + regexp.QuoteMeta(c.MimeType+" "+c.SDPFmtpLine) + "$"}}.check(t, offer, answer, "recvonly")
		})
	}

	// A data channel next to the media is refused (port 0): nothing relays it.
	t.Run("whip/pion with a data channel", func(t *testing.T) {
		m := &webrtc.MediaEngine{}
		if err := m.RegisterDefaultCodecs(); err != nil {
			t.Fatal(err)
		}
		pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m)).NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
			if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := pc.CreateDataChannel("chat", nil); err != nil {
			t.Fatal(err)
		}
		offer, err := pc.CreateOffer(nil)
		if err != nil {
			t.Fatal(err)
		}
		status, answer, loc := postSDP(t, g.base+"/whip/fixtures/datachannel", offer.SDP)
		if status != http.StatusCreated {
			t.Fatalf("status %d: %s", status, answer)
		}
		defer request(t, http.MethodDelete, g.base+loc, "", "")
		clientFixture{want: map[string]string{"0": `^video/H264 `, "1": `^audio/opus `}}.check(t, offer.SDP, answer, "recvonly")
		refused++
	})

	// WHEP: a live stream as browsers publish it (the clip: H.264
	// Constrained Baseline + Opus).
	pub := g.publish(t, "fixtures/live")
	defer pub.Close(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go play(ctx, pub, loadClip(t), 0)
	for _, f := range whepFixtures {
		t.Run("whep/"+f.file, func(t *testing.T) {
			offer := readFixture(t, f.file)
			status, answer, loc := postSDP(t, g.base+"/whep/fixtures/live", offer)
			if status != http.StatusCreated {
				t.Fatalf("status %d: %s", status, answer)
			}
			defer request(t, http.MethodDelete, g.base+loc, "", "")
			f.check(t, offer, answer, "sendonly")
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
			m := &webrtc.MediaEngine{}
			if err := m.RegisterDefaultCodecs(); err != nil {
				t.Fatal(err)
			}
			pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m)).NewPeerConnection(webrtc.Configuration{})
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			var trs []*webrtc.RTPTransceiver
			for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
				tr, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
				if err != nil {
					t.Fatal(err)
				}
				trs = append(trs, tr)
			}
			if firstVP8Only {
				vp8 := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}
				if err := trs[0].SetCodecPreferences([]webrtc.RTPCodecParameters{vp8}); err != nil {
					t.Fatal(err)
				}
			}
			offer, err := pc.CreateOffer(nil)
			if err != nil {
				t.Fatal(err)
			}
			status, answer, loc := postSDP(t, g.base+"/whep/fixtures/live", offer.SDP)
			if firstVP8Only {
				// The lite transport (the default) writes its own answer:
				// the stream's H.264 goes to the second video section, the
				// first stays in the bundle, inactive. (On the pion fallback,
				// pion would put the track on the first video section: that
				// offer is refused there with 400 "offer one video section".)
				if status != http.StatusCreated {
					t.Fatalf("VP8-only first video section: status %d %s, want 201", status, answer)
				}
				request(t, http.MethodDelete, g.base+loc, "", "")
				clientFixture{want: map[string]string{"1": `^video/H264 `, "2": `^audio/opus `}}.check(t, offer.SDP, answer, "sendonly")
				continue
			}
			if status != http.StatusCreated {
				t.Fatalf("status %d: %s", status, answer)
			}
			request(t, http.MethodDelete, g.base+loc, "", "")
			clientFixture{want: map[string]string{"0": `^video/H264 `, "2": `^audio/opus `}}.check(t, offer.SDP, answer, "sendonly")
		}
	})

	// Clients that leave their transceivers sendrecv (aiortc's and pion's
	// defaults) publish and play the same way.
	t.Run("sendrecv offers", func(t *testing.T) {
		h264 := webrtc.RTPCodecParameters{RTPCodecCapability: rtcclient.H264ConstrainedBaseline, PayloadType: 102}
		opus := webrtc.RTPCodecParameters{RTPCodecCapability: rtcclient.Opus, PayloadType: 111}
		offer := offerSDP(t, []webrtc.RTPCodecParameters{h264, opus}, webrtc.RTPTransceiverDirectionSendrecv)
		status, answer, loc := postSDP(t, g.base+"/whip/fixtures/sendrecv", offer)
		if status != http.StatusCreated {
			t.Fatalf("WHIP status %d: %s", status, answer)
		}
		request(t, http.MethodDelete, g.base+loc, "", "")
		clientFixture{want: map[string]string{"0": `^video/H264 `, "1": `^audio/opus `}}.check(t, offer, answer, "recvonly")
		status, answer, loc = postSDP(t, g.base+"/whep/fixtures/live", offer)
		if status != http.StatusCreated {
			t.Fatalf("WHEP status %d: %s", status, answer)
		}
		request(t, http.MethodDelete, g.base+loc, "", "")
		clientFixture{want: map[string]string{"0": `^video/H264 `, "1": `^audio/opus `}}.check(t, offer, answer, "sendonly")
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

func httpGetText(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := httpClient.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func grepLines(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestPionOfferFixtures writes pion's own offers (the default MediaEngine,
// as a pion-based client uses it) when LIVEGATE_CAPTURE_OFFERS is set, and
// checks that the stored fixtures still match what pion makes.
func TestPionOfferFixtures(t *testing.T) {
	for _, tc := range []struct {
		file string
		dir  webrtc.RTPTransceiverDirection
	}{{"pion-4.2-whip.sdp", webrtc.RTPTransceiverDirectionSendonly}, {"pion-4.2-whep.sdp", webrtc.RTPTransceiverDirectionRecvonly}} {
		m := &webrtc.MediaEngine{}
		if err := m.RegisterDefaultCodecs(); err != nil {
			t.Fatal(err)
		}
		pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m)).NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
			if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: tc.dir}); err != nil {
				t.Fatal(err)
			}
		}
		offer, err := pc.CreateOffer(nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = pc.Close()
		captureOffer(t, tc.file, offer.SDP)
		stored, err := rtc.ParseOffer(readFixture(t, tc.file), 0)
		if err != nil {
			t.Fatal(err)
		}
		now, _ := rtc.ParseOffer(offer.SDP, 0)
		if fmt.Sprint(stored.Names()) != fmt.Sprint(now.Names()) {
			t.Errorf("%s: pion now offers %v, the fixture has %v: refresh it with %s", tc.file, now.Names(), stored.Names(), envCaptureOffers)
		}
	}
}

// chromeViewerJS plays a WHEP URL in a plain RTCPeerConnection with
// recvonly audio and video, the way web players do; window.viewer has its
// state.
const chromeViewerJS = `(async () => {
  const V = window.viewer = { tracks: [], offer: '', answer: '', status: 0, error: '' };
  try {
    const pc = V.pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    for (const k of %s) pc.addTransceiver(k, { direction: 'recvonly' });
    pc.ontrack = e => V.tracks.push(e.track.kind);
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise(r => {
      if (pc.iceGatheringState === 'complete') return r();
      pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r();
      setTimeout(r, 2000);
    });
    V.offer = pc.localDescription.sdp;
    const res = await fetch(%q, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: V.offer });
    V.status = res.status;
    V.answer = await res.text();
    if (res.status !== 201) throw new Error('WHEP ' + res.status + ': ' + V.answer);
    await pc.setRemoteDescription({ type: 'answer', sdp: V.answer });
  } catch (e) { V.error = String(e); }
  return { status: V.status, error: V.error, offer: V.offer, answer: V.answer };
})()`

type chromeViewerResult struct {
	Status int    `json:"status"`
	Error  string `json:"error"`
	Offer  string `json:"offer"`
	Answer string `json:"answer"`
}

type chromeViewerStats struct {
	Conn          string   `json:"conn"`
	Tracks        []string `json:"tracks"`
	Directions    []string `json:"directions"`
	FramesDecoded int      `json:"framesDecoded"`
	Width         int      `json:"width"`
	AudioPackets  int      `json:"audioPackets"`
}

const chromeViewerStatsJS = `(async () => {
  const V = window.viewer, R = { conn: V.pc.connectionState, tracks: V.tracks, framesDecoded: 0, width: 0, audioPackets: 0,
    directions: V.pc.getTransceivers().map(t => t.receiver.track.kind + ':' + (t.currentDirection || 'null')) };
  (await V.pc.getStats()).forEach(s => {
    if (s.type !== 'inbound-rtp') return;
    if (s.kind === 'video') { R.framesDecoded += s.framesDecoded || 0; R.width = Math.max(R.width, s.frameWidth || 0); }
    if (s.kind === 'audio') R.audioPackets += s.packetsReceived || 0;
  });
  return R;
})()`

// startChromeViewer opens a tab on the gateway's origin and plays path,
// offering recvonly sections of kinds in this order (default video, audio).
func (g *testGateway) startChromeViewer(t *testing.T, b *browser, path string, kinds ...string) (context.Context, chromeViewerResult) {
	t.Helper()
	if len(kinds) == 0 {
		kinds = []string{"video", "audio"}
	}
	ctx, _ := b.tab(t, "viewer "+path)
	b.navigate(t, ctx, g.base+"/healthz")
	list, _ := json.Marshal(kinds)
	r, err := evalAsync[chromeViewerResult](ctx, fmt.Sprintf(chromeViewerJS, list, g.base+"/whep/"+path))
	if err != nil {
		t.Fatalf("Chromium viewer of %s: %v", path, err)
	}
	if r.Error != "" {
		t.Fatalf("Chromium viewer of %s: %s\noffer:\n%s\nanswer:\n%s", path, r.Error, r.Offer, r.Answer)
	}
	return ctx, r
}

func waitChromeViewer(t *testing.T, ctx context.Context, what string, done func(chromeViewerStats) bool) chromeViewerStats {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		s, err := evalAsync[chromeViewerStats](ctx, chromeViewerStatsJS)
		if err != nil {
			t.Fatalf("viewer stats: %v", err)
		}
		if done(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last %+v", what, s)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestChromiumInterop publishes from Chromium (plain and simulcast) and
// plays in Chromium, checking each answer the way the fixtures are checked,
// and plays a stream without video: the viewer's video section is refused,
// and Chromium plays the audio. With LIVEGATE_CAPTURE_OFFERS it saves the
// offers as fixtures.
func TestChromiumInterop(t *testing.T) {
	b := browserTest(t, 150*time.Second)
	if b == nil {
		return
	}
	g := startGateway(t, nil)
	version := ""
	{
		ctx, _ := b.tab(t, "version")
		ua := evalJS[string](t, ctx, `navigator.userAgent`)
		if m := regexp.MustCompile(`Chrome/(\d+)`).FindStringSubmatch(ua); m != nil {
			version = m[1]
		}
		t.Logf("browser: %s", ua)
	}

	// Plain publisher and a viewer.
	h := g.startChromeHost(t, b, "interop/chromium", chromeHostOpts{})
	h.waitLive(t, 20*time.Second)
	offer := evalJS[string](t, h.ctx, `window.host.pc.localDescription.sdp`)
	answer := evalJS[string](t, h.ctx, `window.host.pc.remoteDescription.sdp`)
	captureOffer(t, "chromium-"+version+"-whip.sdp", offer)
	clientFixture{want: map[string]string{"0": `^audio/opus `, "1": `^video/H264 .*packetization-mode=1`}}.check(t, offer, answer, "recvonly")

	vctx, vr := g.startChromeViewer(t, b, "interop/chromium")
	captureOffer(t, "chromium-"+version+"-whep.sdp", vr.Offer)
	clientFixture{want: map[string]string{"0": `^video/H264 `, "1": `^audio/opus `}}.check(t, vr.Offer, vr.Answer, "sendonly")
	s := waitChromeViewer(t, vctx, "video and audio at the Chromium viewer", func(s chromeViewerStats) bool {
		return s.FramesDecoded > 30 && s.AudioPackets > 50
	})
	t.Logf("Chromium viewer: %+v", s)

	// Simulcast publisher: one video section with three rids.
	hs := g.startChromeHost(t, b, "interop/simulcast", chromeHostOpts{Simulcast: true})
	hs.waitLive(t, 20*time.Second)
	offer = evalJS[string](t, hs.ctx, `window.host.pc.localDescription.sdp`)
	answer = evalJS[string](t, hs.ctx, `window.host.pc.remoteDescription.sdp`)
	captureOffer(t, "chromium-"+version+"-whip-simulcast.sdp", offer)
	clientFixture{want: map[string]string{"0": `^audio/opus `, "1": `^video/H264 .*packetization-mode=1`}}.check(t, offer, answer, "recvonly")
	hs.stop(t)

	// A stream without video: Chromium's video section is refused (port
	// 0), its audio plays.
	stopAudio := g.publishAudioOnly(t, "interop/radio")
	defer stopAudio()
	actx, ar := g.startChromeViewer(t, b, "interop/radio")
	clientFixture{want: map[string]string{"1": `^audio/opus `}}.check(t, ar.Offer, ar.Answer, "sendonly")
	s = waitChromeViewer(t, actx, "audio at the Chromium viewer of an audio-only stream", func(s chromeViewerStats) bool {
		return s.AudioPackets > 50 && s.Conn == "connected"
	})
	t.Logf("Chromium viewer of an audio-only stream: %+v", s)
	if slices.Contains(s.Tracks, "video") {
		t.Errorf("Chromium got a video track for a stream without video: %v", s.Tracks)
	}
	// Offering audio first, the refused video section is not the BUNDLE
	// tag and is closed (port 0): Chromium applies that too.
	actx, ar = g.startChromeViewer(t, b, "interop/radio", "audio", "video")
	clientFixture{want: map[string]string{"0": `^audio/opus `}}.check(t, ar.Offer, ar.Answer, "sendonly")
	s = waitChromeViewer(t, actx, "audio at the Chromium viewer (audio first) of an audio-only stream", func(s chromeViewerStats) bool {
		return s.AudioPackets > 50 && s.Conn == "connected"
	})
	t.Logf("Chromium viewer (audio first) of an audio-only stream: %+v", s)
	h.stop(t)

	// The issue this all started from: GStreamer publishes H.264 labelled
	// 42c01f, and a Chromium viewer (which offers 42e01f) must get video.
	if gstreamerUsable() {
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		defer cancel()
		pub := startGst(t, ctx, "publish", g.base+"/whip/interop/gst", "--seconds", "10")
		waitGstTracks(t, g, "interop/gst", "audio", "video")
		gctx, gr := g.startChromeViewer(t, b, "interop/gst")
		clientFixture{want: map[string]string{"0": `^video/H264 .*profile-level-id=42e01f`, "1": `^audio/opus `}}.check(t, gr.Offer, gr.Answer, "sendonly")
		s = waitChromeViewer(t, gctx, "GStreamer's video and audio at the Chromium viewer", func(s chromeViewerStats) bool {
			return s.FramesDecoded > 30 && s.AudioPackets > 50
		})
		t.Logf("Chromium viewer of a GStreamer publisher: %+v", s)
		if s.Width != 1280 {
			t.Errorf("Chromium decodes GStreamer's video at width %d, want 1280", s.Width)
		}
		if p := pub.result(t, 30*time.Second); !p.OK {
			t.Errorf("GStreamer publisher: %s", p.Error)
		}
	} else if os.Getenv(envE2E) == "1" {
		t.Errorf("GStreamer is not usable here (%s=1 requires it): the GStreamer-to-Chromium part was not run", envE2E)
	} else {
		t.Log("GStreamer is not usable here: the GStreamer-to-Chromium part was not run")
	}
}

// publishAudioOnly publishes the clip's Opus audio alone to path with pion.
func (g *testGateway) publishAudioOnly(t *testing.T, path string) func() {
	t.Helper()
	track, err := webrtc.NewTrackLocalStaticSample(rtcclient.Opus, "audio", "radio")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sess, err := rtcclient.Connect(ctx, g.base+"/whip/"+path, clientOpts(t), func(pc *webrtc.PeerConnection) error {
		_, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		return err
	})
	if err != nil {
		t.Fatalf("audio-only publisher: %v", err)
	}
	waitConnected(t, sess.PC)
	audio := loadClip(t).audio
	pctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for pctx.Err() == nil {
			_ = clip.Play(pctx, audio, func(s clip.Sample, _ int) error {
				return track.WriteSample(media.Sample{Data: s.Data, Duration: s.Duration})
			})
		}
	}()
	return func() {
		stop()
		<-done
		_ = sess.Close(context.Background())
	}
}
