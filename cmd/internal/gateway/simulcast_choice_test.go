package gateway

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/rtcclient/clip"
)

// layerRun is a run of frames of one layer at a viewer.
type layerRun struct {
	rid   string
	first int       // frame index
	at    time.Time // arrival of its first frame
}

// viewerLayerRuns checks that every frame a viewer got is complete, comes
// from one of the publisher's layers, and that each change of layer happens
// at a keyframe carrying the new layer's SPS; it returns the runs.
func viewerLayerRuns(t *testing.T, frames []frame, index map[[32]byte]string) []layerRun {
	t.Helper()
	var runs []layerRun
	for n, f := range frames {
		if !f.complete {
			t.Fatalf("frame %d arrived with a sequence gap", n)
		}
		at, ok := index[frameKey(f.nalus)]
		if !ok {
			t.Fatalf("frame %d (%d NAL units) is no access unit of any layer", n, len(f.nalus))
		}
		rid, _, _ := strings.Cut(at, ":")
		if len(runs) == 0 || runs[len(runs)-1].rid != rid {
			if _, _, ok := spsSize(f.nalus); !f.keyframe() || !ok {
				t.Fatalf("frame %d switches to layer %s without a keyframe and SPS", n, rid)
			}
			runs = append(runs, layerRun{rid: rid, first: n, at: f.at})
		}
	}
	return runs
}

// checkOneStream checks that a viewer's video packets are one stream:
// one SSRC, consecutive sequence numbers, timestamps that never go back.
func checkOneStream(t *testing.T, hdrs []rtp.Header) {
	t.Helper()
	for i := 1; i < len(hdrs); i++ {
		a, b := hdrs[i-1], hdrs[i]
		if b.SequenceNumber != a.SequenceNumber+1 {
			t.Fatalf("viewer packet %d: sequence number %d after %d", i, b.SequenceNumber, a.SequenceNumber)
		}
		if d := int32(b.Timestamp - a.Timestamp); d < 0 || d > 3*90000 {
			t.Fatalf("viewer packet %d: timestamp step %d", i, d)
		}
		if b.SSRC != a.SSRC {
			t.Fatalf("viewer packet %d: SSRC changed", i)
		}
	}
}

func videoSSRC(v *viewer) uint32 {
	for _, tr := range v.PC.GetTransceivers() {
		if tr.Kind() == webrtc.RTPCodecTypeVideo && tr.Receiver().Track() != nil {
			return uint32(tr.Receiver().Track().SSRC())
		}
	}
	return 0
}

// streamLayers reads a stream's video layers from /api/v1/streams.
func streamLayers(t *testing.T, g *testGateway, path string) []relay.LayerStats {
	t.Helper()
	var st relay.StreamStats
	if code := getJSON(t, g.base+"/api/v1/streams/"+path, &st); code != http.StatusOK {
		t.Fatalf("GET /api/v1/streams/%s: %d", path, code)
	}
	for _, tr := range st.Tracks {
		if len(tr.Layers) > 0 {
			return tr.Layers
		}
	}
	return nil
}

