package gateway

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/livegate/livegate/relay/rtcclient"
	"github.com/livegate/livegate/web/auth"
)

// The viewer pages tell the truth about a stream: when its publisher goes,
// the player says "publisher reconnecting…" within 2 s while the gateway
// keeps the stream for its grace period, then "stream ended", and plays
// again by itself when the stream comes back; the live list agrees; when
// the gateway shuts down, every page (player, room grid, publisher) notices
// within 2 s; and no page logs an error for a DELETE of a session the
// server already ended.

const truthGrace = 3 * time.Second

// sessionResource matches the URL of a WHIP or WHEP session resource (what
// a DELETE goes to), not the endpoint an offer is posted to.
var sessionResource = regexp.MustCompile(`/wh[ie]p/[^/]+/[^/]+/[^/?)\s]+`)

// viewerState is what the index page reports of its player.
type viewerState struct {
	State   string `json:"state"`
	Message string `json:"message"`
	Frames  int    `json:"frames"`
}

const viewerStateJS = `(v => ({state: v.state, message: v.message, frames: v.frames}))(livegate.viewer)`

// listStateJS is the state the live list shows for a path ("" when not listed).
func listStateJS(path string) string {
	return `(document.querySelector('#stream-list button[data-path="` + path + `"]') || {dataset: {}}).dataset.state || ''`
}

