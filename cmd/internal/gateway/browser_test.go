package gateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/livegate/livegate/internal/testenv"
)

// The browser test drives the embedded page in Chromium: a publisher tab goes
// live with the fake camera over WHIP, a viewer tab plays it over WHEP.
//
// Browser traffic must stay on loopback, so the test runs in a network
// namespace that has only lo. When the test process is not in one, it
// re-executes its own binary under `unshare -n` (which needs root) and
// reports the child's result. Without root, unshare, ip or Chromium the test
// skips, unless LIVEGATE_E2E=1 asks for it to fail instead.
//
// LIVEGATE_SCREENSHOTS=DIR saves a screenshot of every page state there.

const (
	chromiumPath   = "/usr/bin/chromium"
	envInNetns     = "LIVEGATE_IN_NETNS"
	envNetnsIP     = "LIVEGATE_NETNS_IP"
	envE2E         = testenv.EnvE2E
	envScreenshots = "LIVEGATE_SCREENSHOTS"
	browserPath    = "e2e/cam"
)

func TestBrowserPublishAndWatch(t *testing.T) {
	if !inBrowserNetns(t) {
		return
	}
	browserPublishAndWatch(t)
}

// inLoopbackNetns reports whether the calling test should run here: in a
// network namespace with only lo. Elsewhere it re-runs the test in a new
// one (bounded by limit), reports the child's result and returns false.
func inLoopbackNetns(t *testing.T, limit time.Duration) bool {
	t.Helper()
	isolated, loUp, ifaces, err := loopbackOnly()
	if err != nil {
		t.Fatalf("listing network interfaces: %v", err)
	}
	if !isolated {
		if os.Getenv(envInNetns) != "" {
			t.Fatalf("%s is set but the network namespace has interfaces other than lo: %v", envInNetns, ifaces)
		}
		runInNetnsFor(t, limit)
		return false
	}
	if !loUp {
		skipOrFail(t, "this network namespace has only lo, but lo is down (ip link set lo up)")
	}
	return true
}

// skipOrFail skips the test, or fails it when LIVEGATE_E2E=1.
var skipOrFail = testenv.SkipOrFail

// loopbackOnly reports whether this process's network namespace has no
// interface but lo, and whether lo is up. It asks the kernel over netlink: /sys/class/net shows
// the namespace of whoever mounted sysfs, not ours, after unshare -n.
func loopbackOnly() (only, up bool, names []string, err error) {
	list, err := net.Interfaces()
	if err != nil {
		return false, false, nil, err
	}
	for _, i := range list {
		names = append(names, i.Name)
	}
	if len(list) != 1 || list[0].Name != "lo" {
		return false, false, names, nil
	}
	return true, list[0].Flags&net.FlagUp != 0, names, nil
}

// runInNetns runs this test again in a new network namespace with only lo
// up, streams the child's output into the log and fails if the child fails.
func runInNetns(t *testing.T) { runInNetnsFor(t, 60*time.Second) }

