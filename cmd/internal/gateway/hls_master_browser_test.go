package gateway

import (
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	mp4codecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"
)

// TestHLSMasterFollowsBrowserHostRamp: a Chromium host starts small and
// steps up to 1280x720; the multivariant playlist a player reads once the
// host is there says the largest picture and the highest H.264 level of
// every init section the stream's playlist has named, not the first
// picture's (players pick and size renditions, and decide whether they can
// decode them, by it). Its variants stay the same throughout.
func TestHLSMasterFollowsBrowserHostRamp(t *testing.T) {
	b := browserTest(t, 120*time.Second)
	if b == nil {
		return
	}
	g := startGateway(t, func(c *Config) { c.HLS = true })
	h := g.startChromeHost(t, b, "e2e/hlsmaster", chromeHostOpts{})
	defer h.stop(t)
	base := g.base + "/hls/e2e/hlsmaster/"

	get := func(file string) (int, string) {
		res, err := httpClient.Get(base + file)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(body)
	}
	resolution := regexp.MustCompile(`RESOLUTION=(\d+)x(\d+)`)
	avc1 := regexp.MustCompile(`CODECS="[^"]*avc1\.([0-9a-f]{6})`)
	variant := func(pl string) (w, h int, codec string) {
		r, c := resolution.FindStringSubmatch(pl), avc1.FindStringSubmatch(pl)
		if r == nil || c == nil {
			t.Fatalf("multivariant playlist without RESOLUTION or avc1 CODECS:\n%s", pl)
		}
		fmt.Sscan(r[1], &w)
		fmt.Sscan(r[2], &h)
		return w, h, c[1]
	}

	// The first multivariant playlist, as early as the stream has one.
	var first string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		code, body := get("index.m3u8")
		if code == 200 {
			first = body
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no multivariant playlist within 20 s: %d %s", code, body)
		}
	}
	fw, fh, fc := variant(first)
	t.Logf("first multivariant playlist: %dx%d avc1.%s", fw, fh, fc)

	// Every init section the video playlist names, as the host ramps.
	inits := map[string]bool{}
	mapURI := regexp.MustCompile(`#EXT-X-MAP:URI="([^"?]+)`)
	var maxW, maxH int
	var peak string // avc1 bytes of the highest level
	var w, hgt int
	var codec, last string
	for end := time.Now().Add(25 * time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		_, pl := get("video1_stream.m3u8")
		for _, m := range mapURI.FindAllStringSubmatch(pl, -1) {
			if inits[m[1]] {
				continue
			}
			inits[m[1]] = true
			code, data := get(m[1])
			if code != 200 {
				t.Fatalf("init %s: %d", m[1], code)
			}
			var in fmp4.Init
			if err := in.Unmarshal(strings.NewReader(data)); err != nil || len(in.Tracks) == 0 {
				t.Fatalf("init %s: %v", m[1], err)
			}
			c, ok := in.Tracks[0].Codec.(*mp4codecs.H264)
			if !ok {
				t.Fatalf("init %s: codec %T", m[1], in.Tracks[0].Codec)
			}
			var sps h264.SPS
			if err := sps.Unmarshal(c.SPS); err != nil {
				t.Fatalf("init %s SPS: %v", m[1], err)
			}
			t.Logf("init %s: %dx%d avc1.%x", m[1], sps.Width(), sps.Height(), c.SPS[1:4])
			if sps.Width()*sps.Height() > maxW*maxH {
				maxW, maxH = sps.Width(), sps.Height()
			}
			if peak == "" || fmt.Sprintf("%02x", c.SPS[3]) > peak[4:] {
				peak = fmt.Sprintf("%x", c.SPS[1:4])
			}
		}
		_, last = get("index.m3u8")
		w, hgt, codec = variant(last)
		if maxW >= 1280 && w == maxW && hgt == maxH && codec == peak {
			break
		}
	}
	st := h.stats(t)
	t.Logf("host: %+v; last multivariant playlist:\n%s", st, last)
	if maxW < 1280 {
		t.Fatalf("the host never reached 1280 wide in the playlist's init sections (largest %dx%d)", maxW, maxH)
	}
	if w != maxW || hgt != maxH || codec != peak {
		t.Errorf("multivariant playlist says %dx%d avc1.%s; the stream's largest picture is %dx%d, its highest level avc1.%s",
			w, hgt, codec, maxW, maxH, peak)
	}
	if strings.Count(last, "#EXT-X-STREAM-INF:") != strings.Count(first, "#EXT-X-STREAM-INF:") ||
		strings.Count(last, "#EXT-X-MEDIA:") != strings.Count(first, "#EXT-X-MEDIA:") {
		t.Errorf("the renditions changed:\n%s\nthen\n%s", first, last)
	}
	if fw == maxW {
		t.Logf("note: the first multivariant playlist already had the largest picture (the ramp ended before it)")
	}
}