func TestBrowserViewerTruth(t *testing.T) {
	if !inBrowserNetns(t) {
		return
	}
	g := startGateway(t, func(c *Config) { c.Grace = truthGrace })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	b := startBrowser(t, ctx)
	const room, path = "truth", "truth/cam"

	// A clip publisher; the index page plays it, the room grid too.
	pub, stopClip := publishClip(t, g, path)
	vTab, _ := b.tab(t, "viewer")
	vErrs := watchConsoleErrors(b, vTab, "viewer")
	b.navigate(t, vTab, g.base+"/?watch="+path)
	waitViewer(t, vTab, 10*time.Second, "the player live with frames", func(v viewerState) bool {
		return v.State == "live" && v.Frames > 0
	})
	waitPage(t, vTab, 5*time.Second, "the stream listed live", listStateJS(path),
		func(s string) (bool, error) { return s == "live", nil })
	gTab, _ := b.tab(t, "grid")
	gErrs := watchConsoleErrors(b, gTab, "grid")
	b.navigate(t, gTab, g.base+"/watch/"+room)
	waitAdvancing(t, gTab, "the grid", path, 10*time.Second)

	// 1. The publisher hangs up (DELETE). The gateway keeps the stream for
	// its grace period: the player says so at once, not LIVE at 0 kb/s.
	stopClip()
	if err := pub.Close(ctx); err != nil {
		t.Fatalf("publisher DELETE: %v", err)
	}
	stopped := time.Now()
	v := waitViewer(t, vTab, 2*time.Second, "the player to say the publisher is reconnecting", func(v viewerState) bool {
		return v.State == "reconnecting"
	})
	reconnectingAfter := time.Since(stopped)
	if !strings.Contains(strings.ToLower(v.Message), "publisher reconnecting") {
		t.Errorf("player message %q, want it to say the publisher is reconnecting", v.Message)
	}
	waitPage(t, vTab, 2*time.Second, "the live list to say reconnecting too", listStateJS(path),
		func(s string) (bool, error) { return s == "reconnecting", nil })
	if meta := evalJS[string](t, vTab, `document.querySelector('#stream-list button[data-path="`+path+`"] .meta').textContent`); !strings.Contains(meta, "reconnecting") {
		t.Errorf("live list entry %q does not say reconnecting", meta)
	}
	b.screenshot(t, vTab, "truth-1-reconnecting")
	// ... and "stream ended" once the grace period is over, not before.
	v = waitViewer(t, vTab, truthGrace+2*time.Second, "the player to say the stream ended", func(v viewerState) bool {
		if v.State != "reconnecting" && v.State != "ended" {
			t.Fatalf("player went %q (%s) while the stream was in its grace period", v.State, v.Message)
		}
		return v.State == "ended"
	})
	endedAfter := time.Since(stopped)
	if endedAfter < truthGrace-200*time.Millisecond {
		t.Errorf("the player said ended %v after the publisher left, before the %v grace period was over", endedAfter, truthGrace)
	}
	if !strings.Contains(strings.ToLower(v.Message), "ended") {
		t.Errorf("player message %q, want it to say the stream ended", v.Message)
	}
	waitPage(t, vTab, 2*time.Second, "the stream to leave the live list", listStateJS(path),
		func(s string) (bool, error) { return s == "", nil })
	waitPage(t, gTab, 2*time.Second, "the stream to leave the grid", tilesJS, func(tiles []tileInfo) (bool, error) {
		_, ok := tileOf(tiles, path)
		return !ok, nil
	})
	if hint := evalJS[string](t, gTab, `document.getElementById('grid-empty').textContent`); !strings.Contains(hint, "ended") {
		t.Errorf("the empty grid says %q, not that the stream ended", hint)
	}
	waitFor(t, 3*time.Second, "every WHEP session to end", func() bool { return g.whep.Sessions() == 0 })
	b.screenshot(t, vTab, "truth-2-ended")
	t.Logf("publisher hung up: player said reconnecting after %v, ended after %v (grace %v)",
		reconnectingAfter.Round(time.Millisecond), endedAfter.Round(time.Millisecond), truthGrace)

	// 2. The stream comes back: both pages play it again by themselves.
	pub2, stopClip2 := publishClip(t, g, path)
	back := time.Now()
	waitViewer(t, vTab, 5*time.Second, "the player to play the stream again", func(v viewerState) bool {
		return v.State == "live" && v.Frames > 0
	})
	t.Logf("stream back: the player plays it again after %v", time.Since(back).Round(time.Millisecond))
	waitAdvancing(t, gTab, "the grid", path, 10*time.Second)

	// 3. The publisher stays connected but sends nothing (stuck, or its
	// network went before the gateway noticed): the player says so within
	// 2 s, and plays on when media comes again.
	stopClip2()
	stuck := time.Now()
	v = waitViewer(t, vTab, 2*time.Second, "the player to notice that no media comes", func(v viewerState) bool {
		return v.State == "reconnecting"
	})
	t.Logf("publisher silent: the player said %q after %v", v.Message, time.Since(stuck).Round(time.Millisecond))
	waitPage(t, gTab, 2*time.Second-time.Since(stuck)+200*time.Millisecond, "the grid tile to notice that no media comes",
		gridBadgeJS(path), func(s string) (bool, error) { return s == "reconnecting", nil })
	t.Logf("publisher silent: the grid said reconnecting after %v", time.Since(stuck).Round(time.Millisecond))
	resume, stopResume := context.WithCancel(ctx)
	resumed := make(chan struct{})
	go func() {
		defer close(resumed)
		play(resume, pub2, loadClip(t), 0)
	}()
	waitViewer(t, vTab, 3*time.Second, "the player live again when media comes again", func(v viewerState) bool {
		return v.State == "live"
	})
	waitPage(t, gTab, 3*time.Second, "the grid tile playing again", gridBadgeJS(path),
		func(s string) (bool, error) { return s == "playing", nil })
	stopResume()
	<-resumed

	// 4. The publisher's connection drops without a DELETE (its DTLS close
	// reaches the gateway): the player and the grid say reconnecting, and
	// play on when a publisher continues the stream within the grace period.
	_ = pub2.PC.Close()
	dropped := time.Now()
	waitViewer(t, vTab, 2*time.Second, "the player to say reconnecting after the publisher dropped", func(v viewerState) bool {
		return v.State == "reconnecting"
	})
	waitPage(t, gTab, 2*time.Second, "the grid tile to say reconnecting", gridBadgeJS(path),
		func(s string) (bool, error) { return s == "reconnecting", nil })
	t.Logf("publisher dropped: player and grid said reconnecting within %v", time.Since(dropped).Round(time.Millisecond))
	pub3, _ := publishClip(t, g, path)
	_ = pub3
	waitViewer(t, vTab, 5*time.Second, "the player live again after the publisher came back", func(v viewerState) bool {
		return v.State == "live"
	})
	first := waitViewer(t, vTab, time.Second, "", func(viewerState) bool { return true })
	waitViewer(t, vTab, 5*time.Second, "the player's frames to advance", func(v viewerState) bool { return v.Frames > first.Frames })
	waitAdvancing(t, gTab, "the grid", path, 5*time.Second)

	// Nothing so far is a page error: no DELETE of an ended session, no 404.
	for _, e := range append(vErrs.list(), gErrs.list()...) {
		t.Errorf("console error before shutdown: %s", e)
	}

	// 5. A browser publisher goes live too, then the gateway shuts down:
	// every page notices within 2 s (the DTLS close, not ICE timeouts).
	pTab, _ := b.tab(t, "publisher")
	pErrs := watchConsoleErrors(b, pTab, "publisher")
	b.navigate(t, pTab, g.base+"/?publish="+room+"/chrome")
	b.do(t, pTab, "click Go live", chromedp.Click(chromedp.ID("go-live")))
	waitPage(t, pTab, 10*time.Second, "the browser publisher live", `livegate.publisher.state`,
		func(s string) (bool, error) { return s == "live", nil })
	shutdown := time.Now()
	g.shutdown(t)
	t.Logf("gateway stopped in %v", time.Since(shutdown).Round(time.Millisecond))
	v = waitViewer(t, vTab, remaining(shutdown), "the player to notice the shutdown", func(v viewerState) bool {
		return v.State == "disconnected" || v.State == "ended" || v.State == "error"
	})
	playerAfter := time.Since(shutdown)
	grid := waitPage(t, gTab, remaining(shutdown), "the grid to notice the shutdown", gridBadgeJS(path),
		func(s string) (bool, error) { return s == "" || s == "disconnected" || s == "error", nil })
	gridAfter := time.Since(shutdown)
	pubState := waitPage(t, pTab, remaining(shutdown), "the publisher page to notice the shutdown",
		`livegate.publisher.state`, func(s string) (bool, error) { return s == "error" || s == "idle", nil })
	pubAfter := time.Since(shutdown)
	t.Logf("gateway shutdown noticed by the player after %v (%s: %q), the grid after %v (%s), the publisher after %v (%s)",
		playerAfter.Round(time.Millisecond), v.State, v.Message, gridAfter.Round(time.Millisecond), grid,
		pubAfter.Round(time.Millisecond), pubState)
	waitPage(t, vTab, 2*time.Second, "the live list to empty when the gateway is gone", listStateJS(path),
		func(s string) (bool, error) { return s == "", nil })
	b.screenshot(t, vTab, "truth-3-shutdown")
	if v.State != "disconnected" {
		t.Errorf("player state %q after the gateway shut down, want disconnected", v.State)
	}

	// Stopping the player and the publisher after the gateway ended their
	// sessions sends no DELETE, so nothing fails; the pages' polling of the
	// gone gateway may fail, but never a session resource.
	b.do(t, pTab, "click Stop", chromedp.Click(chromedp.ID("stop-live")))
	b.do(t, vTab, "click Stop", chromedp.Click(chromedp.ID("stop-watch")))
	time.Sleep(300 * time.Millisecond)
	for _, e := range append(append(vErrs.list(), gErrs.list()...), pErrs.list()...) {
		if sessionResource.MatchString(e) {
			t.Errorf("console error for a session resource: %s", e)
		}
	}
}