// runInNetnsFor is runInNetns with a bound on the child's whole run.
func runInNetnsFor(t *testing.T, limit time.Duration) {
	if os.Geteuid() != 0 {
		skipOrFail(t, "the browser test must run in a network namespace with only lo, and creating one (unshare -n) needs root")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		skipOrFail(t, "the browser test needs unshare (util-linux) for a loopback-only network namespace: %v", err)
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		skipOrFail(t, "the browser test needs ip (iproute2) to bring lo up in its network namespace: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	name := t.Name()
	cmd := exec.CommandContext(ctx, unshare, "-n", "sh", "-c", `"$`+envNetnsIP+`" link set lo up && exec "$0" "$@"`,
		os.Args[0], "-test.run=^"+name+"$", "-test.v=true", "-test.count=1", "-test.timeout="+(limit-5*time.Second).String())
	cmd.Env = append(os.Environ(), envInNetns+"=1", envNetnsIP+"="+ip)
	var out bytes.Buffer
	lw := &lineLogger{t: t, prefix: "netns| ", copy: &out}
	cmd.Stdout, cmd.Stderr = lw, lw
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	lw.flush()
	if err != nil {
		t.Fatalf("browser test in the network namespace failed: %v", err)
	}
	switch {
	case strings.Contains(out.String(), "--- PASS: "+name):
	case strings.Contains(out.String(), "--- SKIP: "+name):
		t.Skip("skipped in the network namespace (see the log)")
	default:
		t.Fatalf("the browser test did not run in the network namespace")
	}
}

// lineLogger writes a child's output to the test log line by line.
type lineLogger struct {
	t      *testing.T
	prefix string
	copy   io.Writer
	mu     sync.Mutex
	buf    []byte
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.copy.Write(p)
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.t.Log(l.prefix + string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
}

func (l *lineLogger) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.t.Log(l.prefix + string(l.buf))
		l.buf = nil
	}
}

func browserPublishAndWatch(t *testing.T) {
	g := startGateway(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	b := startBrowser(t, ctx)

	// Tab 1: go live.
	pubTab, _ := b.tab(t, "publisher")
	b.navigate(t, pubTab, g.base+"/?publish="+browserPath)
	if got := evalJS[string](t, pubTab, `document.getElementById('pub-room').value + '/' + document.getElementById('pub-name').value`); got != browserPath {
		t.Fatalf("?publish=%s filled in %q", browserPath, got)
	}
	b.screenshot(t, pubTab, "1-publish-idle")
	b.do(t, pubTab, "click Go live", chromedp.Click(chromedp.ID("go-live")))
	waitPage(t, pubTab, 10*time.Second, "publisher live", `({state: livegate.state, error: livegate.error})`,
		func(s struct {
			State string `json:"state"`
			Error string `json:"error"`
		}) (bool, error) {
			if s.State == "error" {
				return false, fmt.Errorf("publisher error: %s", s.Error)
			}
			return s.State == "live", nil
		})
	st, ok := g.Hub().Get(browserPath)
	if !ok || !st.Live() {
		t.Fatalf("page is live but the hub has no live stream %s", browserPath)
	}
	if n := g.whip.Sessions(); n != 1 {
		t.Fatalf("%d WHIP sessions, want 1", n)
	}
	var codecs []string
	for _, tr := range st.Stats().Tracks {
		codecs = append(codecs, tr.Codec.MimeType)
	}
	// The page offers H.264 with packetization-mode=1 first, so that other
	// outputs can pass it through.
	first := evalJS[string](t, pubTab, firstVideoCodecJS)
	t.Logf("published tracks %v; the offer's first video codec: %s", codecs, first)
	if evalJS[bool](t, pubTab, `RTCRtpSender.getCapabilities('video').codecs.some(c => c.mimeType === 'video/H264')`) {
		if !strings.HasPrefix(first, "H264/90000 ") || !strings.Contains(first, "packetization-mode=1") {
			t.Errorf("the browser can send H.264 but the offer's first video codec is %q", first)
		}
		if !contains(codecs, "video/H264") {
			t.Errorf("the browser can send H.264 but published %v", codecs)
		}
	}
	b.screenshot(t, pubTab, "2-publish-live")

	// Tab 2: a stream that is not live shows the server's JSON error; then
	// watch ours through the deep link.
	viewTab, closeViewTab := b.tab(t, "viewer")
	b.navigate(t, viewTab, g.base+"/?watch=e2e/missing")
	waitPage(t, viewTab, 5*time.Second, "the viewer to show the 404", `({state: livegate.viewer.state, error: livegate.viewer.error})`,
		func(s struct {
			State string `json:"state"`
			Error string `json:"error"`
		}) (bool, error) {
			if s.State == "error" && !strings.Contains(s.Error, "e2e/missing") {
				return false, fmt.Errorf("viewer error %q is not the server's message", s.Error)
			}
			return s.State == "error", nil
		})
	b.navigate(t, viewTab, g.base+"/?watch="+browserPath)
	type video struct {
		State     string `json:"state"`
		Error     string `json:"error"`
		Frames    int    `json:"frames"`
		Presented int    `json:"presented"`
		Width     int    `json:"width"`
		Height    int    `json:"height"`
	}
	const videoJS = `(v => ({state: v.state, error: v.error, frames: v.frames, presented: v.presentedFrames,
		width: v.videoWidth, height: v.videoHeight}))(livegate.viewer)`
	v1 := waitPage(t, viewTab, 10*time.Second, "video at the viewer", videoJS, func(v video) (bool, error) {
		if v.State == "error" {
			return false, fmt.Errorf("viewer error: %s", v.Error)
		}
		return v.Width > 0, nil
	})
	time.Sleep(time.Second)
	v2 := evalJS[video](t, viewTab, videoJS)
	t.Logf("viewer: %dx%d, decoded frames %d -> %d, presented %d -> %d over 1 s",
		v2.Width, v2.Height, v1.Frames, v2.Frames, v1.Presented, v2.Presented)
	if v2.Frames <= v1.Frames {
		t.Fatalf("decoded frames did not advance in 1 s (%d -> %d): video is frozen", v1.Frames, v2.Frames)
	}
	if v2.State != "live" {
		t.Fatalf("viewer state %q (%s), want live", v2.State, v2.Error)
	}
	if n := g.whep.Sessions(); n != 1 {
		t.Fatalf("%d WHEP sessions, want 1", n)
	}
	waitPage(t, viewTab, 5*time.Second, "the stream in the live list",
		`!!document.querySelector('#stream-list button[data-path="`+browserPath+`"]')`,
		func(ok bool) (bool, error) { return ok, nil })
	b.screenshot(t, viewTab, "3-watch-live")

	// Stop publishing from tab 1: the session goes away at the server.
	b.do(t, pubTab, "bring the publisher to the front", func(ctx context.Context, tt *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, tt, page.BringToFront, cdp.Empty{})
		return chromedp.Void{}, err
	})
	b.do(t, pubTab, "click Stop", chromedp.Click(chromedp.ID("stop-live")))
	waitFor(t, 5*time.Second, "the WHIP session to end", func() bool { return g.whip.Sessions() == 0 })
	waitFor(t, 5*time.Second, "the stream to stop being live", func() bool { return !st.Live() })
	waitPage(t, pubTab, 5*time.Second, "publisher idle", `livegate.state`,
		func(s string) (bool, error) { return s == "idle", nil })
	b.screenshot(t, pubTab, "4-publish-stopped")

	// Closing the viewer's tab ends its session at the server.
	closeViewTab()
	waitFor(t, 5*time.Second, "the WHEP session to end", func() bool { return g.whep.Sessions() == 0 })
}

// firstVideoCodecJS is the rtpmap and fmtp of the first payload type of the
// publisher's video offer.
const firstVideoCodecJS = `(() => {
	const m = livegate.publisher.pc.localDescription.sdp.split('\r\nm=').find(s => s.startsWith('video'));
	const pt = m.split(' ')[3];
	const attr = name => (m.match(new RegExp('a=' + name + ':' + pt + ' (.+)')) || [])[1] || '';
	return attr('rtpmap') + ' ' + attr('fmtp');
})()`

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// browser is one Chromium with its tabs and their console logs.
type browser struct {
	ctx     context.Context // the first tab; its cancel closes the browser
	used    bool            // whether tab has handed out ctx
	shots   string
	mu      sync.Mutex
	console []string
	wg      sync.WaitGroup
}

func startBrowser(t *testing.T, parent context.Context) *browser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless, // also hides scrollbars and mutes audio
		chromedp.NoSandbox,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-breakpad", true),
		// Two tabs play at once: keep the one behind running at full speed.
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.WindowSize(1280, 900),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(parent, opts...)
	ctx, cancelBrowser := chromedp.NewContext(allocCtx)
	b := &browser{ctx: ctx, shots: os.Getenv(envScreenshots)}
	t.Cleanup(func() {
		// Close the browser, wait for the process and every goroutine
		// of ours, then show what the pages logged if the test failed.
		cancelBrowser()
		cancelAlloc()
		b.wg.Wait()
		if t.Failed() {
			b.mu.Lock()
			for _, m := range b.console {
				t.Log(m)
			}
			b.mu.Unlock()
		}
	})
	if err := chromedp.Do(ctx); err != nil { // start it now, under parent's deadline
		t.Fatalf("starting Chromium: %v", err)
	}
	return b
}

