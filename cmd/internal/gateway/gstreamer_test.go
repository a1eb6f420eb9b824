package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

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
	Version      string `json:"gstreamer"`
}

// needGStreamer skips (or fails under LIVEGATE_E2E=1) without Debian's
// python3-gi and the webrtcbin, x264, Opus, VP8 and libav plugins.
func needGStreamer(t *testing.T) {
	t.Helper()
	check := exec.Command(gstPython, "-c", `import gi
gi.require_version("Gst", "1.0"); gi.require_version("GstWebRTC", "1.0"); gi.require_version("GstSdp", "1.0")
from gi.repository import Gst, GstWebRTC, GstSdp
Gst.init(None)
missing = [e for e in ("webrtcbin", "nicesrc", "x264enc", "rtph264pay", "opusenc", "vp8enc", "avdec_h264", "decodebin") if not Gst.ElementFactory.find(e)]
assert not missing, "missing GStreamer elements: %s" % missing`)
	if out, err := check.CombinedOutput(); err != nil {
		skipOrFail(t, "GStreamer with webrtcbin is not usable from %s (apt-get install gstreamer1.0-plugins-{base,good,bad,ugly} "+
			"gstreamer1.0-nice gstreamer1.0-libav python3-gi gir1.2-gst-plugins-bad-1.0): %v %s", gstPython, err, out)
	}
}

// gstNetns runs the calling test in a loopback-only network namespace: it
// returns false in the parent (which has run the child and reported it).
func gstNetns(t *testing.T, limit time.Duration) bool {
	t.Helper()
	needGStreamer(t)
	isolated, loUp, ifaces, err := loopbackOnly()
	if err != nil {
		t.Fatalf("listing network interfaces: %v", err)
	}
	if !isolated {
		if os.Getenv(envInNetns) != "" {
			t.Fatalf("%s is set but the network namespace has interfaces other than lo: %v", envInNetns, ifaces)
		}
		runInNetnsFor(t, limit)
		return false
	}
	if !loUp {
		skipOrFail(t, "this network namespace has only lo, but lo is down (ip link set lo up)")
	}
	return true
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

// TestGStreamerPublishAndPlay: webrtcbin publishes x264 Constrained
// Baseline (which GStreamer labels profile-level-id=42c01f) and Opus over
// WHIP; a second webrtcbin plays it over WHEP, decodes both and reports the
// first frame time.
func TestGStreamerPublishAndPlay(t *testing.T) {
	if !gstNetns(t, 150*time.Second) {
		return
	}
	g := startGateway(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Second)
	defer cancel()
	const path = "gst/cam"

	pub := startGst(t, ctx, "publish", g.base+"/whip/"+path, "--seconds", "14")
	var st interface{ Live() bool }
	waitFor(t, 20*time.Second, "the GStreamer publisher's audio and video to arrive", func() bool {
		s, ok := g.Hub().Get(path)
		if !ok || !s.Live() {
			return false
		}
		st = s
		stats := s.Stats()
		got := map[codec.Kind]bool{}
		for _, tr := range stats.Tracks {
			if tr.PacketsIn > 0 {
				got[tr.Kind] = true
			}
		}
		return got[codec.Audio] && got[codec.Video]
	})
	s, _ := g.Hub().Get(path)
	for _, tr := range s.Stats().Tracks {
		t.Logf("published %s %s %s", tr.Kind, tr.Codec.MimeType, tr.Codec.Fmtp)
		if tr.Kind == codec.Video && !strings.Contains(tr.Codec.Fmtp, "profile-level-id=42c01f") {
			t.Errorf("video track fmtp %q: want GStreamer's own profile-level-id=42c01f", tr.Codec.Fmtp)
		}
	}

	play := startGst(t, ctx, "play", g.base+"/whep/"+path, "--seconds", "5")
	v := play.result(t, 40*time.Second)
	if !v.OK {
		t.Fatalf("GStreamer player: %s (status %d, ICE %s)\nanswer:\n%s", v.Error, v.Status, v.ICEState, v.Answer)
	}
	first := -1
	if v.FirstVideoMS != nil {
		first = *v.FirstVideoMS
	}
	t.Logf("GStreamer %s player: %d video frames %dx%d, first after %d ms; %d audio buffers; %s / %s",
		v.Version, v.VideoFrames, v.Width, v.Height, first, v.AudioBuffers, v.VideoCaps, v.AudioCaps)
	// 5 s at 30 fps and 50 Opus frames a second, with room for a slow start.
	if v.VideoFrames < 90 {
		t.Errorf("player decoded %d video frames in 5 s, want at least 90", v.VideoFrames)
	}
	if v.AudioBuffers < 150 {
		t.Errorf("player decoded %d audio buffers in 5 s, want at least 150", v.AudioBuffers)
	}
	if v.Width != 1280 || v.Height != 720 {
		t.Errorf("decoded picture %dx%d, want 1280x720", v.Width, v.Height)
	}
	// The goal is 500 ms on loopback; a loaded CI machine gets some slack.
	if first < 0 || first > 1500 {
		t.Errorf("first decoded video frame after %d ms, want under 1500 (goal 500)", first)
	}

	p := pub.result(t, 30*time.Second)
	if !p.OK || p.Status != http.StatusCreated {
		t.Fatalf("GStreamer publisher: %s (status %d)", p.Error, p.Status)
	}
	// The answer echoes GStreamer's H.264 parameters and accepts both
	// sections.
	video := sdpSection(p.Answer, "video")
	if !strings.HasPrefix(video, "m=video 9 ") || !strings.Contains(video, "profile-level-id=42c01f") {
		t.Errorf("answer's video section does not accept GStreamer's 42c01f:\n%s", video)
	}
	if a := sdpSection(p.Answer, "audio"); strings.HasPrefix(a, "m=audio 0 ") || a == "" {
		t.Errorf("answer's audio section is refused:\n%s", a)
	}
	_ = st
	waitFor(t, 5*time.Second, "the publisher's DELETE to end the stream", func() bool { return !s.Live() })
}
