package gateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/livegate/livegate/recorder"
)

// A browser host publishes for about 25 s with a recording rule on: it
// ramps its resolution at start and encodes keyframes only when asked. The
// recording is one recording, its segments stay within 1.5x the 4 s target,
// and ffmpeg decodes the whole VOD playlist without an error, with about as
// many pictures as the host encoded.
func TestRecordingWithBrowserHost(t *testing.T) {
	b := browserTest(t, 150*time.Second)
	if b == nil {
		return
	}
	ffmpeg, ffprobe := needProgram(t, "ffmpeg"), needProgram(t, "ffprobe")
	const target = 4 * time.Second
	g := startGateway(t, func(c *Config) {
		c.RecorderParams.SegmentDuration = target
		c.RecorderParams.Rules = []string{"rec/*"}
		if keep := os.Getenv("LIVEGATE_TEST_KEEP"); keep != "" {
			c.RecordDir = keep // to look at the files afterwards
		}
	})
	h := g.startChromeHost(t, b, "rec/host", chromeHostOpts{})
	h.waitLive(t, 20*time.Second)
	time.Sleep(25 * time.Second)

	list := g.rec.List(recorder.Filter{Stream: "rec/host"})
	if len(list) != 1 {
		t.Fatalf("%d recordings of the stream, want 1: %+v", len(list), list)
	}
	id := list[0].ID
	if _, err := g.rec.Stop(id); err != nil {
		t.Fatal(err)
	}
	st := h.stats(t)
	h.stop(t)
	t.Logf("host: %d frames, %d keyframes (%d PLIs, %d FIRs), %dx%d, %d bytes",
		st.Frames, st.Keyframes, st.PLIs, st.FIRs, st.Width, st.Height, st.BytesSent)

	waitFor(t, 15*time.Second, "the recording complete in storage", func() bool {
		in, err := g.rec.Get(id)
		return err == nil && in.Status == recorder.StatusComplete
	})
	url := g.base + "/recordings/" + id + "/index.m3u8"
	resp, err := httpClient.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	pl, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("VOD playlist: %d %s", resp.StatusCode, pl)
	}
	var total float64
	var durs []string
	for _, line := range strings.Split(string(pl), "\n") {
		v, ok := strings.CutPrefix(line, "#EXTINF:")
		if !ok {
			continue
		}
		d, err := strconv.ParseFloat(strings.TrimSuffix(v, ","), 64)
		if err != nil {
			t.Fatalf("EXTINF %q: %v", line, err)
		}
		total += d
		durs = append(durs, fmt.Sprintf("%.2f", d))
		if d > 1.5*target.Seconds() {
			t.Errorf("a segment lasts %.2f s, more than 1.5x the %v target", d, target)
		}
	}
	maps, discs := strings.Count(string(pl), "#EXT-X-MAP:"), strings.Count(string(pl), "#EXT-X-DISCONTINUITY")
	t.Logf("recording %s: %.1f s in %d segments %v; %d init sections, %d discontinuities", id, total, len(durs), durs, maps, discs)
	if total < 20 || total > 30 {
		t.Errorf("the recording lasts %.1f s, want about 25", total)
	}
	if discs != 0 {
		t.Errorf("%d discontinuities in one uninterrupted recording:\n%s", discs, pl)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// ffmpeg 5.1 sends the decoded pictures of a variable-frame-rate stream
	// to -f null retimed to the rate it guessed from the first frames; two
	// frames of a browser's jittery capture clock can land on one tick,
	// which its null muxer reports as "non monotonically increasing dts".
	// That is about ffmpeg's output, not decoding: with -fps_mode vfr the
	// same run is silent. Anything else on stderr is a decoding error.
	for _, args := range [][]string{nil, {"-fps_mode", "vfr"}} {
		var stderr bytes.Buffer
		argv := append(append([]string{"-hide_banner", "-v", "error", "-i", url}, args...), "-f", "null", "-")
		cmd := exec.CommandContext(ctx, ffmpeg, argv...)
		cmd.Stderr = &stderr
		err := cmd.Run()
		retimed := 0
		var errs []string
		for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
			switch {
			case line == "":
			case args == nil && strings.Contains(line, "non monotonically increasing dts to muxer"):
				retimed++
			default:
				errs = append(errs, line)
			}
		}
		if err != nil || len(errs) > 0 {
			t.Errorf("ffmpeg %v decoding the VOD: %v\n%s", args, err, strings.Join(errs, "\n"))
		}
		if retimed > 0 {
			t.Logf("ffmpeg %v: %d frames shared a tick of its null output's guessed frame rate", args, retimed)
		}
	}
	out, err := exec.CommandContext(ctx, ffprobe, "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", url).Output()
	if err != nil {
		t.Fatalf("ffprobe counting frames: %v", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.Split(string(out), "\n")[0]))
	if err != nil {
		t.Fatalf("ffprobe frame count %q: %v", out, err)
	}
	t.Logf("ffprobe decoded %d video frames; the host encoded %d", n, st.Frames)
	// The recording starts when the stream goes live and stops just before
	// the host's stats are read: nearly every frame encoded is recorded.
	if float64(n) < 0.9*float64(st.Frames) || n > st.Frames+30 {
		t.Errorf("the VOD decodes to %d frames, the host encoded %d", n, st.Frames)
	}

	// hls.js (Chromium's MSE) plays the VOD to its end across the init
	// changes of the resolution ramp, which come without a discontinuity.
	tab, closeTab := b.tab(t, "hls.js VOD")
	defer closeTab()
	b.navigate(t, tab, g.base+"/healthz")
	injectHLSJS(t, tab)
	evalJS[bool](t, tab, fmt.Sprintf(vodPlayerJS, url))
	v := waitPage(t, tab, 60*time.Second, "hls.js playing the recording to its end", "window.V",
		func(v vodPlayerState) (bool, error) {
			if v.Fatal != "" {
				return false, fmt.Errorf("hls.js fatal error %s (errors %v)", v.Fatal, v.Errors)
			}
			return v.Ended || (v.Duration > 0 && v.Time >= v.Duration-0.3), nil
		})
	t.Logf("hls.js: played to %.1f of %.1f s, %d pictures, sizes %v, errors %v", v.Time, v.Duration, v.Frames, v.Sizes, v.Errors)
	if len(v.Sizes) == 0 || v.Sizes[len(v.Sizes)-1] != fmt.Sprintf("%dx%d", st.Width, st.Height) {
		t.Errorf("hls.js showed sizes %v, want them to end at the host's %dx%d", v.Sizes, st.Width, st.Height)
	}
	if v.Frames < n/4 { // played at 4x: a browser may skip pictures
		t.Errorf("hls.js showed %d pictures of %d", v.Frames, n)
	}
}