// tab returns a chromedp context for a new tab (the first call returns the
// browser's initial tab) and records its console. closeTab closes a new tab
// before the test ends; it does nothing for the initial tab.
func (b *browser) tab(t *testing.T, name string) (ctx context.Context, closeTab func()) {
	t.Helper()
	ctx, closeTab = b.ctx, func() {}
	if b.used {
		var cancel context.CancelFunc
		ctx, cancel = chromedp.NewContext(b.ctx)
		t.Cleanup(cancel)
		closeTab = cancel
		if err := chromedp.Do(ctx); err != nil {
			t.Fatalf("opening tab %s: %v", name, err)
		}
	}
	b.used = true
	b.onConsole(ctx, func(m chromedp.ConsoleMessage) {
		b.mu.Lock()
		b.console = append(b.console, fmt.Sprintf("console %s: %s", name, m))
		b.mu.Unlock()
	})
	return ctx, closeTab
}

// onConsole calls f with each console message of the tab at ctx until the
// tab closes; the browser waits for it before it stops.
func (b *browser) onConsole(ctx context.Context, f func(chromedp.ConsoleMessage)) {
	msgs := chromedp.Console(ctx)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for m, err := range msgs {
			if err != nil {
				return
			}
			f(m)
		}
	}()
}

func (b *browser) do(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func (b *browser) navigate(t *testing.T, ctx context.Context, url string) {
	t.Helper()
	b.do(t, ctx, "navigate to "+url, chromedp.Navigate(url))
}

// screenshot saves the tab's viewport to $LIVEGATE_SCREENSHOTS/name.png.
func (b *browser) screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if b.shots == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err == nil {
		err = os.WriteFile(filepath.Join(b.shots, name+".png"), png, 0o644)
	}
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
	}
}

// evalJS evaluates a JavaScript expression in the tab.
func evalJS[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// waitPage evaluates expr in the tab until done says so, an error, or the
// timeout. It returns the last value.
func waitPage[T any](t *testing.T, ctx context.Context, timeout time.Duration, what, expr string, done func(T) (bool, error)) T {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
		if err != nil {
			t.Fatalf("waiting for %s: evaluating %s: %v", what, expr, err)
		}
		ok, err := done(v)
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last %+v", timeout, what, v)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, context.Cause(ctx))
		case <-time.After(100 * time.Millisecond):
		}
	}
}
