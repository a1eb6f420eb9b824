package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
)

// GStreamer's webrtcbin is an independent WebRTC stack (libnice ICE,
// OpenSSL DTLS, GStreamer RTP): these tests publish and play through
// livegate with it, in the loopback-only network namespace of the browser
// tests. testdata/gst_webrtc.py does the WHIP/WHEP signalling (GStreamer
// 1.22 has no whipsink/whepsrc).

const gstPython = "/usr/bin/python3" // Debian's, where python3-gi lives

// gstResult is what gst_webrtc.py prints.
type gstResult struct {
	OK           bool   `json:"ok"`
	Error        string `json:"error"`
	Offer        string `json:"offer"`
	Answer       string `json:"answer"`
	Status       int    `json:"status"`
	VideoFrames  int    `json:"video_frames"`
	AudioBuffers int    `json:"audio_buffers"`
	FirstVideoMS *int   `json:"first_video_ms"`
	FirstAudioMS *int   `json:"first_audio_ms"`
	Width        int    `json:"width"`
	Height       int    `json:"height"`
	VideoCaps    string `json:"video_caps"`
	AudioCaps    string `json:"audio_caps"`
	ICEState     string `json:"ice_state"`
	AnswerMS     *int   `json:"answer_ms"`
	ConnectedMS  *int   `json:"ice_connected_ms"`
	FirstPadMS   *int   `json:"first_pad_ms"`
	Version      string `json:"gstreamer"`
}

// needGStreamer skips (or fails under LIVEGATE_E2E=1) without Debian's
// python3-gi and the webrtcbin, x264, Opus, VP8 and libav plugins.
func needGStreamer(t *testing.T) {
	t.Helper()
	if out, err := gstCheck(); err != nil {
		skipOrFail(t, "GStreamer with webrtcbin is not usable from %s (apt-get install gstreamer1.0-plugins-{base,good,bad,ugly} "+
			"gstreamer1.0-nice gstreamer1.0-libav python3-gi gir1.2-gst-plugins-bad-1.0): %v %s", gstPython, err, out)
	}
}

// gstreamerUsable reports whether needGStreamer would pass.
func gstreamerUsable() bool {
	_, err := gstCheck()
	return err == nil
}

func gstCheck() ([]byte, error) {
	check := exec.Command(gstPython, "-c", `import gi
gi.require_version("Gst", "1.0"); gi.require_version("GstWebRTC", "1.0"); gi.require_version("GstSdp", "1.0")
from gi.repository import Gst, GstWebRTC, GstSdp
Gst.init(None)
missing = [e for e in ("webrtcbin", "nicesrc", "x264enc", "rtph264pay", "opusenc", "vp8enc", "avdec_h264", "decodebin") if not Gst.ElementFactory.find(e)]
assert not missing, "missing GStreamer elements: %s" % missing`)
	return check.CombinedOutput()
}

// gstNetns runs the calling test in a loopback-only network namespace: it
// returns false in the parent (which has run the child and reported it).
func gstNetns(t *testing.T, limit time.Duration) bool {
	t.Helper()
	needGStreamer(t)
	return inLoopbackNetns(t, limit)
}

// gstPeer is a running gst_webrtc.py.
type gstPeer struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	done chan struct{}
}

func startGst(t *testing.T, ctx context.Context, args ...string) *gstPeer {
	t.Helper()
	p := &gstPeer{done: make(chan struct{})}
	p.cmd = exec.CommandContext(ctx, gstPython, append([]string{"testdata/gst_webrtc.py"}, args...)...)
	p.cmd.Stdout = &p.out
	p.cmd.Stderr = &lineLogger{t: t, prefix: "gst " + args[0] + "| ", copy: io.Discard}
	p.cmd.WaitDelay = 5 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting gst_webrtc.py: %v", err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if p.cmd.Process != nil {
			_ = p.cmd.Process.Kill()
		}
		<-p.done
	})
	return p
}

func (p *gstPeer) result(t *testing.T, timeout time.Duration) gstResult {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("gst_webrtc.py %v did not finish in %v", p.cmd.Args[2:], timeout)
	}
	var r gstResult
	if err := json.Unmarshal(bytes.TrimSpace(p.out.Bytes()), &r); err != nil {
		t.Fatalf("gst_webrtc.py %v printed %q: %v", p.cmd.Args[2:], p.out.String(), err)
	}
	return r
}

// sdpSection returns the m= section of an SDP whose m= line starts with
// "m="+kind, or "".
func sdpSection(sdp, kind string) string {
	for _, s := range strings.Split(sdp, "\nm=")[1:] {
		if strings.HasPrefix(s, kind+" ") {
			return "m=" + s
		}
	}
	return ""
}

