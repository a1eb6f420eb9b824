package gateway

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/livegate/livegate/web/auth"
)

// The room test drives the host and viewer pages in Chromium with fake
// devices: two hosts join one room and each sees the other's video
// advancing within 3 s, a viewer sees both, chat goes from host to host and
// viewer and back, a screen share shows up as a second stream, and a host
// who leaves disappears from the others' pages. It runs in a loopback-only
// network namespace like TestBrowserPublishAndWatch.

const roomName = "e2e-room"

// inBrowserNetns reports whether the calling test should run here: it
// re-runs the test in a loopback-only network namespace, or skips, and
// returns false when it did.
func inBrowserNetns(t *testing.T) bool {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		skipOrFail(t, "Chromium not found at %s: %v", chromiumPath, err)
	}
	return inLoopbackNetns(t, 60*time.Second)
}

// tileInfo is what the pages report of one player (grid.js Tile.info).
type tileInfo struct {
	Path      string `json:"path"`
	Identity  string `json:"identity"`
	Name      string `json:"name"`
	Screen    bool   `json:"screen"`
	State     string `json:"state"`
	Error     string `json:"error"`
	Frames    int    `json:"frames"`
	Presented int    `json:"presented"`
	Width     int    `json:"width"`
	Muted     bool   `json:"muted"`
	Audio     bool   `json:"audio"`
}

type chatInfo struct {
	Identity string `json:"identity"`
	Name     string `json:"name"`
	Text     string `json:"text"`
	Verified bool   `json:"verified"`
}

type hostPage struct {
	Phase string     `json:"phase"`
	State string     `json:"state"`
	Error string     `json:"error"`
	Tiles []tileInfo `json:"tiles"`
}

const hostJS = `({phase: livegate.host.phase, state: livegate.host.state, error: livegate.host.error, tiles: livegate.tiles})`
const tilesJS = `livegate.tiles`

func tileOf(tiles []tileInfo, path string) (tileInfo, bool) {
	for _, t := range tiles {
		if t.Path == path {
			return t, true
		}
	}
	return tileInfo{}, false
}

// waitAdvancing waits until the tab's player for path has decoded frames
// and decodes more 300 ms later, and returns when that was seen.
func waitAdvancing(t *testing.T, ctx context.Context, who, path string, timeout time.Duration) time.Time {
	t.Helper()
	var first tileInfo
	var firstAt time.Time
	waitPage(t, ctx, timeout, who+" to see "+path+" advancing", tilesJS, func(tiles []tileInfo) (bool, error) {
		tile, ok := tileOf(tiles, path)
		if !ok || tile.Frames == 0 {
			first, firstAt = tileInfo{}, time.Time{}
			return false, nil
		}
		if firstAt.IsZero() {
			first, firstAt = tile, time.Now()
			return false, nil
		}
		return time.Since(firstAt) >= 300*time.Millisecond && tile.Frames > first.Frames && tile.Width > 0, nil
	})
	return time.Now()
}

func waitLive(t *testing.T, ctx context.Context, who string) {
	t.Helper()
	waitPage(t, ctx, 15*time.Second, who+" live", hostJS, func(h hostPage) (bool, error) {
		if h.State == "error" || h.Phase == "error" {
			return false, fmt.Errorf("%s: %s", who, h.Error)
		}
		return h.State == "live", nil
	})
}

func waitChat(t *testing.T, ctx context.Context, who, text string) chatInfo {
	t.Helper()
	var got chatInfo
	waitPage(t, ctx, 5*time.Second, who+" to get the chat message "+text, `livegate.room ? livegate.room.chat : []`,
		func(msgs []chatInfo) (bool, error) {
			for _, m := range msgs {
				if m.Text == text {
					got = m
					return true, nil
				}
			}
			return false, nil
		})
	// The page shows it too.
	waitPage(t, ctx, 2*time.Second, who+" to show the chat message", `[...document.querySelectorAll('#chat-list .text')].map(e => e.textContent)`,
		func(texts []string) (bool, error) { return contains(texts, text), nil })
	return got
}

// withGesture runs an evaluation as if the user had clicked: some APIs
// (screen capture) need it.
func withGesture(p *runtime.EvaluateParams) {
	yes := true
	p.UserGesture = &yes
}