// TestSimulcastViewerFollowsItsBandwidth: a viewer whose REMB says its
// link carries less than the middle layer moves to the low layer, and back
// to the top when its estimate clears; a viewer that reports heavy loss
// steps down, and up again once the loss stops. Every switch happens at a
// keyframe of the target layer (decodable: no frame with missing
// references, no sequence gap) within a keyframe interval + 100 ms of the
// feedback (the layer is asked for a keyframe), and the viewer sees one
// stream throughout. The API lists the layers with size and bitrate.
func TestSimulcastViewerFollowsItsBandwidth(t *testing.T) {
	g := startGateway(t, nil)
	playSimulcast(t, g, "sim/abr")

	var layers []relay.LayerStats
	waitFor(t, 10*time.Second, "three layers with sizes and bitrates in the API", func() bool {
		layers = streamLayers(t, g, "sim/abr")
		if len(layers) != 3 {
			return false
		}
		for _, l := range layers {
			if l.Width == 0 || l.Bitrate == 0 || !l.Active {
				return false
			}
		}
		return true
	})
	for _, l := range layers {
		t.Logf("layer %s: %dx%d, %d bit/s, top=%v", l.RID, l.Width, l.Height, l.Bitrate, l.Top)
	}
	if layers[0].RID != "q" || layers[2].RID != "f" || !layers[2].Top {
		t.Fatalf("layers not lowest first with the top one marked: %+v", layers)
	}
	// An estimate between the low and the middle layer (with the test
	// clips' small bitrates, what 400 kbit/s is to a browser's layers).
	low := float64(layers[0].Bitrate+layers[1].Bitrate) / 2

	v := g.view(t, "sim/abr")
	v.waitFrames(t, 10*time.Second, 30, "30 frames at the viewer")
	ssrc := videoSSRC(v)

	var remb atomic.Uint64
	var lossFrac atomic.Uint32
	fbCtx, fbStop := context.WithCancel(context.Background())
	fbDone := make(chan struct{})
	go func() {
		defer close(fbDone)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-fbCtx.Done():
				return
			case <-tick.C:
			}
			var pkts []rtcp.Packet
			if b := remb.Load(); b > 0 {
				pkts = append(pkts, &rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: float32(b), SSRCs: []uint32{ssrc}})
			}
			if l := lossFrac.Load(); l > 0 || remb.Load() == 0 {
				pkts = append(pkts, &rtcp.ReceiverReport{Reports: []rtcp.ReceptionReport{{SSRC: ssrc, FractionLost: uint8(l)}}})
			}
			_ = v.PC.WriteRTCP(pkts)
		}
	}()
	defer func() { fbStop(); <-fbDone }()

	index := layerIndex(simLayerClips(t))
	waitLayer := func(rid string, since time.Time, limit time.Duration) time.Duration {
		t.Helper()
		var took time.Duration
		waitFor(t, limit+2*time.Second, "the viewer on layer "+rid, func() bool {
			f, _, _ := v.snapshot()
			runs := viewerLayerRuns(t, f, index)
			r := runs[len(runs)-1]
			if r.rid == rid && r.at.After(since) {
				took = r.at.Sub(since)
				return true
			}
			return false
		})
		if took > limit {
			t.Errorf("switch to %s took %v, want < %v", rid, took, limit)
		}
		return took
	}
	// The publisher answers keyframe requests with its next frame; the
	// clips' own keyframe interval bounds the wait otherwise.
	limit := clipKeyframeInterval(simLayerClips(t)["f"]) + 100*time.Millisecond

	// The link carries plenty, then drops to "low" (a receiver's estimate
	// that falls below the layer it gets is congestion).
	remb.Store(20_000_000)
	time.Sleep(500 * time.Millisecond)
	remb.Store(uint64(low))
	at := time.Now()
	down := waitLayer("q", at, limit)

	time.Sleep(1500 * time.Millisecond) // stays there
	remb.Store(20_000_000)
	at = time.Now()
	up := waitLayer("f", at, limit)

	// Loss only (no REMB): 30 % loss steps down a layer at a time; once the
	// loss stops, the viewer tries the layer it left again after
	// simulcast's limit wait (20 s: a try of a layer the link cannot carry
	// costs its packets).
	time.Sleep(1200 * time.Millisecond) // the dwell after a switch
	remb.Store(0)
	lossFrac.Store(77) // 30 %
	at = time.Now()
	lossDown := waitLayer("h", at, limit)
	lossFrac.Store(0)
	at = time.Now()
	lossUp := waitLayer("f", at, 23*time.Second)

	frames, _, hdrs := v.snapshot()
	runs := viewerLayerRuns(t, frames, index)
	var seq []string
	for _, r := range runs {
		seq = append(seq, r.rid)
	}
	got := strings.Join(seq, ",")
	if got != "f,q,f,h,f" && got != "f,h,q,f,h,f" {
		t.Fatalf("layers seen by the viewer: %s; want f,q,f,h,f", got)
	}
	checkOneStream(t, hdrs)
	t.Logf("REMB %.0f bit/s: f->q in %v; REMB 20 Mbit/s: q->f in %v; 30%% loss: f->h in %v; loss cleared: h->f in %v; %d frames, layers %s",
		low, down, up, lossDown, lossUp, len(frames), got)
}

