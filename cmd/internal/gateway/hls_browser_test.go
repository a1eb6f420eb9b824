package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// hlsJSPath is hls.js 1.7.4 as .ci/run installs it (npm install --prefix
// testdata/npm hls.js@1.7.4).
var hlsJSPath = filepath.Join("..", "..", "..", "testdata", "npm", "node_modules", "hls.js", "dist", "hls.js")

// injectHLSJS loads hls.js into the tab at ctx.
func injectHLSJS(t *testing.T, ctx context.Context) {
	t.Helper()
	src, err := os.ReadFile(hlsJSPath)
	if err != nil {
		skipOrFail(t, "hls.js not installed (%v): npm install --prefix testdata/npm hls.js@1.7.4", err)
	}
	evalJS[bool](t, ctx, string(src)+";\ntypeof Hls === 'function'")
}

// hlsPlayerJS plays src with hls.js in the page and keeps what a viewer
// would notice in window.R: when the first picture showed (ms after the
// player was created), pictures shown, size, hls.js errors, the latency
// hls.js reports, and how far behind the capture clock the picture is
// (EXT-X-PROGRAM-DATE-TIME is when a frame reached the gateway).
const hlsPlayerJS = `(() => {
const R = window.R = { firstFrame: null, frames: 0, width: 0, height: 0, errors: [], fatal: null,
  latency: null, behind: null, audioCodec: '', videoCodec: '', audioBytes: 0, sizes: [] };
const v = document.createElement('video');
v.muted = true; v.autoplay = true; v.playsInline = true; v.style.width = '640px';
document.body.appendChild(v);
const opened = performance.now();
const hls = window.hls = new Hls(Object.assign({ lowLatencyMode: true }, %s));
hls.on(Hls.Events.ERROR, (e, d) => {
  R.errors.push(d.type + ':' + d.details + (d.fatal ? ':fatal' : '') + (d.response && d.response.code ? ':' + d.response.code : '') +
    (d.error ? ' (' + d.error + (d.error.stack ? ' ' + d.error.stack : '') + ')' : '') + (d.event ? ' in ' + d.event : ''));
  if (d.fatal) R.fatal = d.details;
});
hls.on(Hls.Events.MANIFEST_PARSED, () => {
  const l = hls.levels[0] || {};
  R.audioCodec = l.audioCodec || ''; R.videoCodec = l.videoCodec || '';
  v.play().catch(e => R.errors.push('play: ' + e));
});
const tick = (now, meta) => {
  if (R.firstFrame === null) R.firstFrame = performance.now() - opened;
  R.frames++;
  if (meta.width !== R.width) R.sizes.push(meta.width + 'x' + meta.height);
  R.width = meta.width; R.height = meta.height;
  v.requestVideoFrameCallback(tick);
};
v.requestVideoFrameCallback(tick);
setInterval(() => {
  R.latency = hls.latency; R.target = hls.targetLatency;
  const b = v.buffered; R.ahead = b.length ? b.end(b.length - 1) - v.currentTime : 0;
  const d = hls.playingDate;
  if (d && !v.paused) R.behind = (Date.now() - d.getTime()) / 1000;
  R.audioBytes = v.webkitAudioDecodedByteCount || 0;
}, 250);
hls.loadSource(%q);
hls.attachMedia(v);
return true;
})()`

type hlsPlayerState struct {
	FirstFrame *float64 `json:"firstFrame"`
	Frames     int      `json:"frames"`
	Width      int      `json:"width"`
	Height     int      `json:"height"`
	Errors     []string `json:"errors"`
	Fatal      *string  `json:"fatal"`
	Latency    *float64 `json:"latency"`
	Behind     *float64 `json:"behind"`
	AudioCodec string   `json:"audioCodec"`
	VideoCodec string   `json:"videoCodec"`
	AudioBytes int64    `json:"audioBytes"`
	Sizes      []string `json:"sizes"`
	Target     *float64 `json:"target"`
	Ahead      float64  `json:"ahead"`
}