func TestBrowserRoom(t *testing.T) {
	if !inBrowserNetns(t) {
		return
	}
	g := startGateway(t, func(c *Config) { c.AuthMode, c.AuthKey = "on", testKey })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	b := startBrowser(t, ctx)
	hostToken := func(identity, name string) string {
		return roomToken(t, roomName, identity, name, auth.GrantPublish, auth.GrantSubscribe, auth.GrantChat)
	}
	alicePath, bobPath := roomName+"/alice", roomName+"/bob"

	// Host A joins through the form: the page asks for a token, it is
	// pasted, identity typed; A checks the devices first, then goes live.
	aTab, _ := b.tab(t, "alice")
	b.navigate(t, aTab, g.base+"/host/"+roomName)
	waitPage(t, aTab, 5*time.Second, "the page to ask for a token", `document.getElementById('token-hint').textContent`,
		func(s string) (bool, error) { return strings.Contains(s, "required"), nil })
	b.do(t, aTab, "fill in the join form",
		chromedp.SendKeys(chromedp.ID("join-identity"), "alice"),
		chromedp.SetValue(chromedp.ID("join-token"), hostToken("alice", "Alice")),
		chromedp.Click(chromedp.ID("join-preview")))
	waitPage(t, aTab, 10*time.Second, "alice in the room", `livegate.host.phase`,
		func(s string) (bool, error) { return s == "joined", nil })
	b.do(t, aTab, "click Go live", chromedp.Click(chromedp.ID("go-live")))
	waitLive(t, aTab, "alice")
	// Device check: the fake camera and microphone are listed, the level
	// meter moves with the fake microphone's beeps.
	type devices struct {
		Cameras []string `json:"cameras"`
		Mics    []string `json:"mics"`
	}
	if d := evalJS[devices](t, aTab, `livegate.host.devices`); len(d.Cameras) == 0 || len(d.Mics) == 0 ||
		strings.HasPrefix(d.Cameras[0], "No ") || strings.HasPrefix(d.Mics[0], "No ") {
		t.Errorf("device lists %+v", d)
	}
	if s := evalJS[map[string]bool](t, aTab, `livegate.host.support`); !s["WebRTC"] || !s["H.264 video"] || !s["Room events (EventSource)"] {
		t.Errorf("support checks %v", s)
	}
	waitPage(t, aTab, 5*time.Second, "the mic level meter to move", `livegate.host.micLevel`,
		func(n int) (bool, error) { return n > 0, nil })
	b.screenshot(t, aTab, "room-1-alice-alone")

	// Host B joins from a link with its token and goes live by itself.
	bTab, closeB := b.tab(t, "bob")
	b.navigate(t, bTab, g.base+"/host/"+roomName+"?token="+url.QueryEscape(hostToken("bob", "Bob")))
	waitLive(t, bTab, "bob")
	bobLive := time.Now()
	if u := evalJS[string](t, bTab, `location.href`); strings.Contains(u, "token") {
		t.Errorf("the token stays in the address bar: %s", u)
	}
	// Each sees the other's video advancing within 3 s.
	seenByA := waitAdvancing(t, aTab, "alice", bobPath, 3*time.Second)
	seenByB := waitAdvancing(t, bTab, "bob", alicePath, 3*time.Second)
	t.Logf("after bob went live: alice sees bob in %v, bob sees alice in %v",
		seenByA.Sub(bobLive).Round(time.Millisecond), seenByB.Sub(bobLive).Round(time.Millisecond))
	for _, c := range []struct {
		ctx        context.Context
		who, other string
		name       string
	}{{aTab, "alice", bobPath, "Bob"}, {bTab, "bob", alicePath, "Alice"}} {
		h := evalJS[hostPage](t, c.ctx, hostJS)
		if len(h.Tiles) != 1 {
			t.Errorf("%s plays %+v, want only %s (not itself)", c.who, h.Tiles, c.other)
		} else if h.Tiles[0].Name != c.name || h.Tiles[0].State != "playing" || !h.Tiles[0].Audio {
			t.Errorf("%s's tile %+v: want %s playing with audio", c.who, h.Tiles[0], c.name)
		}
	}
	// Alice clicked on her page, so she hears bob; bob's page went live by
	// itself, and browsers keep it muted until he clicks "Enable sound".
	if tile, _ := tileOf(evalJS[[]tileInfo](t, aTab, tilesJS), bobPath); tile.Muted {
		t.Errorf("alice's player of bob is muted")
	}
	if evalJS[bool](t, bTab, `document.getElementById('sound').hidden`) {
		if tile, _ := tileOf(evalJS[[]tileInfo](t, bTab, tilesJS), alicePath); tile.Muted {
			t.Errorf("bob's player of alice is muted, but the page does not offer to enable sound")
		}
	}

	// A viewer sees both, with plain WHEP.
	vTab, _ := b.tab(t, "viewer")
	viewerToken := roomToken(t, roomName, "v1", "Vic", auth.GrantSubscribe, auth.GrantChat)
	b.navigate(t, vTab, g.base+"/watch/"+roomName+"?stats=1&token="+url.QueryEscape(viewerToken))
	waitAdvancing(t, vTab, "the viewer", alicePath, 10*time.Second)
	waitAdvancing(t, vTab, "the viewer", bobPath, 5*time.Second)
	if n := g.whep.Sessions(); n != 4 {
		t.Errorf("%d WHEP sessions, want 4 (alice→bob, bob→alice, viewer→both)", n)
	}
	waitPage(t, vTab, 3*time.Second, "the stats overlay", `[...document.querySelectorAll('.tile .overlay')].map(e => e.textContent)`,
		func(s []string) (bool, error) {
			return len(s) == 2 && strings.Contains(s[0], "fps") && strings.Contains(s[1], "fps"), nil
		})
	b.screenshot(t, vTab, "room-2-viewer")

	// Chat: alice types a message; bob and the viewer get it, with alice's
	// identity from her token. The viewer answers.
	b.do(t, aTab, "bring alice to the front", bringToFront)
	b.do(t, aTab, "type a chat message",
		chromedp.SendKeys(chromedp.ID("chat-text"), "hello from alice"),
		chromedp.Click(chromedp.ID("chat-send")))
	for _, c := range []struct {
		ctx context.Context
		who string
	}{{bTab, "bob"}, {vTab, "the viewer"}, {aTab, "alice"}} {
		m := waitChat(t, c.ctx, c.who, "hello from alice")
		if m.Identity != "alice" || m.Name != "Alice" || !m.Verified {
			t.Errorf("%s got %+v", c.who, m)
		}
	}
	if !evalJS[bool](t, vTab, `livegate.canChat`) {
		t.Fatal("the viewer's token has the chat grant, but the page does not allow chat")
	}
	evalJS[chromedp.Void](t, vTab, `livegate.sendChat('hi from the audience')`)
	if m := waitChat(t, aTab, "alice", "hi from the audience"); m.Identity != "v1" || m.Name != "Vic" {
		t.Errorf("alice got %+v", m)
	}

	// Screen share: alice's second stream appears at bob and the viewer.
	screenPath := alicePath + "-screen"
	b.do(t, aTab, "share the screen", chromedp.Evaluate[chromedp.Void](`livegate.host.shareScreen()`, withGesture))
	screen := waitPage(t, aTab, 10*time.Second, "alice's screen share", `livegate.host.screen`,
		func(s string) (bool, error) { return s == "live" || s == "error", nil })
	if screen == "live" {
		waitAdvancing(t, bTab, "bob", screenPath, 5*time.Second)
		waitAdvancing(t, vTab, "the viewer", screenPath, 5*time.Second)
		b.screenshot(t, vTab, "room-3-viewer-screen")
		evalJS[chromedp.Void](t, aTab, `livegate.host.stopScreen()`)
		waitPage(t, vTab, 5*time.Second, "the screen share to go", tilesJS, func(tiles []tileInfo) (bool, error) {
			_, ok := tileOf(tiles, screenPath)
			return !ok, nil
		})
	} else {
		t.Logf("screen capture is not available in this Chromium: %v", evalJS[string](t, aTab, `livegate.log.slice(-1)[0]`))
	}

	// Bob leaves: he disappears from alice's page and the viewer's grid at
	// once (not after the grace period), and his sessions end.
	b.do(t, bTab, "bring bob to the front", bringToFront)
	b.do(t, bTab, "click Leave", chromedp.Click(chromedp.ID("leave")))
	left := time.Now()
	gone := func(tiles []tileInfo) (bool, error) {
		_, ok := tileOf(tiles, bobPath)
		return !ok, nil
	}
	waitPage(t, aTab, 3*time.Second, "bob to leave alice's page", tilesJS, gone)
	waitPage(t, vTab, 3*time.Second, "bob to leave the viewer's grid", tilesJS, gone)
	t.Logf("bob gone from the other pages %v after clicking Leave", time.Since(left).Round(time.Millisecond))
	waitPage(t, aTab, 3*time.Second, "alice's room without bob", `livegate.room.hosts.map(h => h.identity)`,
		func(ids []string) (bool, error) { return len(ids) == 1 && ids[0] == "alice", nil })
	waitFor(t, 5*time.Second, "bob's sessions to end", func() bool {
		return g.whip.Sessions() == 1 && g.whep.Sessions() == 1
	})
	if got := evalJS[string](t, bTab, `livegate.host.phase`); got != "left" {
		t.Errorf("bob's page is %q after leaving", got)
	}
	// Alice keeps playing for the viewer.
	waitAdvancing(t, vTab, "the viewer", alicePath, 3*time.Second)
	b.screenshot(t, aTab, "room-4-alice-after-bob-left")
	closeB()

	// The log panel tells what happened.
	logs := evalJS[[]string](t, aTab, `livegate.log`)
	for _, want := range []string{"Joined room " + roomName + " as alice", "Published " + alicePath, "Bob joined", "bob left"} {
		if !containsSubstring(logs, want) {
			t.Errorf("alice's log lacks %q: %q", want, logs)
		}
	}
}