// TestSimulcastViewerPinsLayer: ?layer= on WHEP pins a layer, by rid or
// by name (low); a name that is no layer form is refused with 400.
func TestSimulcastViewerPinsLayer(t *testing.T) {
	g := startGateway(t, nil)
	playSimulcast(t, g, "sim/pin")
	waitFor(t, 10*time.Second, "three layers", func() bool { return len(streamLayers(t, g, "sim/pin")) == 3 })

	index := layerIndex(simLayerClips(t))
	for _, c := range []struct{ layer, rid string }{{"low", "q"}, {"h", "h"}} {
		v, err := dialViewer(t, g.base+"/whep/sim/pin?layer="+c.layer, clientOpts(t))
		if err != nil {
			t.Fatalf("?layer=%s: %v", c.layer, err)
		}
		v.waitFrames(t, 10*time.Second, 30, "30 frames")
		f, _, hdrs := v.snapshot()
		runs := viewerLayerRuns(t, f, index)
		if len(runs) != 1 || runs[0].rid != c.rid {
			t.Fatalf("?layer=%s: viewer got layers %+v, want only %s", c.layer, runs, c.rid)
		}
		checkOneStream(t, hdrs)
	}
	// The layers and their viewers are in /metrics.
	body := g.metricsPage(t)
	for _, want := range []string{`livegate_simulcast_layer_bitrate_bits{height="90",rid="q",stream="sim/pin",width="160"}`,
		`livegate_simulcast_layer_viewers{rid="h",stream="sim/pin"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if _, err := dialViewer(t, g.base+"/whep/sim/pin?layer=a%20b", clientOpts(t)); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("?layer=a b: %v, want a 400", err)
	}
}

// clipKeyframeInterval is the longest time between two keyframes of a clip.
func clipKeyframeInterval(samples []clip.Sample) time.Duration {
	var longest, run time.Duration
	for _, s := range samples {
		if s.Keyframe {
			longest, run = max(longest, run), 0
		}
		run += s.Duration
	}
	return max(longest, run)
}

// TestSimulcastViewerContinuesWithPlainPublisher: a simulcast publisher
// drops and a publisher without simulcast continues the stream: the
// viewer, which read a layer, continues on the new publisher's video as
// one stream.
func TestSimulcastViewerContinuesWithPlainPublisher(t *testing.T) {
	g := startGateway(t, nil)
	pub, stopPlaying := playSimulcast(t, g, "sim/cont")
	waitFor(t, 10*time.Second, "three layers", func() bool { return len(streamLayers(t, g, "sim/cont")) == 3 })
	v := g.view(t, "sim/cont")
	v.waitFrames(t, 10*time.Second, 30, "30 frames")
	stopPlaying()
	_ = pub.PC.Close()
	st, _ := g.Hub().Get("sim/cont")
	waitFor(t, 5*time.Second, "stream in grace", func() bool { return !st.Live() })
	before, _, _ := v.snapshot()

	second := g.publish(t, "sim/cont")
	t.Cleanup(func() { _ = second.Close(context.Background()) })
	pctx, pcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer pcancel()
	go play(pctx, second, loadClip(t), 90)
	v.waitFrames(t, 8*time.Second, len(before)+45, "frames from the plain publisher")
	if l := streamLayers(t, g, "sim/cont"); len(l) != 0 {
		t.Errorf("the plain publisher's track still lists layers %+v", l)
	}
	_, _, hdrs := v.snapshot()
	checkOneStream(t, hdrs)
}
