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
	g := startGateway(t, nil)
	path := "e2e/quality"
	h := g.startChromeHost(t, b, path, chromeHostOpts{Simulcast: true})
	h.waitLive(t, 20*time.Second)
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