// TestHLSJSPlaysAcrossHostPause: a Chromium host stops sending for 6 s
// (its senders' tracks replaced with none, as when its tab stalls) and
// goes on. hls.js in Chromium plays on after it without a fatal error,
// back near the live edge (not 6 s further behind), and the video
// playlist keeps its EXT-X-TARGETDURATION, with a discontinuity where the
// pause was.
func TestHLSJSPlaysAcrossHostPause(t *testing.T) {
	b := browserTest(t, 150*time.Second)
	if b == nil {
		return
	}
	needProgram(t, "ffmpeg")
	g, h := liveHost(t, b, func(c *Config) { c.HLS = true }, "e2e/hlspause", chromeHostOpts{})
	defer h.stop(t)
	ctx, closeTab := b.tab(t, "hls.js")
	defer closeTab()
	b.navigate(t, ctx, g.base+"/healthz")
	injectHLSJS(t, ctx)
	evalJS[bool](t, ctx, fmt.Sprintf(hlsPlayerJS, "{}", g.base+"/hls/e2e/hlspause/index.m3u8"))
	media := g.base + "/hls/e2e/hlspause/video1_stream.m3u8"
	targetDur := regexp.MustCompile(`#EXT-X-TARGETDURATION:(\d+)`)
	targets := map[string]int{}
	var last string
	readPlaylist := func() {
		res, err := httpClient.Get(media)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if m := targetDur.FindStringSubmatch(string(body)); res.StatusCode == 200 && m != nil {
			targets[m[1]]++
			last = string(body)
		} else {
			t.Errorf("video playlist: %d %q", res.StatusCode, body)
		}
	}
	state := func() hlsPlayerState {
		s := evalJS[hlsPlayerState](t, ctx, `window.R`)
		if s.Fatal != nil {
			t.Fatalf("hls.js fatal error %s (errors %v)", *s.Fatal, s.Errors)
		}
		return s
	}
	waitPage(t, ctx, 15*time.Second, "the first picture in hls.js", `window.R`,
		func(s hlsPlayerState) (bool, error) { return s.FirstFrame != nil, nil })
	for range 8 {
		time.Sleep(time.Second)
		readPlaylist()
	}
	before := state()
	t.Logf("before the pause: %d pictures, %dx%d, behind %v", before.Frames, before.Width, before.Height, deref(before.Behind))

	_, err := evalAsync[bool](h.ctx, `(async () => {
  window.pausedTracks = [];
  for (const s of window.host.pc.getSenders()) {
    if (s.track) { window.pausedTracks.push([s, s.track]); await s.replaceTrack(null); }
  }
  return true;
})()`)
	if err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	for time.Since(paused) < 6*time.Second {
		time.Sleep(time.Second)
		readPlaylist()
	}
	during := state()
	if _, err := evalAsync[bool](h.ctx, `(async () => {
  for (const [s, tr] of window.pausedTracks) await s.replaceTrack(tr);
  return true;
})()`); err != nil {
		t.Fatal(err)
	}
	t.Logf("host paused for %v; hls.js showed %d pictures meanwhile", time.Since(paused).Round(time.Millisecond), during.Frames-before.Frames)

	var behinds []float64
	var after hlsPlayerState
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); {
		time.Sleep(time.Second)
		readPlaylist()
		after = state()
		if after.Behind != nil && time.Until(end) < 6*time.Second {
			behinds = append(behinds, *after.Behind)
		}
	}
	t.Logf("after: %d pictures since the resume, %dx%d, behind the capture clock (last 6 s) %s, errors %v",
		after.Frames-during.Frames, after.Width, after.Height, summary(behinds), after.Errors)
	t.Logf("TARGETDURATION values %v; last video playlist:\n%s", targets, last)
	if after.Frames-during.Frames < 5*6 {
		t.Errorf("%d pictures in the 15 s after the host resumed, want at least 30", after.Frames-during.Frames)
	}
	if len(targets) != 1 {
		t.Errorf("EXT-X-TARGETDURATION changed: %v", targets)
	}
	if !strings.Contains(last, "#EXT-X-DISCONTINUITY") {
		t.Errorf("no discontinuity in the last playlist")
	}
	if len(behinds) == 0 {
		t.Error("hls.js gave no playing date after the pause")
	} else if m := median(behinds); m > 6 {
		// Without the gap cut hls.js ended 10 s behind; with it, 1.2 - 1.5 s
		// on a quiet machine, but with other tests running it sometimes
		// settles 3.3 - 4.4 s behind after its stall (bimodal, hls.js's own
		// recovery), so the bound only catches the segment-growth case.
		t.Errorf("after the pause hls.js plays %.2f s behind the capture clock (median), want < 6 s", m)
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}
