package rtc

import (
	"strings"
	"testing"
)

const chromeLikeOffer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\n" +
	"a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:0 PCMU/8000\r\n" +
	"m=video 9 UDP/TLS/RTP/SAVPF 96 102 98\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=sendonly\r\n" +
	"a=rtpmap:96 VP8/90000\r\na=rtpmap:102 H264/90000\r\n" +
	"a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n" +
	"a=rtpmap:98 VP9/90000\r\na=fmtp:98 profile-id=0\r\n"

// FuzzParseOffer: any body a client sends as an offer is either parsed or
// rejected with an error, never a panic, and codec choice stays sane.
func FuzzParseOffer(f *testing.F) {
	f.Add(chromeLikeOffer)
	f.Add("v=0\r\n")
	f.Add(strings.ReplaceAll(chromeLikeOffer, "H264", "H265"))
	f.Add("v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 RTP/AVP 300\r\n")
	f.Fuzz(func(t *testing.T, sdp string) {
		o, err := ParseOffer(sdp, 4)
		if err != nil {
			return
		}
		if len(o.Media) > 4 {
			t.Fatalf("%d media sections passed a limit of 4", len(o.Media))
		}
		keep := map[string]uint8{}
		for _, m := range o.Media {
			c, r := m.Choose([]string{"h264", "vp8"})
			if r == nil && !usable(c.Codec) {
				t.Fatalf("chose unusable codec %+v", c)
			}
			if r == nil {
				keep[m.Mid] = c.PayloadType
			}
			_, _ = m.Accepts(c.Codec)
		}
		_ = o.Names()
		// What pion is handed is still a parsable offer.
		restricted, err := restrictOffer(o.SDP, keep)
		if err != nil {
			t.Fatalf("restricting a parsed offer: %v", err)
		}
		if _, err := ParseOffer(restricted, 4); err != nil {
			t.Fatalf("restricted offer does not parse: %v\n%s", err, restricted)
		}
	})
}

// FuzzTrickleFragment: PATCH bodies are parsed or rejected, never a panic.
func FuzzTrickleFragment(f *testing.F) {
	f.Add("a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\na=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\na=end-of-candidates\r\n")
	f.Add("a=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, frag string) {
		fr, err := parseFragment(frag)
		if err != nil {
			return
		}
		if fr.ufrag == "" && len(fr.candidates) == 0 {
			t.Fatal("accepted a fragment with neither credentials nor candidates")
		}
	})
}
