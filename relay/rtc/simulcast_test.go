package rtc

import (
	"errors"
	"strings"
	"testing"

	"github.com/livegate/livegate/relay/codec"
)

const simulcastVideo = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" +
	"m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n" +
	"a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n" +
	"a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n" +
	"a=sendonly\r\na=msid:s v\r\na=rtpmap:96 VP8/90000\r\n" +
	"a=rid:f send\r\na=rid:h send\r\na=rid:q send\r\na=simulcast:send f;h;~q\r\n"

func TestParseSimulcast(t *testing.T) {
	vp8 := OfferedCodec{PayloadType: 96, Codec: codec.Codec{MimeType: "video/VP8", ClockRate: 90000}}
	for _, c := range []struct {
		name      string
		from, to  string
		wantError string // "" accepted
	}{
		{"accepted", "", "", ""},
		{"no rid extension", "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n", "", "rtp-stream-id"},
		{"session-level extmap", "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n", "", ""},
		{"no msid", "a=msid:s v\r\n", "", "a=msid"},
		{"duplicate rid", "send f;h;~q", "send f;h;f", "listed twice"},
		{"invalid rid", "a=rid:q send\r\n", "a=rid:q send\r\na=rid:q! send\r\n", "every rid must be a layer"},
		{"bad rid name", "send f;h;~q", "send f;h;~q;a.b", "invalid rid"},
		{"recv rid", "a=rid:h send", "a=rid:h recv", `must be "send"`},
		{"both directions", "send f;h;~q", "send f;h;~q recv x", "both directions"},
		{"ssrc-group SIM", "a=rid:f send\r\na=rid:h send\r\na=rid:q send\r\na=simulcast:send f;h;~q\r\n",
			"a=ssrc-group:SIM 1 2 3\r\na=ssrc:1 cname:x\r\n", "ssrc-group:SIM"},
		{"pt restriction satisfied", "a=rid:f send", "a=rid:f send pt=96;max-width=1280", ""},
		{"pt restriction", "a=rid:f send", "a=rid:f send pt=97", "may not use"},
	} {
		offer := simulcastVideo
		if c.from != "" {
			offer = strings.Replace(offer, c.from, c.to, 1)
		}
		if c.name == "session-level extmap" {
			offer = strings.Replace(offer, "t=0 0\r\n", "t=0 0\r\na=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n", 1)
		}
		all, err := ParseSimulcast(offer)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		s := all["0"]
		if s == nil {
			t.Fatalf("%s: no simulcast found", c.name)
		}
		err = s.CheckPublish("0", vp8)
		switch {
		case c.wantError == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.wantError != "" && (err == nil || !errors.Is(err, ErrUnsupportedSimulcast) || !strings.Contains(err.Error(), c.wantError)):
			t.Errorf("%s: error %v, want ErrUnsupportedSimulcast mentioning %q", c.name, err, c.wantError)
		}
		if c.name == "accepted" {
			if len(s.RIDs) != 3 || s.RIDs[0].ID != "f" || s.RIDs[2].ID != "q" || !s.RIDs[2].Paused {
				t.Errorf("rids %+v, want f, h, q (paused)", s.RIDs)
			}
		}
	}
	// A section without simulcast has no description.
	all, err := ParseSimulcast(strings.Replace(simulcastVideo, "a=simulcast:send f;h;~q\r\n", "", 1))
	if err != nil || len(all) != 0 {
		t.Fatalf("without a=simulcast: %v %v", all, err)
	}
}