// TestBrowserRoomOpen joins two hosts on an open development gateway (no
// token anywhere) through page links, as `go run ./cmd/livegate` serves them.
func TestBrowserRoomOpen(t *testing.T) {
	if !inBrowserNetns(t) {
		return
	}
	g := startGateway(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	b := startBrowser(t, ctx)
	aTab, _ := b.tab(t, "ann")
	b.navigate(t, aTab, g.base+"/host/open?identity=ann&name=Ann%20A")
	waitLive(t, aTab, "ann")
	bTab, _ := b.tab(t, "ben")
	b.navigate(t, bTab, g.base+"/host.html?room=open&identity=ben")
	waitLive(t, bTab, "ben")
	waitAdvancing(t, aTab, "ann", "open/ben", 3*time.Second)
	waitAdvancing(t, bTab, "ben", "open/ann", 3*time.Second)
	if tile, _ := tileOf(evalJS[[]tileInfo](t, bTab, tilesJS), "open/ann"); tile.Name != "Ann A" {
		t.Errorf("ben sees ann as %q, want the display name from the link", tile.Name)
	}
	evalJS[chromedp.Void](t, bTab, `livegate.host.sendChat('hi ann')`)
	if m := waitChat(t, aTab, "ann", "hi ann"); m.Identity != "ben" || m.Verified {
		t.Errorf("ann got %+v: want ben, unverified", m)
	}
	vTab, _ := b.tab(t, "viewer")
	b.navigate(t, vTab, g.base+"/watch/open")
	waitAdvancing(t, vTab, "the viewer", "open/ann", 10*time.Second)
	waitAdvancing(t, vTab, "the viewer", "open/ben", 5*time.Second)
	if m := waitChat(t, vTab, "the viewer", "hi ann"); m.Identity != "ben" {
		t.Errorf("the viewer got %+v", m)
	}
}

func bringToFront(ctx context.Context, tt *chromedp.Target) (chromedp.Void, error) {
	_, err := cdp.Call(ctx, tt, page.BringToFront, cdp.Empty{})
	return chromedp.Void{}, err
}

func containsSubstring(list []string, s string) bool {
	for _, x := range list {
		if strings.Contains(x, s) {
			return true
		}
	}
	return false
}
