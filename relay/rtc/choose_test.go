package rtc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pion/sdp/v3"

	"github.com/livegate/livegate/relay/codec"
)

func h264(pt uint8, fmtp string) OfferedCodec {
	return OfferedCodec{PayloadType: pt, Codec: codec.Codec{MimeType: "video/H264", ClockRate: 90000, Fmtp: fmtp}}
}

func vcodec(pt uint8, name, fmtp string) OfferedCodec {
	return OfferedCodec{PayloadType: pt, Codec: codec.Codec{MimeType: "video/" + name, ClockRate: 90000, Fmtp: fmtp}}
}

func TestChooseForPublisher(t *testing.T) {
	prefs := []string{"h264", "vp8", "vp9", "av1"}
	for _, tc := range []struct {
		name   string
		codecs []OfferedCodec
		dir    string
		pt     uint8  // chosen, if reason is ""
		reason string // refused with this reason
	}{
		{"GStreamer x264 42c01f", []OfferedCodec{h264(96, "packetization-mode=1;profile-level-id=42c01f;level-asymmetry-allowed=1")}, "sendonly", 96, ""},
		{"4240 is Constrained Baseline too", []OfferedCodec{h264(96, "packetization-mode=1;profile-level-id=42401f")}, "sendonly", 96, ""},
		{"x264 main 4d40", []OfferedCodec{h264(96, "packetization-mode=1;profile-level-id=4d401f")}, "sendonly", 96, ""},
		{"high 640028", []OfferedCodec{h264(96, "packetization-mode=1;profile-level-id=640028")}, "sendrecv", 96, ""},
		{"Constrained Baseline preferred over High", []OfferedCodec{
			h264(96, "packetization-mode=1;profile-level-id=640c1f"), h264(98, "packetization-mode=1;profile-level-id=42e01f")}, "sendonly", 98, ""},
		{"mode 1 preferred over mode 0", []OfferedCodec{
			h264(97, "profile-level-id=42e01f;level-asymmetry-allowed=1"), h264(126, "profile-level-id=42e01f;packetization-mode=1")}, "sendonly", 126, ""},
		{"mode 0 alone is forwarded", []OfferedCodec{h264(97, "profile-level-id=42e01f")}, "sendonly", 97, ""},
		{"no fmtp: mode 0 Baseline 1.0", []OfferedCodec{h264(97, "")}, "sendonly", 97, ""},
		{"mode 2 refused", []OfferedCodec{h264(96, "packetization-mode=2;profile-level-id=42e01f")}, "sendonly", 0, ReasonH264Mode},
		{"unknown profile refused", []OfferedCodec{h264(96, "packetization-mode=1;profile-level-id=53001f")}, "sendonly", 0, ReasonH264Profile},
		{"mode 2 beside VP8: VP8", []OfferedCodec{h264(96, "packetization-mode=2;profile-level-id=42e01f"), vcodec(100, "VP8", "")}, "sendonly", 100, ""},
		{"VP9 profile 0 preferred", []OfferedCodec{vcodec(98, "VP9", "profile-id=2"), vcodec(100, "VP9", "profile-id=0")}, "sendonly", 100, ""},
		{"VP9 profile 3 accepted", []OfferedCodec{vcodec(98, "VP9", "profile-id=3")}, "sendonly", 98, ""},
		{"VP9 profile 9 refused", []OfferedCodec{vcodec(98, "VP9", "profile-id=9")}, "sendonly", 0, ReasonCodec},
		{"AV1 profile 1", []OfferedCodec{vcodec(45, "AV1", "level-idx=5;profile=1;tier=0")}, "sendonly", 45, ""},
		{"HEVC refused", []OfferedCodec{vcodec(96, "H265", "")}, "sendonly", 0, ReasonCodec},
		{"recvonly from a publisher refused", []OfferedCodec{h264(96, "packetization-mode=1;profile-level-id=42e01f")}, "recvonly", 0, ReasonDirection},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := Media{Mid: "1", Kind: codec.Video, Direction: tc.dir, Codecs: tc.codecs}
			c, r := m.Choose(prefs)
			checkChoice(t, c, r, tc.pt, tc.reason)
		})
	}
}

// checkChoice checks the outcome of Choose or Accepts: payload type pt, or
// with reason set, a refusal for that reason.
func checkChoice(t *testing.T, c OfferedCodec, r *Rejection, pt uint8, reason string) {
	t.Helper()
	switch {
	case reason == "" && r != nil:
		t.Fatalf("refused (%s: %s), want payload type %d", r.Reason, r.Detail, pt)
	case reason == "" && c.PayloadType != pt:
		t.Fatalf("chose %d (%s), want %d", c.PayloadType, c.Fmtp, pt)
	case reason != "" && r == nil:
		t.Fatalf("chose %d (%s), want refusal %s", c.PayloadType, c.Fmtp, reason)
	case reason != "" && r.Reason != reason:
		t.Fatalf("refused with %s (%s), want %s", r.Reason, r.Detail, reason)
	}
}