// When the gateway's DTLS close is lost (a datagram dropped on a loaded
// machine), the player still notices the shutdown within 2 s: the room's
// event stream closes first (TCP), media stopped, the gateway does not
// answer. Every datagram is dropped in this namespace from just before the
// shutdown.
func TestBrowserViewerLostDTLSClose(t *testing.T) {
	if !inBrowserNetns(t) {
		return
	}
	nft, err := exec.LookPath("nft")
	if err != nil {
		skipOrFail(t, "nft not installed (apt-get install nftables): %v", err)
	}
	g := startGateway(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	b := startBrowser(t, ctx)
	const path = "lost/cam"
	publishClip(t, g, path)
	vTab, _ := b.tab(t, "viewer")
	b.navigate(t, vTab, g.base+"/?watch="+path)
	waitViewer(t, vTab, 10*time.Second, "the player live with frames", func(v viewerState) bool {
		return v.State == "live" && v.Frames > 0
	})
	for _, args := range [][]string{
		{"add", "table", "inet", "livegate_test"},
		{"add", "chain", "inet", "livegate_test", "out", "{ type filter hook output priority 0; }"},
		{"add", "rule", "inet", "livegate_test", "out", "meta", "l4proto", "udp", "drop"},
	} {
		if out, err := exec.Command(nft, args...).CombinedOutput(); err != nil {
			t.Fatalf("nft %v: %v: %s", args, err, out)
		}
	}
	shutdown := time.Now()
	g.shutdown(t)
	v := waitViewer(t, vTab, remaining(shutdown), "the player to notice the shutdown without its DTLS close",
		func(v viewerState) bool { return v.State == "disconnected" })
	t.Logf("shutdown with every datagram dropped: the player said %q after %v", v.Message, time.Since(shutdown).Round(time.Millisecond))
}

// With tokens the player tells the same story: its viewer token (subscribe
// grant for the room) reads the room's events, so it needs no admin
// rights. The live list needs an admin token: the page asks once, not every
// 3 s (each refusal would be an error in the console).
func TestBrowserViewerTruthWithToken(t *testing.T) {
	if !inBrowserNetns(t) {
		return
	}
	g := startGateway(t, func(c *Config) { c.Grace, c.AuthMode, c.AuthKey = truthGrace, "on", testKey })
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	b := startBrowser(t, ctx)
	const room, path = "tok", "tok/cam"
	opts := clientOpts(t)
	opts.Token = roomToken(t, room, "cam", "Cam", auth.GrantPublish)
	pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
	pub, err := rtcclient.Publish(pctx, g.base+"/whip/"+path, opts, rtcclient.H264ConstrainedBaseline, true)
	pcancel()
	if err != nil {
		t.Fatalf("publish with a token: %v", err)
	}
	t.Cleanup(func() { _ = pub.PC.Close() })
	waitConnected(t, pub.PC)
	playing, stopPlaying := context.WithCancel(ctx)
	played := make(chan struct{})
	go func() {
		defer close(played)
		play(playing, pub, loadClip(t), 0)
	}()
	t.Cleanup(func() {
		stopPlaying()
		<-played
	})

	vTab, _ := b.tab(t, "viewer")
	vErrs := watchConsoleErrors(b, vTab, "viewer")
	viewer := roomToken(t, room, "v1", "Vic", auth.GrantSubscribe)
	b.navigate(t, vTab, g.base+"/?watch="+path+"&token="+viewer)
	waitViewer(t, vTab, 10*time.Second, "the player live with frames", func(v viewerState) bool {
		return v.State == "live" && v.Frames > 0
	})
	stopPlaying()
	<-played
	if err := pub.Close(ctx); err != nil {
		t.Fatalf("publisher DELETE: %v", err)
	}
	stopped := time.Now()
	waitViewer(t, vTab, 2*time.Second, "the player to say the publisher is reconnecting", func(v viewerState) bool {
		return v.State == "reconnecting" && strings.Contains(strings.ToLower(v.Message), "publisher reconnecting")
	})
	reconnectingAfter := time.Since(stopped)
	waitViewer(t, vTab, truthGrace+2*time.Second, "the player to say the stream ended", func(v viewerState) bool {
		return v.State == "ended"
	})
	t.Logf("with tokens: reconnecting after %v, ended after %v (grace %v)", reconnectingAfter.Round(time.Millisecond),
		time.Since(stopped).Round(time.Millisecond), truthGrace)
	time.Sleep(3500 * time.Millisecond) // past a refresh of the live list
	refusals := 0
	for _, e := range vErrs.list() {
		if strings.Contains(e, "/api/v1/streams)") && (strings.Contains(e, " 401 ") || strings.Contains(e, " 403 ")) {
			refusals++
			continue
		}
		t.Errorf("console error: %s", e)
	}
	if refusals > 1 {
		t.Errorf("the page asked for the live list %d times with a token that may not list it", refusals)
	}
}

// publishClip publishes the test clip at path in real time until stop.
func publishClip(t *testing.T, g *testGateway, path string) (*rtcclient.Publisher, func()) {
	t.Helper()
	pub := g.publish(t, path)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	c := loadClip(t)
	go func() {
		defer close(done)
		play(ctx, pub, c, 0)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	t.Cleanup(func() {
		stop()
		_ = pub.PC.Close()
	})
	return pub, stop
}

// remaining is what is left of the 2 s within which pages must notice a
// shutdown that began at since (at least a poll's worth).
func remaining(since time.Time) time.Duration {
	return max(2*time.Second-time.Since(since), 150*time.Millisecond)
}

// gridBadgeJS is what the grid tile of path shows ("" when there is none).
func gridBadgeJS(path string) string {
	return `(document.querySelector('.tile[data-path="` + path + `"]') || {dataset: {}}).dataset.state || ''`
}

func waitViewer(t *testing.T, ctx context.Context, timeout time.Duration, what string, done func(viewerState) bool) viewerState {
	t.Helper()
	return waitPage(t, ctx, timeout, what, viewerStateJS, func(v viewerState) (bool, error) { return done(v), nil })
}

// consoleErrors collects a tab's console errors and uncaught exceptions,
// with the URL they concern (a failed request names its resource).
type consoleErrors struct {
	mu   sync.Mutex
	errs []string
}

func (c *consoleErrors) list() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.errs...)
}

func watchConsoleErrors(b *browser, ctx context.Context, name string) *consoleErrors {
	c := &consoleErrors{}
	b.onConsole(ctx, func(m chromedp.ConsoleMessage) {
		if m.Type == chromedp.ConsoleError || m.IsException() {
			c.mu.Lock()
			c.errs = append(c.errs, fmt.Sprintf("%s %s: %s (%s)", m.Time.Format("15:04:05.000"), name, m.Text, m.URL))
			c.mu.Unlock()
		}
	})
	return c
}
