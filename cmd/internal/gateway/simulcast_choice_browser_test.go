package gateway

import (
	"fmt"
	"testing"
	"time"
)

// TestBrowserQualityMenu: the player page of a Chromium simulcast host
// shows a quality menu with the layers (Auto first); choosing the lowest
// one plays 320x180, Auto goes back to the top layer.
func TestBrowserQualityMenu(t *testing.T) {
	b := browserTest(t, 150*time.Second)
	if b == nil {
		return
	}
	path := "e2e/quality"
	g, h := liveHost(t, b, nil, path, chromeHostOpts{Simulcast: true})
	ctx, closeTab := b.tab(t, "viewer "+path)
	defer closeTab()
	b.navigate(t, ctx, g.base+"/?watch="+path)

	type page struct {
		State   string   `json:"state"`
		Error   string   `json:"error"`
		Width   int      `json:"width"`
		Height  int      `json:"height"`
		Menu    bool     `json:"menu"`
		Options []string `json:"options"`
	}
	const pageJS = `(v => ({state: v.state, error: v.error, width: v.videoWidth, height: v.videoHeight,
		menu: !document.getElementById('quality-label').hidden,
		options: [...document.getElementById('quality').options].map(o => o.value + '=' + o.text)}))(livegate.viewer)`
	until := func(what string, timeout time.Duration, ok func(page) bool) page {
		return waitPage(t, ctx, timeout, what, pageJS, func(p page) (bool, error) {
			if p.State == "error" || p.State == "failed" {
				return false, fmt.Errorf("viewer %s: %s", p.State, p.Error)
			}
			return ok(p), nil
		})
	}
	p := until("the top layer with a quality menu", 60*time.Second, func(p page) bool {
		return p.Width == 1280 && p.Menu && len(p.Options) == 4
	})
	t.Logf("menu: %v", p.Options)
	if p.Options[0] != "=Auto" {
		t.Fatalf("first option %q, want Auto", p.Options[0])
	}
	choose := func(v string) time.Time {
		evalJS[bool](t, ctx, fmt.Sprintf(`(q => { q.value = %q; q.dispatchEvent(new Event('change')); return true })(document.getElementById('quality'))`, v))
		return time.Now()
	}
	at := choose("q")
	until("320x180 after choosing the lowest layer", 15*time.Second, func(p page) bool { return p.Width == 320 && p.Height == 180 })
	t.Logf("lowest layer playing %v after choosing it", time.Since(at).Round(time.Millisecond))
	at = choose("")
	until("1280x720 after choosing Auto", 15*time.Second, func(p page) bool { return p.Width == 1280 })
	t.Logf("top layer playing %v after choosing Auto", time.Since(at).Round(time.Millisecond))
	h.stop(t)
}

// TestHLSJSPlaysSimulcastLadder: hls.js plays the multivariant playlist of
// a Chromium simulcast host: three levels (one per layer, no transcoding),
// and it switches renditions when asked to (as its ABR controller does),
// down to 320x180 and back to 1280x720, without a fatal error.
func TestHLSJSPlaysSimulcastLadder(t *testing.T) {
	b := browserTest(t, 150*time.Second)
	if b == nil {
		return
	}
	needProgram(t, "ffmpeg")
	path := "e2e/ladder"
	g, h := liveHost(t, b, func(c *Config) { c.HLS = true }, path, chromeHostOpts{Simulcast: true})
	waitFor(t, 30*time.Second, "three sending layers with sizes", func() bool {
		ls := streamLayers(t, g, path)
		n := 0
		for _, l := range ls {
			if l.Active && l.Width > 0 {
				n++
			}
		}
		return n == 3
	})

	ctx, closeTab := b.tab(t, "hls.js ladder")
	defer closeTab()
	b.navigate(t, ctx, g.base+"/healthz") // same origin, without the pages' CSP (see TestHLSJSPlaysBrowserHost)
	injectHLSJS(t, ctx)
	evalJS[bool](t, ctx, fmt.Sprintf(hlsPlayerJS, "{}", g.base+"/hls/"+path+"/index.m3u8"))
	const stateJS = `window.R`
	until := func(what string, timeout time.Duration, ok func(hlsPlayerState) bool) hlsPlayerState {
		t.Helper()
		return waitPage(t, ctx, timeout, what, stateJS, func(s hlsPlayerState) (bool, error) {
			if s.Fatal != nil {
				return false, fmt.Errorf("hls.js fatal error %s (errors %v)", *s.Fatal, s.Errors)
			}
			return ok(s), nil
		})
	}
	until("the first picture", 20*time.Second, func(s hlsPlayerState) bool { return s.Frames > 10 })
	levels := evalJS[[]string](t, ctx, `hls.levels.map(l => l.width + 'x' + l.height)`)
	t.Logf("hls.js levels: %v", levels)
	if len(levels) != 3 {
		t.Fatalf("hls.js sees %d levels %v, want 3", len(levels), levels)
	}
	switchTo := func(height int) time.Time {
		evalJS[bool](t, ctx, fmt.Sprintf(`(hls.currentLevel = hls.levels.findIndex(l => l.height === %d), true)`, height))
		return time.Now()
	}
	// hls.js's own ABR picks a level at start (from its default estimate);
	// take the top one, then down and up again.
	at := switchTo(720)
	s := until("1280x720 pictures", 30*time.Second, func(s hlsPlayerState) bool { return s.Height == 720 })
	t.Logf("first level %s; 1280x720 after %v", s.Sizes[0], time.Since(at).Round(time.Millisecond))
	frames := s.Frames
	at = switchTo(180)
	s = until("320x180 pictures after switching down", 30*time.Second, func(s hlsPlayerState) bool {
		return s.Height == 180 && s.Frames > frames+30
	})
	t.Logf("320x180 after %v", time.Since(at).Round(time.Millisecond))
	frames = s.Frames
	at = switchTo(720)
	s = until("1280x720 pictures after switching up", 30*time.Second, func(s hlsPlayerState) bool {
		return s.Height == 720 && s.Frames > frames+30
	})
	t.Logf("1280x720 after %v; sizes shown %v; errors %v", time.Since(at).Round(time.Millisecond), s.Sizes, s.Errors)
	h.stop(t)
}