// vodPlayerJS plays a VOD playlist with hls.js at 4x; window.V says how far
// it got, the picture sizes it showed and its errors.
const vodPlayerJS = `(() => {
const V = window.V = { frames: 0, sizes: [], errors: [], fatal: '', ended: false, time: 0, duration: 0 };
const v = document.createElement('video');
v.muted = true; v.autoplay = true; v.style.width = '640px';
document.body.appendChild(v);
const hls = new Hls();
hls.on(Hls.Events.ERROR, (e, d) => { V.errors.push(d.details + (d.fatal ? ':fatal' : '')); if (d.fatal) V.fatal = d.details; });
hls.on(Hls.Events.MANIFEST_PARSED, () => { v.playbackRate = 4; v.play().catch(e => V.errors.push('play: ' + e)); });
v.onended = () => { V.ended = true; };
const tick = (now, meta) => {
  V.frames++;
  const s = meta.width + 'x' + meta.height;
  if (V.sizes[V.sizes.length - 1] !== s) V.sizes.push(s);
  v.requestVideoFrameCallback(tick);
};
v.requestVideoFrameCallback(tick);
setInterval(() => { V.time = v.currentTime; V.duration = v.duration || 0; }, 200);
hls.loadSource(%q);
hls.attachMedia(v);
return true;
})()`

type vodPlayerState struct {
	Frames   int      `json:"frames"`
	Sizes    []string `json:"sizes"`
	Errors   []string `json:"errors"`
	Fatal    string   `json:"fatal"`
	Ended    bool     `json:"ended"`
	Time     float64  `json:"time"`
	Duration float64  `json:"duration"`
}