// TestHLSJSPlaysBrowserHost: hls.js in Chromium plays the LL-HLS rendition
// of a Chromium host (keyframes only at start, on resolution steps and when
// asked) with AAC sound: the first picture within 4 s of opening the
// player, no fatal error, pictures all along, the latency reported, and
// the playlist answering 200 with a part target that never changes.
func TestHLSJSPlaysBrowserHost(t *testing.T) {
	b := browserTest(t, 150*time.Second)
	if b == nil {
		return
	}
	needProgram(t, "ffmpeg")
	g, h := liveHost(t, b, func(c *Config) { c.HLS = true }, "e2e/hlshost", chromeHostOpts{})

	ctx, closeTab := b.tab(t, "hls.js")
	defer closeTab()
	// A same-origin page without the CSP of the gateway's HTML pages,
	// which forbids the blob: worker hls.js demuxes in (a site embedding
	// hls.js allows it; under that CSP hls.js falls back to the main
	// thread after an internal error).
	b.navigate(t, ctx, g.base+"/healthz")
	injectHLSJS(t, ctx)
	playlist := g.base + "/hls/e2e/hlshost/index.m3u8"
	opened := time.Now()
	config := os.Getenv("LIVEGATE_HLSJS_CONFIG") // e.g. {"enableWorker":false} to debug
	if config == "" {
		config = "{}"
	}
	evalJS[bool](t, ctx, fmt.Sprintf(hlsPlayerJS, config, playlist))

	// Meanwhile, read the video playlist as a player does and check that
	// every answer is a playlist and PART-TARGET never changes.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var plErrs []string
	targets := map[string]int{}
	discontinuities := 0
	parts := map[string]string{}    // part URI -> duration
	segments := map[string]string{} // segment URI -> duration
	var lastPlaylist string
	wg.Add(1)
	go func() {
		defer wg.Done()
		c := &http.Client{Timeout: 20 * time.Second}
		partTarget := regexp.MustCompile(`#EXT-X-PART-INF:PART-TARGET=([0-9.]+)`)
		partLine := regexp.MustCompile(`#EXT-X-PART:DURATION=([0-9.]+),[^\n]*URI="([^"]+)"`)
		segLine := regexp.MustCompile(`#EXTINF:([0-9.]+),\n([^#\n][^\n]*)`)
		for {
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
			res, err := c.Get(g.base + "/hls/e2e/hlshost/video1_stream.m3u8")
			if err != nil {
				mu.Lock()
				plErrs = append(plErrs, err.Error())
				mu.Unlock()
				continue
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			mu.Lock()
			if res.StatusCode != 200 || !strings.HasPrefix(string(body), "#EXTM3U") {
				plErrs = append(plErrs, fmt.Sprintf("%d %q", res.StatusCode, body))
			} else if m := partTarget.FindStringSubmatch(string(body)); m != nil {
				targets[m[1]]++
				discontinuities = max(discontinuities, strings.Count(string(body), "#EXT-X-DISCONTINUITY\n"))
				lastPlaylist = string(body)
				for _, m := range partLine.FindAllStringSubmatch(lastPlaylist, -1) {
					parts[m[2]] = m[1]
				}
				for _, m := range segLine.FindAllStringSubmatch(lastPlaylist, -1) {
					segments[m[2]] = m[1]
				}
			}
			mu.Unlock()
		}
	}()
	defer func() {
		close(stop)
		wg.Wait()
	}()

	first := waitPage(t, ctx, 15*time.Second, "the first picture in hls.js", `window.R`,
		func(s hlsPlayerState) (bool, error) {
			if s.Fatal != nil {
				return false, fmt.Errorf("hls.js fatal error %s (errors %v)", *s.Fatal, s.Errors)
			}
			return s.FirstFrame != nil, nil
		})
	t.Logf("first picture %.0f ms after the player opened (%v after the test opened it); codecs %s + %s",
		*first.FirstFrame, time.Since(opened).Round(time.Millisecond), first.VideoCodec, first.AudioCodec)

	// Play for 20 s, sampling what a viewer sees.
	var latencies, behinds []float64
	framesAt := first.Frames
	var last hlsPlayerState
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); {
		time.Sleep(time.Second)
		last = evalJS[hlsPlayerState](t, ctx, `window.R`)
		if last.Fatal != nil {
			t.Fatalf("hls.js fatal error %s (errors %v)", *last.Fatal, last.Errors)
		}
		if last.Latency != nil {
			latencies = append(latencies, *last.Latency)
		}
		if last.Behind != nil {
			behinds = append(behinds, *last.Behind)
		}
		if last.Target != nil {
			t.Logf("target latency %.2f, buffered ahead %.2f", *last.Target, last.Ahead)
		}
	}
	st := h.stats(t)
	t.Logf("host: %+v", st)
	t.Logf("hls.js: %d pictures, now %dx%d (sizes %v), audio %s decoded %d bytes, errors %v",
		last.Frames, last.Width, last.Height, last.Sizes, last.AudioCodec, last.AudioBytes, last.Errors)
	t.Logf("hls.latency (s): %s", summary(latencies))
	t.Logf("picture behind the gateway's arrival clock (s): %s", summary(behinds))
	mu.Lock()
	t.Logf("video playlist: PART-TARGET values %v, up to %d discontinuities in one playlist, bad answers %v", targets, discontinuities, plErrs)
	t.Logf("part durations: %s", histogram(parts))
	t.Logf("segment durations: %s", histogram(segments))
	t.Logf("last video playlist:\n%s", lastPlaylist)
	bad, nTargets := len(plErrs), len(targets)
	mu.Unlock()

	// Every segment of the last playlist decodes with the init section the
	// playlist names for it, and that init announces its picture size.
	checkInitSections(t, g.base+"/hls/e2e/hlshost/")

	if *first.FirstFrame > 4000 {
		t.Errorf("first picture after %.0f ms, want < 4000", *first.FirstFrame)
	}
	// The host encodes 15-30 fps depending on the machine's load; a player
	// that stalls for half the time shows fewer than this.
	if shown := last.Frames - framesAt; shown < 20*6 {
		t.Errorf("%d pictures shown in 20 s, want at least 120 (6 fps)", shown)
	}
	if len(latencies) == 0 {
		t.Error("hls.js reported no latency")
	}
	if !strings.HasPrefix(last.AudioCodec, "mp4a") || last.AudioBytes == 0 {
		t.Errorf("audio: codec %q, %d bytes decoded; want AAC (mp4a) that decodes", last.AudioCodec, last.AudioBytes)
	}
	for _, e := range last.Errors {
		if strings.Contains(e, ":5") && regexp.MustCompile(`:5\d\d$`).MatchString(e) {
			t.Errorf("hls.js saw a server error: %s", e)
		}
	}
	if bad > 0 {
		t.Errorf("%d playlist requests failed", bad)
	}
	if nTargets > 1 {
		t.Errorf("PART-TARGET changed during the show: %v", targets)
	}
	h.stop(t)
}

