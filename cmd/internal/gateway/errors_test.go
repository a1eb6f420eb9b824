package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/livegate/livegate/relay/rtcclient"
)

// offerSDP builds a real recvonly/sendonly offer from a pion peer with the
// given codecs registered.
func offerSDP(t *testing.T, codecs []webrtc.RTPCodecParameters, dir webrtc.RTPTransceiverDirection) string {
	t.Helper()
	m := &webrtc.MediaEngine{}
	for _, c := range codecs {
		kind := webrtc.RTPCodecTypeVideo
		if strings.HasPrefix(c.MimeType, "audio/") {
			kind = webrtc.RTPCodecTypeAudio
		}
		if err := m.RegisterCodec(c, kind); err != nil {
			t.Fatal(err)
		}
	}
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	kinds := map[webrtc.RTPCodecType]bool{}
	for _, c := range codecs {
		k := webrtc.RTPCodecTypeVideo
		if strings.HasPrefix(c.MimeType, "audio/") {
			k = webrtc.RTPCodecTypeAudio
		}
		if !kinds[k] {
			kinds[k] = true
			if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: dir}); err != nil {
				t.Fatal(err)
			}
		}
	}
	o, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return o.SDP
}

func post(t *testing.T, url, contentType, body string) (*http.Response, map[string]any) {
	t.Helper()
	return request(t, http.MethodPost, url, contentType, body)
}

func request(t *testing.T, method, url, contentType, body string) (*http.Response, map[string]any) {
	t.Helper()
	resp, b := fetch(t, method, url, body, "Content-Type", contentType)
	var m map[string]any
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal([]byte(b), &m); err != nil {
			t.Fatalf("%s %s: invalid JSON %q: %v", method, url, b, err)
		}
	}
	return resp, m
}

func TestErrorsAreClearJSON(t *testing.T) {
	g := startGateway(t, func(c *Config) { c.MaxBody = 16384 })
	h264 := webrtc.RTPCodecParameters{RTPCodecCapability: rtcclient.H264ConstrainedBaseline, PayloadType: 102}
	pcmu := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}, PayloadType: 0}
	// Interleaved mode (2) is refused; mode 0 is forwarded (it is a subset of 1).
	h264mode2 := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "packetization-mode=2;profile-level-id=42e01f"}, PayloadType: 97}
	good := offerSDP(t, []webrtc.RTPCodecParameters{h264}, webrtc.RTPTransceiverDirectionSendonly)

	pub := g.publish(t, "err/live")
	t.Cleanup(func() { _ = pub.Close(context.Background()) })

	cases := []struct {
		name, method, path, ctype, body string
		status                          int
		code                            string
	}{
		{"wrong content type", "POST", "/whip/err/a", "text/plain", good, 415, "unsupported_media_type"},
		{"missing content type", "POST", "/whip/err/a", "", good, 415, "unsupported_media_type"},
		{"unparsable SDP", "POST", "/whip/err/a", "application/sdp", "this is not SDP", 400, "bad_sdp"},
		{"no supported codec", "POST", "/whip/err/a", "application/sdp",
			offerSDP(t, []webrtc.RTPCodecParameters{pcmu, h264mode2}, webrtc.RTPTransceiverDirectionSendonly), 406, "no_supported_codec"},
		{"WHEP stream not live", "POST", "/whep/err/nobody", "application/sdp",
			offerSDP(t, []webrtc.RTPCodecParameters{h264}, webrtc.RTPTransceiverDirectionRecvonly), 404, "stream_not_found"},
		{"already published", "POST", "/whip/err/live", "application/sdp", good, 409, "already_publishing"},
		{"unknown session DELETE", "DELETE", "/whip/err/live/0123456789abcdef", "", "", 404, "session_not_found"},
		{"unknown session PATCH", "PATCH", "/whep/err/live/0123456789abcdef", "application/trickle-ice-sdpfrag",
			"a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n", 404, "session_not_found"},
		{"oversized body", "POST", "/whip/err/a", "application/sdp", good + strings.Repeat("a=x-pad:0123456789\r\n", 900), 413, "body_too_large"},
		{"bad path", "POST", "/whip/err/bad.name", "application/sdp", good, 400, "bad_path"},
		{"too long segment", "POST", "/whip/err/" + strings.Repeat("x", 65), "application/sdp", good, 400, "bad_path"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := request(t, tc.method, g.base+tc.path, tc.ctype, tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (body %v)", resp.StatusCode, tc.status, body)
			}
			if body == nil || body["code"] != tc.code || body["error"] == "" {
				t.Fatalf("body %v, want JSON with code %q and an error message", body, tc.code)
			}
			if tc.code == "no_supported_codec" {
				msg, _ := body["error"].(string)
				if !strings.Contains(msg, "PCMU") || !strings.Contains(msg, "H264") {
					t.Fatalf("406 message %q does not name the offered codecs", msg)
				}
				if !strings.Contains(msg, "packetization-mode 2 is not supported") {
					t.Fatalf("406 message %q does not say why H.264 was refused", msg)
				}
			}
		})
	}
	// The stream that was live is unaffected by all of this.
	st, ok := g.Hub().Get("err/live")
	if !ok || !st.Live() {
		t.Fatal("live stream disturbed by bad requests")
	}
}

