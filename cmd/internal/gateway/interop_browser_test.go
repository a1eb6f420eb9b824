package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/livegate/livegate/relay/rtcclient"
	"github.com/livegate/livegate/relay/rtcclient/clip"
)

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
