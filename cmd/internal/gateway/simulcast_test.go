package gateway

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/livegate/livegate/relay/rtcclient"
	"github.com/livegate/livegate/relay/rtcclient/clip"
)

// simLayerClips are the three layers a pion simulcast publisher sends: the
// shipped 640x360 clip as the top layer "f", and the same pictures scaled to
// 320x180 ("h") and 160x90 ("q"). rids are sent in the order q, h, f, as
// Chromium does; the gateway must not rely on that order or on the names.
func simLayerClips(t *testing.T) map[string][]clip.Sample {
	t.Helper()
	out := map[string][]clip.Sample{"f": loadClip(t).video}
	for rid, file := range map[string]string{"h": "clip-180p.h264", "q": "clip-90p.h264"} {
		s, err := clip.LoadH264("../../../testdata/" + file)
		if err != nil {
			t.Fatal(err)
		}
		out[rid] = s
	}
	return out
}

// ridTagger puts the mid and rid header extensions on a simulcast sender's
// packets, as browsers do (pion's sender does not): without them the
// receiver cannot tell which layer an SSRC is.
type ridTagger struct {
	interceptor.NoOp
	mu   sync.Mutex
	rids map[uint32]string
	mid  func() string
}

func (r *ridTagger) NewInterceptor(string) (interceptor.Interceptor, error) { return r, nil }

func (r *ridTagger) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	var midID, ridID uint8
	for _, e := range info.RTPHeaderExtensions {
		switch e.URI {
		case sdp.SDESMidURI:
			midID = uint8(e.ID)
		case sdp.SDESRTPStreamIDURI:
			ridID = uint8(e.ID)
		}
	}
	r.mu.Lock()
	rid := r.rids[info.SSRC]
	r.mu.Unlock()
	if rid == "" || midID == 0 || ridID == 0 {
		return w
	}
	return interceptor.RTPWriterFunc(func(h *rtp.Header, p []byte, a interceptor.Attributes) (int, error) {
		_ = h.SetExtension(midID, []byte(r.mid()))
		_ = h.SetExtension(ridID, []byte(rid))
		return w.Write(h, p, a)
	})
}

// simPublisher is a pion WHIP client sending H.264 simulcast (rids q, h, f)
// and Opus. Like a browser it answers a PLI on a layer with a keyframe of
// that layer (it jumps to the clip's next IDR).
type simPublisher struct {
	*rtcclient.Session
	layers       map[string]*simLayer
	audio        *webrtc.TrackLocalStaticSample
	audioSamples []clip.Sample
}

type simLayer struct {
	track   *webrtc.TrackLocalStaticSample
	samples []clip.Sample
	plis    atomic.Int64
	keyNow  atomic.Bool // a PLI came: send the next IDR
	paused  atomic.Bool
}

func publishSimulcast(t *testing.T, g *testGateway, path string) *simPublisher {
	t.Helper()
	tagger := &ridTagger{rids: map[uint32]string{}}
	api, err := rtcclient.LoopbackAPI(func(m *webrtc.MediaEngine, reg *interceptor.Registry) error {
		if err := m.RegisterDefaultCodecs(); err != nil {
			return err
		}
		if err := webrtc.ConfigureSimulcastExtensionHeaders(m); err != nil {
			return err
		}
		reg.Add(tagger)
		return webrtc.RegisterDefaultInterceptors(m, reg)
	})
	if err != nil {
		t.Fatal(err)
	}
	p := &simPublisher{layers: map[string]*simLayer{}, audioSamples: loadClip(t).audio}
	clips := simLayerClips(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p.Session, err = rtcclient.Connect(ctx, g.base+"/whip/"+path, rtcclient.Options{API: api, HTTP: httpClient},
		func(pc *webrtc.PeerConnection) error {
			var sender *webrtc.RTPSender
			for _, rid := range []string{"q", "h", "f"} {
				tr, err := webrtc.NewTrackLocalStaticSample(rtcclient.H264ConstrainedBaseline, "video", "simulcast",
					webrtc.WithRTPStreamID(rid))
				if err != nil {
					return err
				}
				p.layers[rid] = &simLayer{track: tr, samples: clips[rid]}
				if sender == nil {
					t, err := pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
					if err != nil {
						return err
					}
					sender = t.Sender()
					tagger.mid = t.Mid
				} else if err := sender.AddEncoding(tr); err != nil {
					return err
				}
			}
			tagger.mu.Lock()
			for _, e := range sender.GetParameters().Encodings {
				tagger.rids[uint32(e.SSRC)] = e.RID
			}
			tagger.mu.Unlock()
			for rid, l := range p.layers {
				go func() {
					for {
						pkts, _, err := sender.ReadSimulcastRTCP(rid)
						if err != nil {
							return
						}
						for _, pkt := range pkts {
							switch pkt.(type) {
							case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
								l.plis.Add(1)
								l.keyNow.Store(true)
							}
						}
					}
				}()
			}
			p.audio, err = webrtc.NewTrackLocalStaticSample(rtcclient.Opus, "audio", "simulcast")
			if err != nil {
				return err
			}
			at, err := pc.AddTransceiverFromTrack(p.audio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
			if err != nil {
				return err
			}
			go func() {
				for {
					if _, _, err := at.Sender().ReadRTCP(); err != nil {
						return
					}
				}
			}()
			return nil
		})
	if err != nil {
		t.Fatalf("simulcast publish %s: %v", path, err)
	}
	waitConnected(t, p.PC)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	return p
}

// playSimulcast publishes path with publishSimulcast and plays it until
// stop is called or the test ends (stop may be called more than once).
func playSimulcast(t *testing.T, g *testGateway, path string) (pub *simPublisher, stop func()) {
	t.Helper()
	pub = publishSimulcast(t, g, path)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		pub.play(ctx)
	}()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return pub, stop
}

// play sends every layer and the audio in real time until ctx ends.
func (p *simPublisher) play(ctx context.Context) {
	var wg sync.WaitGroup
	for _, l := range p.layers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.play(ctx)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = clip.Play(ctx, p.audioSamples, func(s clip.Sample, _ int) error {
			return p.audio.WriteSample(media.Sample{Data: s.Data, Duration: s.Duration})
		})
	}()
	wg.Wait()
}