// WHIP resources behave as RFC 9725 says: OPTIONS advertises, DELETE ends.
func TestSessionResource(t *testing.T) {
	g := startGateway(t, nil)
	resp, _ := request(t, http.MethodOptions, g.base+"/whip/res/cam", "", "")
	if resp.StatusCode != http.StatusNoContent || !strings.Contains(resp.Header.Get("Allow"), "POST") ||
		resp.Header.Get("Accept-Post") != "application/sdp" {
		t.Fatalf("OPTIONS: %d %v", resp.StatusCode, resp.Header)
	}
	pub := g.publish(t, "res/cam")
	if !strings.Contains(pub.Resource, "/whip/res/cam/") || pub.ETag == "" {
		t.Fatalf("Location %q ETag %q", pub.Resource, pub.ETag)
	}
	// Trickle candidates are accepted (204).
	resp, body := request(t, http.MethodPatch, pub.Resource, "application/trickle-ice-sdpfrag",
		"a=ice-ufrag:"+ufrag(pub.PC.LocalDescription().SDP)+"\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n")
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PATCH trickle: %d %v", resp.StatusCode, body)
	}
	resp, _ = request(t, http.MethodDelete, pub.Resource, "", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
	st, _ := g.Hub().Get("res/cam")
	waitFor(t, 2*time.Second, "publication ended", func() bool { return st == nil || !st.Live() })
	resp, _ = request(t, http.MethodDelete, pub.Resource, "", "")
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("second DELETE: %d, want 404", resp.StatusCode)
	}
	_ = pub.PC.Close()
}

func ufrag(sdp string) string {
	for _, l := range strings.Split(sdp, "\n") {
		if strings.HasPrefix(l, "a=ice-ufrag:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "a=ice-ufrag:"))
		}
	}
	return ""
}

// SIGTERM-style shutdown ends live sessions and returns quickly.
func TestShutdownEndsSessions(t *testing.T) {
	g := startGateway(t, nil)
	pub := g.publish(t, "bye/cam")
	v := g.view(t, "bye/cam")
	waitConnected(t, v.PC)
	start := time.Now()
	g.shutdown(t)
	t.Logf("shutdown took %v", time.Since(start))
	// Peers are told over DTLS (close_notify) and normally notice at once;
	// if that datagram is lost on a loaded machine, ICE consent notices
	// within the client's 5 s disconnected timeout.
	for _, pc := range []*webrtc.PeerConnection{pub.PC, v.PC} {
		waitFor(t, 7*time.Second, "peer notices the shutdown", func() bool {
			s := pc.ConnectionState()
			return s == webrtc.PeerConnectionStateClosed || s == webrtc.PeerConnectionStateFailed ||
				s == webrtc.PeerConnectionStateDisconnected
		})
	}
	_ = pub.PC.Close()
}

// An ICE restart through PATCH keeps the session and changes the ETag;
// media keeps flowing.
func TestICERestart(t *testing.T) {
	g := startGateway(t, nil)
	g.playing(t, "ice/cam")
	v := g.view(t, "ice/cam")
	v.waitFrames(t, 3*time.Second, 6, "frames")

	old := v.ETag
	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rcancel()
	if err := v.RestartICE(rctx); err != nil {
		t.Fatalf("ICE restart: %v", err)
	}
	if v.ETag == "" || v.ETag == old {
		t.Fatalf("ETag %q after restart, was %q", v.ETag, old)
	}
	f, _, _ := v.snapshot()
	n := len(f)
	waitFor(t, 5*time.Second, "frames after the ICE restart", func() bool { f, _, _ := v.snapshot(); return len(f) > n+30 })

	// A PATCH with a stale ETag is refused.
	resp, _ := fetch(t, http.MethodPatch, v.Resource, "a=ice-ufrag:zzzz\r\na=ice-pwd:zzzzzzzzzzzzzzzzzzzzzzzz\r\n",
		"Content-Type", "application/trickle-ice-sdpfrag", "If-Match", old)
	if resp.StatusCode != http.StatusPreconditionFailed {
		t.Fatalf("PATCH with a stale ETag: %d, want 412", resp.StatusCode)
	}
}

// A client that lost the answer to its ICE restart and sends the same
// restart again gets the answer again (200), not a 204 it cannot use.
func TestICERestartRetryAfterLostAnswer(t *testing.T) {
	g := startGateway(t, nil)
	pub := g.publish(t, "ice/retry")
	t.Cleanup(func() { _ = pub.Close(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pub.RestartICE(ctx); err != nil {
		t.Fatal(err)
	}
	// The same restart fragment again, as a client would resend it.
	frag := "a=ice-ufrag:" + ufrag(pub.PC.LocalDescription().SDP) + "\r\na=ice-pwd:" +
		pwd(pub.PC.LocalDescription().SDP) + "\r\n"
	resp, b := fetch(t, http.MethodPatch, pub.Resource, frag, "Content-Type", "application/trickle-ice-sdpfrag", "If-Match", "*")
	if resp.StatusCode != http.StatusOK || !strings.Contains(b, "a=ice-ufrag:") {
		t.Fatalf("repeated restart: %d %q, want 200 with the answer fragment", resp.StatusCode, b)
	}
}

func pwd(sdp string) string {
	for _, l := range strings.Split(sdp, "\n") {
		if strings.HasPrefix(l, "a=ice-pwd:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "a=ice-pwd:"))
		}
	}
	return ""
}
