package codec

import (
	"bytes"
	"testing"

	"github.com/pion/sdp/v3"
)

func TestFromSDP(t *testing.T) {
	const offer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" +
		"m=audio 9 UDP/TLS/RTP/SAVPF 111 9\r\nc=IN IP4 0.0.0.0\r\n" +
		"a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:9 G722/8000\r\n" +
		"m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\nc=IN IP4 0.0.0.0\r\n" +
		"a=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1;profile-level-id=42e01f\r\n" +
		"a=rtpmap:97 rtx/x\r\n"
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		t.Fatal(err)
	}
	audio, video := sd.MediaDescriptions[0], sd.MediaDescriptions[1]
	for _, tc := range []struct {
		name string
		md   *sdp.MediaDescription
		pt   uint8
		want Codec
		ok   bool
	}{
		{"opus with channels and fmtp", audio, 111, Codec{MimeType: "audio/opus", ClockRate: 48000, Channels: 2, Fmtp: "minptime=10;useinbandfec=1"}, true},
		{"G.722 without fmtp", audio, 9, Codec{MimeType: "audio/G722", ClockRate: 8000}, true},
		{"H.264", video, 96, Codec{MimeType: "video/H264", ClockRate: 90000, Fmtp: "packetization-mode=1;profile-level-id=42e01f"}, true},
		{"clock rate not a number", video, 97, Codec{}, false},
		{"payload type absent", video, 98, Codec{}, false},
	} {
		got, ok := FromSDP(tc.md, tc.pt)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("%s: got %+v, %v; want %+v, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestH264SpropParameterSets(t *testing.T) {
	// SPS 67 42 c0 1f, PPS 68 ce 3c 80 in base64, with a broken part between.
	sps, pps := H264SpropParameterSets("packetization-mode=1; sprop-parameter-sets=Z0LAHw==,!!,aM48gA==;profile-level-id=42c01f")
	if !bytes.Equal(sps, []byte{0x67, 0x42, 0xc0, 0x1f}) || !bytes.Equal(pps, []byte{0x68, 0xce, 0x3c, 0x80}) {
		t.Fatalf("sps %x pps %x", sps, pps)
	}
	if sps, pps := H264SpropParameterSets("packetization-mode=1"); sps != nil || pps != nil {
		t.Fatalf("no sprop: got %x %x", sps, pps)
	}
}

func TestSeqTrackerGaps(t *testing.T) {
	var s SeqTracker
	for i, tc := range []struct {
		seq uint16
		gap bool
	}{{65534, false}, {65535, false}, {0, false}, {2, true}, {3, false}, {3, true}} {
		if got := s.Gap(tc.seq); got != tc.gap {
			t.Errorf("packet %d (seq %d): gap %v, want %v", i, tc.seq, got, tc.gap)
		}
	}
}

func TestFramedIsForwardedMinusVP8(t *testing.T) {
	for _, m := range []string{MimeH264, MimeVP8, MimeVP9, MimeAV1, MimeOpus, "audio/PCMU"} {
		if want := Supported(m) && m != MimeVP8; Framed(m) != want {
			t.Errorf("Framed(%s) = %v, want %v", m, Framed(m), want)
		}
	}
	if !Framed("VIDEO/h264") {
		t.Error("MIME types are case-insensitive")
	}
}