func (l *simLayer) play(ctx context.Context) {
	i, dropped := 0, uint16(0)
	next := time.Now()
	for {
		if l.paused.Load() {
			dropped++
		} else {
			if l.keyNow.Swap(false) || dropped > 0 {
				i = nextKeyframe(l.samples, i)
			}
			s := l.samples[i]
			// A resumed layer's timestamps account for the time it was
			// paused, as an encoder's do.
			_ = l.track.WriteSample(media.Sample{Data: s.Data, Duration: s.Duration, PrevDroppedPackets: dropped})
			dropped = 0
			i = (i + 1) % len(l.samples)
		}
		next = next.Add(time.Second / clip.VideoFrameRate)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next)):
		}
	}
}

func nextKeyframe(s []clip.Sample, i int) int {
	for n := range s {
		if j := (i + n) % len(s); s[j].Keyframe {
			return j
		}
	}
	return i
}

// spsSize is the picture size of the SPS among a frame's NAL units.
func spsSize(nalus [][]byte) (int, int, bool) {
	for _, n := range nalus {
		if len(n) > 0 && n[0]&0x1f == 7 {
			var s h264.SPS
			if s.Unmarshal(n) == nil {
				return s.Width(), s.Height(), true
			}
		}
	}
	return 0, 0, false
}

// layerIndex maps every access unit of every layer to "rid:position".
func layerIndex(clips map[string][]clip.Sample) map[[32]byte]string {
	m := map[[32]byte]string{}
	for rid, samples := range clips {
		for i, s := range samples {
			m[frameKey(sentNALUs(s.Data))] = fmt.Sprintf("%s:%d", rid, i)
		}
	}
	return m
}

// TestSimulcastPublisherTopLayerReachesViewer: a pion publisher sends three
// simulcast layers; a WHEP viewer gets exactly the top layer's access units,
// starting at a keyframe, with continuous sequence numbers and timestamps;
// its keyframe requests reach the top layer only. When the top layer pauses
// (as a browser's does when its bandwidth drops) the viewer continues on
// the next one after a keyframe, and back on the top layer when it resumes,
// still as one continuous stream.
func TestSimulcastPublisherTopLayerReachesViewer(t *testing.T) {
	g := startGateway(t, nil)
	pub, _ := playSimulcast(t, g, "sim/pion")

	g.waitStreamLive(t, 5*time.Second, "sim/pion")
	time.Sleep(500 * time.Millisecond) // let every layer start
	v := g.view(t, "sim/pion")
	v.waitFrames(t, 10*time.Second, 60, "60 frames at the viewer")

	// A viewer's keyframe request goes to the forwarded layer's SSRC.
	before := map[string]int64{}
	for rid, l := range pub.layers {
		before[rid] = l.plis.Load()
	}
	if err := v.PC.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: videoSSRC(v)}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "the viewer's PLI at the top layer", func() bool {
		return pub.layers["f"].plis.Load() > before["f"]
	})

	// The top layer pauses for 2 s, then resumes.
	pub.layers["f"].paused.Store(true)
	pausedAt := time.Now()
	time.Sleep(2 * time.Second)
	pub.layers["f"].paused.Store(false)
	time.Sleep(2 * time.Second)

	frames, _, hdrs := v.snapshot()
	// Every frame is whole and from a layer, and every change of layer is
	// at a keyframe carrying the new layer's SPS (what a decoder can follow).
	runs := viewerLayerRuns(t, frames, layerIndex(simLayerClips(t)))
	var seq []string // layer of each run of frames
	for _, r := range runs {
		w, h, _ := spsSize(frames[r.first].nalus)
		seq = append(seq, r.rid)
		t.Logf("frame %d: layer %s (%dx%d)", r.first, r.rid, w, h)
	}
	var gapAfterPause time.Duration
	for n := 1; n < len(frames); n++ {
		if d := frames[n].at.Sub(frames[n-1].at); frames[n].at.After(pausedAt) && d > gapAfterPause {
			gapAfterPause = d
		}
	}
	if got := strings.Join(seq, ","); got != "f,h,f" {
		t.Fatalf("layers seen by the viewer: %s; want f,h,f (top, next while the top was paused, top again)", got)
	}
	if gapAfterPause > 1500*time.Millisecond {
		t.Errorf("the viewer's picture froze for %v when the top layer paused", gapAfterPause)
	}
	checkOneStream(t, hdrs)
	if n := pub.layers["q"].plis.Load(); n != 0 {
		t.Errorf("%d keyframe requests reached layer q, which was never needed", n)
	}
	t.Logf("%d frames, %d packets; freeze when the top layer paused: %v; PLIs q=%d h=%d f=%d",
		len(frames), len(hdrs), gapAfterPause, pub.layers["q"].plis.Load(), pub.layers["h"].plis.Load(), pub.layers["f"].plis.Load())
}