func TestAcceptsForViewer(t *testing.T) {
	chrome := []OfferedCodec{
		vcodec(96, "VP8", ""),
		h264(103, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f"),
		h264(105, "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f"),
		h264(109, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"),
		h264(115, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f"),
		h264(119, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640c1f"),
		h264(123, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f"),
		vcodec(98, "VP9", "profile-id=0"), vcodec(100, "VP9", "profile-id=2"),
	}
	for _, tc := range []struct {
		name   string
		offer  []OfferedCodec
		stream codec.Codec
		pt     uint8
		reason string
	}{
		{"GStreamer 42c01f to Chromium's 42e01f", chrome, codec.Codec{MimeType: "video/H264", Fmtp: "packetization-mode=1;profile-level-id=42c01f"}, 109, ""},
		{"Main 4d401f to Chromium's Main", chrome, codec.Codec{MimeType: "video/H264", Fmtp: "packetization-mode=1;profile-level-id=4d401f"}, 115, ""},
		{"High 1080p (level 4.0) to 64001f with level asymmetry", chrome, codec.Codec{MimeType: "video/H264", Fmtp: "packetization-mode=1;profile-level-id=640028"}, 123, ""},
		{"Constrained High to 640c1f", chrome, codec.Codec{MimeType: "video/H264", Fmtp: "packetization-mode=1;profile-level-id=640c1f"}, 119, ""},
		{"mode 0 stream to a mode 1 viewer", []OfferedCodec{h264(109, "packetization-mode=1;profile-level-id=42e01f")},
			codec.Codec{MimeType: "video/H264", Fmtp: "profile-level-id=42e01f"}, 109, ""},
		{"Constrained Baseline stream to a High-only viewer", []OfferedCodec{h264(119, "packetization-mode=1;profile-level-id=640c1f")},
			codec.Codec{MimeType: "video/H264", Fmtp: "packetization-mode=1;profile-level-id=42e01f"}, 119, ""},
		{"High stream to a Constrained Baseline viewer", []OfferedCodec{h264(109, "packetization-mode=1;profile-level-id=42e01f")},
			codec.Codec{MimeType: "video/H264", Fmtp: "packetization-mode=1;profile-level-id=640028"}, 0, ReasonH264Profile},
		{"mode 1 stream to a mode 0 viewer", []OfferedCodec{h264(97, "profile-level-id=42e01f")},
			codec.Codec{MimeType: "video/H264", Fmtp: "packetization-mode=1;profile-level-id=42e01f"}, 0, ReasonH264Mode},
		{"level above the offer without asymmetry", []OfferedCodec{h264(109, "packetization-mode=1;profile-level-id=42e01f")},
			codec.Codec{MimeType: "video/H264", Fmtp: "packetization-mode=1;profile-level-id=42e028"}, 0, ReasonH264Level},
		{"level: the payload type at the stream's level wins", []OfferedCodec{
			h264(1, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"),
			h264(2, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e028")},
			codec.Codec{MimeType: "video/H264", Fmtp: "packetization-mode=1;profile-level-id=42e028"}, 2, ""},
		{"VP9 profile 2", chrome, codec.Codec{MimeType: "video/VP9", Fmtp: "profile-id=2"}, 100, ""},
		{"VP9 profile 1 not offered", chrome, codec.Codec{MimeType: "video/VP9", Fmtp: "profile-id=1"}, 0, ReasonCodec},
		{"AV1 not offered", chrome, codec.Codec{MimeType: "video/AV1"}, 0, ReasonCodec},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := Media{Mid: "0", Kind: codec.Video, Direction: "recvonly", Codecs: tc.offer}
			tc.stream.ClockRate = 90000
			c, r := m.Accepts(tc.stream)
			checkChoice(t, c, r, tc.pt, tc.reason)
		})
	}
}

// TestFixturesParse: every stored client offer parses, and its publisher
// sections each get a codec or a reason (the gateway tests check the
// answers).
func TestFixturesParse(t *testing.T) {
	files, err := filepath.Glob("testdata/offers/*.sdp")
	if err != nil || len(files) < 10 {
		t.Fatalf("fixtures: %v (%d files)", err, len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		o, err := ParseOffer(string(b), 0)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if o.BundleTag == "" {
			t.Errorf("%s: no BUNDLE group found", f)
		}
		for _, m := range o.Media {
			if strings.Contains(f, "-whip") {
				if c, r := m.Choose([]string{"h264", "vp8", "vp9", "av1"}); r == nil {
					t.Logf("%s mid %s: %s %s", filepath.Base(f), m.Mid, c.MimeType, c.Fmtp)
				} else {
					t.Logf("%s mid %s: refused: %s", filepath.Base(f), m.Mid, r.Detail)
				}
			}
		}
	}
}

const twoSectionAnswer = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n" +
	"m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=rtpmap:96 H264/90000\r\na=sendonly\r\n" +
	"a=ssrc:1 cname:x\r\na=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=rtpmap:111 opus/48000/2\r\na=sendonly\r\n"

func TestCloseSections(t *testing.T) {
	parse := func(s string) *sdp.SessionDescription {
		var sd sdp.SessionDescription
		if err := sd.UnmarshalString(s); err != nil {
			t.Fatal(err)
		}
		return &sd
	}
	group := func(sd *sdp.SessionDescription) string {
		v, _ := sd.Attribute("group")
		return v
	}
	// Refusing the second section: port 0, out of the bundle.
	out, err := closeSections(twoSectionAnswer, []string{"0", "1"}, []string{"1"}, "0")
	if err != nil {
		t.Fatal(err)
	}
	sd := parse(out)
	if p := sd.MediaDescriptions[1].MediaName.Port.Value; p != 0 {
		t.Errorf("refused section port %d", p)
	}
	if g := group(sd); g != "BUNDLE 0" {
		t.Errorf("group %q", g)
	}
	// Refusing the first, not the tag: candidates move to the audio section.
	out, err = closeSections(twoSectionAnswer, []string{"0", "1"}, []string{"0"}, "")
	if err != nil {
		t.Fatal(err)
	}
	sd = parse(out)
	if _, ok := sd.MediaDescriptions[1].Attribute("candidate"); !ok || sd.MediaDescriptions[0].MediaName.Port.Value != 0 {
		t.Errorf("candidates did not move to the open section:\n%s", out)
	}
	if g := group(sd); g != "BUNDLE 1" {
		t.Errorf("group %q", g)
	}
	// Refusing the offer's BUNDLE tag: inactive, still bundled, no ssrc.
	out, err = closeSections(twoSectionAnswer, []string{"0", "1"}, []string{"0"}, "0")
	if err != nil {
		t.Fatal(err)
	}
	sd = parse(out)
	v := sd.MediaDescriptions[0]
	if _, inactive := v.Attribute("inactive"); !inactive || v.MediaName.Port.Value == 0 {
		t.Errorf("tag section not inactive:\n%s", out)
	}
	if _, ok := v.Attribute("ssrc"); ok {
		t.Errorf("inactive section still announces an SSRC:\n%s", out)
	}
	if _, ok := v.Attribute("sendonly"); ok {
		t.Errorf("inactive section still sendonly:\n%s", out)
	}
	if g := group(sd); g != "BUNDLE 0 1" {
		t.Errorf("group %q", g)
	}
}

func TestRestrictOffer(t *testing.T) {
	b, err := os.ReadFile("testdata/offers/firefox-133-whip.sdp")
	if err != nil {
		t.Fatal(err)
	}
	out, err := restrictOffer(string(b), map[string]uint8{"1": 126})
	if err != nil {
		t.Fatal(err)
	}
	o, err := ParseOffer(out, 0)
	if err != nil {
		t.Fatal(err)
	}
	if v := o.Media[1]; len(v.Codecs) != 1 || v.Codecs[0].PayloadType != 126 ||
		v.Codecs[0].Fmtp != "profile-level-id=42e01f;level-asymmetry-allowed=1;packetization-mode=1" {
		t.Errorf("video section after restriction: %+v", v.Codecs)
	}
	if strings.Contains(sectionOf(out, 1), "a=rtcp-fb:120") {
		t.Error("feedback of a dropped payload type kept")
	}
	if a := o.Media[0]; len(a.Codecs) != 5 {
		t.Errorf("audio section (not restricted) has %d codecs, want the 5 offered", len(a.Codecs))
	}
}

func sectionOf(s string, i int) string {
	parts := strings.Split(s, "\r\nm=")
	if i+1 < len(parts) {
		return parts[i+1]
	}
	return ""
}

func TestAnswerFragmentSkipsClosedSections(t *testing.T) {
	full := "v=0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\n" +
		"m=audio 0 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\n" +
		"m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n"
	frag := answerFragment(full, closedMids(full))
	want := "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n" +
		"a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\n"
	if frag != want {
		t.Errorf("fragment:\n%s\nwant:\n%s", frag, want)
	}
	if f, err := parseFragment(frag); err != nil || len(f.candidates) != 1 || f.candidates[0].mid != "1" {
		t.Errorf("fragment does not parse back with the candidate under mid 1: %+v, %v", f, err)
	}
}
