package gateway

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/livegate/livegate/relay/rtc"
)

// What a client needs of an answer, and the offers the interop tests make.

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
	resp, answer := fetch(t, http.MethodPost, url, offer, "Content-Type", "application/sdp")
	return resp.StatusCode, answer, resp.Header.Get("Location")
}

// pionOffer is the offer of a pion peer with the default codecs and a
// transceiver of each of kinds in direction dir; edit, unless nil, changes
// the peer before it offers (codec preferences, a data channel).
func pionOffer(t *testing.T, dir webrtc.RTPTransceiverDirection, kinds []webrtc.RTPCodecType,
	edit func(*webrtc.PeerConnection, []*webrtc.RTPTransceiver) error) string {
	t.Helper()
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
	for _, k := range kinds {
		tr, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: dir})
		if err != nil {
			t.Fatal(err)
		}
		trs = append(trs, tr)
	}
	if edit != nil {
		if err := edit(pc, trs); err != nil {
			t.Fatal(err)
		}
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return offer.SDP
}

// answerOf posts offer to a WHIP or WHEP url, requires 201 Created and
// returns the answer; the session is ended when the (sub)test ends.
func answerOf(t *testing.T, g *testGateway, url, offer string) string {
	t.Helper()
	status, answer, loc := postSDP(t, url, offer)
	if status != http.StatusCreated {
		t.Fatalf("POST %s: status %d: %s", strings.TrimPrefix(url, g.base), status, answer)
	}
	t.Cleanup(func() { request(t, http.MethodDelete, g.base+loc, "", "") })
	return answer
}

func httpGetText(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, body := fetch(t, http.MethodGet, url, "", "")
	return resp.StatusCode, body
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