// TestSimulcastOfferRefusedWithReason: offers whose simulcast cannot be
// served get a 4xx that says why, never an answer the client would reject.
func TestSimulcastOfferRefusedWithReason(t *testing.T) {
	g := startGateway(t, nil)
	base := chromeLikeSimulcastOffer(t)
	replace := func(pairs ...string) func(string) string {
		return func(o string) string { return strings.NewReplacer(pairs...).Replace(o) }
	}
	for _, c := range []struct {
		name string
		edit func(string) string
		want string
	}{
		{"alternatives", replace("a=simulcast:send q;h;f", "a=simulcast:send q,h;f"), "alternative rids"},
		{"no rid extension", replace("a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n", ""), "rtp-stream-id header extension"},
		{"undeclared rid", replace("a=rid:f send\r\n", ""), `rid "f" has no a=rid line`},
		{"receive direction", replace("a=simulcast:send q;h;f", "a=simulcast:recv q;h;f"), "a=simulcast:send"},
		{"too many layers", replace("a=simulcast:send q;h;f", "a=simulcast:send q;h;f;x;y",
			"a=rid:f send\r\n", "a=rid:f send\r\na=rid:x send\r\na=rid:y send\r\n"), "at most 4"},
		{"pt restriction", replace("a=rid:q send", "a=rid:q send pt=127"), "may not use"},
		{"audio simulcast", replace("a=msid:stream audio0\r\n", "a=msid:stream audio0\r\na=rid:a send\r\na=simulcast:send a\r\n"), "video only"},
	} {
		offer := c.edit(base)
		if offer == base {
			t.Fatalf("%s: the offer was not changed", c.name)
		}
		resp, body := post(t, g.base+"/whip/sim/bad", "application/sdp", offer)
		msg, _ := body["error"].(string)
		if resp.StatusCode != http.StatusUnprocessableEntity || body["code"] != "unsupported_simulcast" || !strings.Contains(msg, c.want) {
			t.Errorf("%s: %d %v; want 422 unsupported_simulcast mentioning %q", c.name, resp.StatusCode, body, c.want)
		}
	}
	// The unchanged offer is answered with simulcast negotiated.
	answer := answerOf(t, g, g.base+"/whip/sim/good", base)
	for _, want := range []string{"a=simulcast:recv q;h;f", "a=rid:q recv", "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
		"urn:ietf:params:rtp-hdrext:sdes:mid"} {
		if !strings.Contains(answer, want) {
			t.Errorf("answer lacks %q:\n%s", want, answer)
		}
	}
}

// chromeLikeSimulcastOffer is the video section Chromium offers for three
// sendEncodings (trimmed to one codec), with an audio section.
func chromeLikeSimulcastOffer(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("testdata/chrome-like-simulcast.sdp")
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(string(b), "\n", "\r\n")
}

// TestSimulcastThroughRelayLink: an edge's viewer of a simulcast stream gets
// the top layer too (a relay link is a WHEP reader of the origin), intact.
func TestSimulcastThroughRelayLink(t *testing.T) {
	origin := startGateway(t, func(c *Config) { c.ClusterKey = clusterKey })
	e := edge(t, time.Second, origin)
	playSimulcast(t, origin, "sim/relayed")
	origin.waitStreamLive(t, 5*time.Second, "sim/relayed")
	time.Sleep(500 * time.Millisecond)
	v := e.view(t, "sim/relayed")
	v.waitFrames(t, 10*time.Second, 60, "60 frames at the edge's viewer")
	frames, _, _ := v.snapshot()
	index := layerIndex(simLayerClips(t))
	for n, f := range frames {
		at, ok := index[frameKey(f.nalus)]
		if !f.complete || !ok || !strings.HasPrefix(at, "f:") {
			t.Fatalf("frame %d at the edge's viewer: complete %v, access unit %q; want the top layer's", n, f.complete, at)
		}
	}
	if w, h, ok := spsSize(frames[0].nalus); !ok || w != 640 || h != 360 {
		t.Fatalf("first frame at the edge: SPS %v %dx%d, want 640x360", ok, w, h)
	}
}