// summary is min / median / max of xs.
func summary(xs []float64) string {
	if len(xs) == 0 {
		return "none"
	}
	s := append([]float64(nil), xs...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return fmt.Sprintf("min %.2f, median %.2f, max %.2f (%d samples)", s[0], s[len(s)/2], s[len(s)-1], len(s))
}

// histogram counts durations (seconds, as the playlist has them) rounded
// to 10 ms.
func histogram(durs map[string]string) string {
	count := map[int]int{}
	for _, d := range durs {
		var f float64
		fmt.Sscanf(d, "%g", &f)
		count[int(f*100+0.5)*10]++
	}
	keys := make([]int, 0, len(count))
	for k := range count {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%d ms: %d; ", k, count[k])
	}
	return b.String()
}

// checkInitSections fetches each media segment of the video playlist
// (under base) with the EXT-X-MAP that applies to it and has ffprobe
// compare the size the init section announces with the size of every
// decoded picture.
func checkInitSections(t *testing.T, base string) {
	t.Helper()
	ffprobe := needProgram(t, "ffprobe")
	res, err := httpClient.Get(base + "video1_stream.m3u8")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	pl := string(b)
	dir := t.TempDir()
	init := ""
	sizes := map[string]int{}
	gone := 0
	for _, l := range strings.Split(pl, "\n") {
		if m := regexp.MustCompile(`^#EXT-X-MAP:URI="([^"]+)"`).FindStringSubmatch(l); m != nil {
			init = m[1]
			continue
		}
		if l == "" || strings.HasPrefix(l, "#") || l == "gap.mp4" {
			continue
		}
		var data []byte
		for _, f := range []string{init, l} {
			res, err := httpClient.Get(base + f)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode == 404 && f == l && len(sizes) == 0 {
				gone++ // left the window since the playlist was read
				data = nil
				break
			}
			if res.StatusCode != 200 {
				t.Fatalf("GET %s: %d", f, res.StatusCode)
			}
			data = append(data, b...)
		}
		if data == nil {
			continue
		}
		file := filepath.Join(dir, l)
		if err := os.WriteFile(file, data, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(ffprobe, "-v", "error", "-select_streams", "v",
			"-show_entries", "stream=width,height:frame=width,height", "-of", "csv=p=0", file).CombinedOutput()
		if err != nil {
			t.Fatalf("ffprobe %s + %s: %v\n%s", init, l, err, out)
		}
		lines := strings.Fields(strings.ReplaceAll(string(out), ",\n", "\n"))
		for i := range lines {
			lines[i] = strings.Trim(lines[i], ",")
		}
		if len(lines) < 2 {
			t.Fatalf("%s: ffprobe says %q", l, out)
		}
		for _, sz := range lines[1:] {
			if sz != lines[0] {
				t.Fatalf("%s with %s: the init section says %s, pictures are %s", l, init, lines[0], sz)
			}
		}
		sizes[lines[0]]++
	}
	checked := 0
	for _, c := range sizes {
		checked += c
	}
	if checked < 4 {
		t.Fatalf("only %d segments checked (%d gone)", checked, gone)
	}
	t.Logf("segments of the playlist by size (each matches its init section): %v", sizes)
}