// TestGStreamerPublishAndPlay: webrtcbin publishes over WHIP and a second
// webrtcbin plays over WHEP, decoding audio and video and reporting the
// first frame time: x264 Constrained Baseline (which GStreamer labels
// profile-level-id=42c01f) + Opus, then VP8 + Opus. Then a stream without
// video: the player's video section is refused (inactive when it is the
// BUNDLE tag, port 0 otherwise) and GStreamer plays the audio either way.
func TestGStreamerPublishAndPlay(t *testing.T) {
	if !gstNetns(t, 170*time.Second) {
		return
	}
	g := startGateway(t, nil)
	for _, tc := range []struct {
		video, wantFmtp string
		width, height   int
	}{
		{"h264", "profile-level-id=42c01f", 1280, 720},
		{"vp8", "", 640, 360},
	} {
		t.Run(tc.video, func(t *testing.T) {
			path := "gst/" + tc.video
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			pub := startGst(t, ctx, "publish", g.base+"/whip/"+path, "--video", tc.video, "--seconds", "10")
			st := waitGstTracks(t, g, path, codec.Audio, codec.Video)
			for _, tr := range st.Stats().Tracks {
				t.Logf("published %s %s %s", tr.Kind, tr.Codec.MimeType, tr.Codec.Fmtp)
				if tr.Kind == codec.Video && !strings.Contains(tr.Codec.Fmtp, tc.wantFmtp) {
					t.Errorf("video track fmtp %q: want GStreamer's own %s", tr.Codec.Fmtp, tc.wantFmtp)
				}
			}

			v := startGst(t, ctx, "play", g.base+"/whep/"+path, "--video", tc.video, "--seconds", "4").result(t, 40*time.Second)
			if !v.OK {
				t.Fatalf("GStreamer player: %s (status %d, ICE %s)\nanswer:\n%s", v.Error, v.Status, v.ICEState, v.Answer)
			}
			first := -1
			if v.FirstVideoMS != nil {
				first = *v.FirstVideoMS
			}
			t.Logf("GStreamer %s player: %d video frames %dx%d, first after %d ms (answer %s, ICE connected %s, first RTP pad %s); %d audio buffers; %s / %s",
				v.Version, v.VideoFrames, v.Width, v.Height, first, ms(v.AnswerMS), ms(v.ConnectedMS), ms(v.FirstPadMS),
				v.AudioBuffers, v.VideoCaps, v.AudioCaps)
			// 4 s at 30 fps and 50 Opus frames a second, with room for a slow start.
			if v.VideoFrames < 70 {
				t.Errorf("player decoded %d video frames in 4 s, want at least 70", v.VideoFrames)
			}
			if v.AudioBuffers < 120 {
				t.Errorf("player decoded %d audio buffers in 4 s, want at least 120", v.AudioBuffers)
			}
			if v.Width != tc.width || v.Height != tc.height {
				t.Errorf("decoded picture %dx%d, want %dx%d", v.Width, v.Height, tc.width, tc.height)
			}
			// The goal is 500 ms on loopback; a loaded CI machine gets some slack.
			if first < 0 || first > 1500 {
				t.Errorf("first decoded video frame after %d ms, want under 1500 (goal 500)", first)
			}

			p := pub.result(t, 30*time.Second)
			if !p.OK || p.Status != http.StatusCreated {
				t.Fatalf("GStreamer publisher: %s (status %d)", p.Error, p.Status)
			}
			// The answer accepts both sections and echoes GStreamer's
			// parameters.
			clientFixture{want: map[string]string{"video0": "^video/" + strings.ToUpper(tc.video) + " .*" + tc.wantFmtp, "audio1": "^audio/OPUS "}}.
				check(t, p.Offer, p.Answer, "recvonly")
			waitFor(t, 5*time.Second, "the publisher's DELETE to end the stream", func() bool { return !st.Live() })
		})
	}

	t.Run("audio-only stream", func(t *testing.T) {
		path := "gst/radio"
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		pub := startGst(t, ctx, "publish", g.base+"/whip/"+path, "--video", "none", "--seconds", "12")
		waitGstTracks(t, g, path, codec.Audio)
		for _, order := range [][]string{nil, {"--audio-first"}} {
			v := startGst(t, ctx, append([]string{"play", g.base + "/whep/" + path, "--seconds", "3"}, order...)...).result(t, 30*time.Second)
			if !v.OK {
				t.Fatalf("GStreamer player %v: %s (status %d)\nanswer:\n%s", order, v.Error, v.Status, v.Answer)
			}
			t.Logf("GStreamer player %v of an audio-only stream: %d audio buffers, %d video frames", order, v.AudioBuffers, v.VideoFrames)
			if v.AudioBuffers < 80 || v.VideoFrames != 0 {
				t.Errorf("player %v: %d audio buffers (want >= 80), %d video frames (want 0)", order, v.AudioBuffers, v.VideoFrames)
			}
			video := sdpSection(v.Answer, "video")
			if order == nil && !strings.Contains(video, "a=inactive") {
				t.Errorf("video section (the BUNDLE tag) not inactive:\n%s", video)
			}
			if order != nil && !strings.HasPrefix(video, "m=video 0 ") {
				t.Errorf("video section not refused with port 0:\n%s", video)
			}
		}
		if p := pub.result(t, 30*time.Second); !p.OK {
			t.Fatalf("GStreamer audio-only publisher: %s", p.Error)
		}
		_, metrics := httpGetText(t, g.base+"/metrics")
		if !strings.Contains(metrics, `livegate_refused_media_sections_total{direction="whep",kind="video",reason="no_track"} 2`) {
			t.Errorf("the two refused video sections are not counted:\n%s", grepLines(metrics, "livegate_refused"))
		}
	})
}

func ms(p *int) string {
	if p == nil {
		return "never"
	}
	return fmt.Sprintf("%d ms", *p)
}

// waitGstTracks waits until path is live and packets of every kind arrive.
func waitGstTracks(t *testing.T, g *testGateway, path string, kinds ...codec.Kind) *relay.Stream {
	t.Helper()
	var st *relay.Stream
	waitFor(t, 20*time.Second, "the GStreamer publisher's media to arrive", func() bool {
		s, ok := g.Hub().Get(path)
		if !ok || !s.Live() {
			return false
		}
		got := map[codec.Kind]bool{}
		for _, tr := range s.Stats().Tracks {
			if tr.PacketsIn > 0 {
				got[tr.Kind] = true
			}
		}
		for _, k := range kinds {
			if !got[k] {
				return false
			}
		}
		st = s
		return true
	})
	return st
}