// TestBrowserHostCadenceCost measures what keyframe-max-interval costs a
// browser host: the same Chromium host publishes twice for the same time to a
// stream with a frame reader (as HLS or an RTMP push would attach), once with
// the 2 s cadence and once with it off, and the bytes it sent, its keyframes
// and its mean QP are compared. It runs only when asked:
//
//	LIVEGATE_CADENCE_COST=60s go test -run TestBrowserHostCadenceCost -timeout 10m -v ./cmd/internal/gateway/
func TestBrowserHostCadenceCost(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("LIVEGATE_CADENCE_COST"))
	if err != nil || d <= 0 {
		t.Skip("cadence cost: set LIVEGATE_CADENCE_COST to a duration (e.g. 60s) to measure it")
	}
	b := browserTest(t, 2*d+3*time.Minute)
	if b == nil {
		return
	}
	type result struct {
		interval              time.Duration
		bytes                 int64
		frames, keyframes     int
		qp                    float64
		width, height, reqsIn int
	}
	const warmUp = 10 * time.Second // the host's bandwidth estimate and resolution ramp
	run := func(interval time.Duration) result {
		g := startGateway(t, func(c *Config) { c.KeyframeMaxInterval = interval })
		defer g.stop()
		h := g.startChromeHost(t, b, "cost/host", chromeHostOpts{})
		defer h.close()
		h.waitLive(t, 20*time.Second)
		st, _ := g.Hub().Get("cost/host")
		var video int
		for i, tr := range st.Tracks() {
			if tr.Info().Kind == "video" {
				video = i
			}
		}
		fr, err := g.frames.Subscribe(st, st.Tracks()[video])
		if err != nil {
			t.Fatal(err)
		}
		defer fr.Close()
		go func() {
			for {
				select {
				case <-fr.Frames():
				case <-fr.Done():
					return
				}
			}
		}()
		time.Sleep(warmUp)
		s0 := costStats(t, h)
		time.Sleep(d)
		s1 := costStats(t, h)
		r := result{interval: interval, bytes: s1.BytesSent - s0.BytesSent, frames: s1.Frames - s0.Frames,
			keyframes: s1.Keyframes - s0.Keyframes, width: s1.Width, height: s1.Height, reqsIn: s1.PLIs + s1.FIRs - s0.PLIs - s0.FIRs}
		if r.frames > 0 {
			r.qp = float64(s1.QPSum-s0.QPSum) / float64(r.frames)
		}
		t.Logf("keyframe-max-interval %v: %d bytes in %v (%.0f kbit/s), %d frames, %d keyframes, %d PLI/FIR, mean QP %.1f, %dx%d",
			interval, r.bytes, d, float64(r.bytes)*8/d.Seconds()/1000, r.frames, r.keyframes, r.reqsIn, r.qp, r.width, r.height)
		return r
	}
	// Alternate the order over runs: the machine's load (and so the frame
	// rate Chromium manages) drifts.
	var on, off result
	if os.Getenv("LIVEGATE_CADENCE_COST_OFF_FIRST") != "" {
		off, on = run(0), run(2*time.Second)
	} else {
		on, off = run(2*time.Second), run(0)
	}
	perFrame := func(r result) float64 { return float64(r.bytes) / float64(max(r.frames, 1)) }
	t.Logf("cadence cost: %+.1f %% bytes, %+.1f %% bytes per frame (%.0f vs %.0f), %+d keyframes, mean QP %.1f vs %.1f",
		100*(float64(on.bytes)/float64(off.bytes)-1), 100*(perFrame(on)/perFrame(off)-1), perFrame(on), perFrame(off),
		on.keyframes-off.keyframes, on.qp, off.qp)
	if on.keyframes <= off.keyframes {
		t.Errorf("the 2 s cadence did not add keyframes: %d vs %d", on.keyframes, off.keyframes)
	}
}

type costSample struct {
	chromeHostStats
	QPSum int64 `json:"qpSum"`
}

func costStats(t *testing.T, h *chromeHost) costSample {
	t.Helper()
	v, err := evalAsync[costSample](h.ctx, `(async () => {
  const R = { keyframes: 0, frames: 0, plis: 0, firs: 0, width: 0, height: 0, bytesSent: 0, qpSum: 0 };
  (await window.host.pc.getStats()).forEach(s => {
    if (s.type !== 'outbound-rtp' || s.kind !== 'video') return;
    R.keyframes += s.keyFramesEncoded || 0; R.frames += s.framesEncoded || 0;
    R.plis += s.pliCount || 0; R.firs += s.firCount || 0; R.bytesSent += s.bytesSent || 0;
    R.qpSum += s.qpSum || 0;
    R.width = Math.max(R.width, s.frameWidth || 0); R.height = Math.max(R.height, s.frameHeight || 0);
  });
  return R;
})()`)
	if err != nil {
		t.Fatalf("host stats: %v", err)
	}
	return v
}
