package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// A browser host is the publisher this product is built for: a Chromium tab
// with a plain RTCPeerConnection that POSTs its offer to WHIP. Unlike the test
// clip it encodes a keyframe only at start, on each resolution step (it ramps
// from 320x180 up to the camera's size over the first seconds) and when
// asked, so outputs that need regular keyframes are tested against it.

// browserTest makes the calling test run inside a loopback-only network
// namespace with Chromium. In the parent process it re-runs the test under
// `unshare -n`, reports the child's result and returns nil: the caller must
// then return at once. Inside the namespace it returns a started browser that
// lives until the test ends. limit bounds the child's whole run.
func browserTest(t *testing.T, limit time.Duration) *browser {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		skipOrFail(t, "Chromium not found at %s: %v", chromiumPath, err)
	}
	if !inLoopbackNetns(t, limit) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	t.Cleanup(cancel)
	return startBrowser(t, ctx)
}

type chromeHostOpts struct {
	Simulcast     bool   // three encodings, rid q, h, f at 1/4, 1/2 and full resolution
	Token         string // bearer token for WHIP, if any
	Width, Height int    // camera size; default 1280x720
}

type chromeHost struct {
	b     *browser
	ctx   context.Context
	close func()
	path  string
}

// chromeHostStats sums the video outbound-rtp entries of the host's
// getStats() (one per simulcast layer); Width and Height are the largest.
type chromeHostStats struct {
	Keyframes int   `json:"keyframes"`
	Frames    int   `json:"frames"`
	PLIs      int   `json:"plis"`
	FIRs      int   `json:"firs"`
	Width     int   `json:"width"`
	Height    int   `json:"height"`
	BytesSent int64 `json:"bytesSent"`
}

// chromeHostJS publishes from the page it runs in; window.host has its state.
// It runs on the gateway's own origin, so no CORS rule is involved.
const chromeHostJS = `(() => {
const o = %s;
const H = window.host = { state: 'starting', error: null, pc: null, resource: null };
(async () => {
  try {
    const media = await navigator.mediaDevices.getUserMedia({ video: { width: o.width, height: o.height }, audio: true });
    const pc = H.pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    for (const t of media.getTracks()) {
      const init = { direction: 'sendonly', streams: [media] };
      if (t.kind === 'video' && o.simulcast) init.sendEncodings = [{ rid: 'q', scaleResolutionDownBy: 4 }, { rid: 'h', scaleResolutionDownBy: 2 }, { rid: 'f' }];
      pc.addTransceiver(t, init);
    }
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise(r => {
      if (pc.iceGatheringState === 'complete') return r();
      pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r();
      setTimeout(r, 2000);
    });
    const headers = { 'Content-Type': 'application/sdp' };
    if (o.token) headers.Authorization = 'Bearer ' + o.token;
    const res = await fetch(o.whip, { method: 'POST', headers, body: pc.localDescription.sdp });
    const body = await res.text();
    if (res.status !== 201) throw new Error('WHIP ' + res.status + ': ' + body);
    H.resource = new URL(res.headers.get('Location'), o.whip).href;
    await pc.setRemoteDescription({ type: 'answer', sdp: body });
    H.state = 'answered';
    pc.onconnectionstatechange = () => { if (pc.connectionState === 'failed') { H.state = 'error'; H.error = 'connection failed'; } };
  } catch (e) { H.state = 'error'; H.error = String(e); }
})();
return true;
})()`

const chromeHostStatsJS = `(async () => {
  const R = { keyframes: 0, frames: 0, plis: 0, firs: 0, width: 0, height: 0, bytesSent: 0 };
  const pc = window.host && window.host.pc;
  if (!pc) return R;
  (await pc.getStats()).forEach(s => {
    if (s.type !== 'outbound-rtp' || s.kind !== 'video') return;
    R.keyframes += s.keyFramesEncoded || 0; R.frames += s.framesEncoded || 0;
    R.plis += s.pliCount || 0; R.firs += s.firCount || 0; R.bytesSent += s.bytesSent || 0;
    R.width = Math.max(R.width, s.frameWidth || 0); R.height = Math.max(R.height, s.frameHeight || 0);
  });
  return R;
})()`

// startChromeHost opens a new tab on the gateway's own origin and publishes
// to /whip/PATH from it with Chromium's fake camera and microphone.
func (g *testGateway) startChromeHost(t *testing.T, b *browser, path string, o chromeHostOpts) *chromeHost {
	t.Helper()
	if o.Width == 0 {
		o.Width, o.Height = 1280, 720
	}
	ctx, closeTab := b.tab(t, "host "+path)
	// A small same-origin page: getUserMedia needs a secure context, which
	// http://127.0.0.1 is.
	b.navigate(t, ctx, g.base+"/healthz")
	opts, err := json.Marshal(map[string]any{
		"whip": g.base + "/whip/" + path, "token": o.Token, "simulcast": o.Simulcast,
		"width": o.Width, "height": o.Height,
	})
	if err != nil {
		t.Fatal(err)
	}
	evalJS[bool](t, ctx, fmt.Sprintf(chromeHostJS, opts))
	return &chromeHost{b: b, ctx: ctx, close: closeTab, path: path}
}

// waitLive waits until the host's connection is up and frames are encoded.
func (h *chromeHost) waitLive(t *testing.T, timeout time.Duration) {
	t.Helper()
	waitPage(t, h.ctx, timeout, "browser host "+h.path+" live",
		`({state: window.host.state, error: window.host.error, conn: window.host.pc ? window.host.pc.connectionState : ''})`,
		func(s struct {
			State, Error, Conn string
		}) (bool, error) {
			if s.State == "error" {
				return false, fmt.Errorf("browser host %s: %s", h.path, s.Error)
			}
			return s.Conn == "connected", nil
		})
	deadline := time.Now().Add(timeout)
	for h.stats(t).Frames == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("browser host %s connected but encodes no video frames", h.path)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stats reads the host's video sender statistics.
func (h *chromeHost) stats(t *testing.T) chromeHostStats {
	t.Helper()
	v, err := evalAsync[chromeHostStats](h.ctx, chromeHostStatsJS)
	if err != nil {
		t.Fatalf("browser host %s stats: %v", h.path, err)
	}
	return v
}

// stop ends the WHIP session (DELETE) and closes the tab.
func (h *chromeHost) stop(t *testing.T) {
	t.Helper()
	_, err := evalAsync[bool](h.ctx, `(async () => {
  const H = window.host;
  if (H.resource) await fetch(H.resource, { method: 'DELETE' }).catch(() => {});
  if (H.pc) H.pc.close();
  H.state = 'stopped';
  return true;
})()`)
	if err != nil {
		t.Errorf("stopping browser host %s: %v", h.path, err)
	}
	h.close()
}

// evalAsync evaluates an expression whose value is a promise.
func evalAsync[T any](ctx context.Context, expr string) (T, error) {
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// TestBrowserHostPublishes is the harness's own check: a Chromium host goes
// live, ramps up from its first small resolution, and a WHEP viewer gets
// every frame it encodes. (How far it ramps depends on the machine's load:
// Chromium lowers resolution when encoding is slow.)
func TestBrowserHostPublishes(t *testing.T) {
	b := browserTest(t, 90*time.Second)
	if b == nil {
		return
	}
	g := startGateway(t, nil)
	h := g.startChromeHost(t, b, "e2e/host", chromeHostOpts{})
	h.waitLive(t, 20*time.Second)
	v := g.view(t, "e2e/host")
	defer v.close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		frames, _, _ := v.snapshot()
		st := h.stats(t)
		if len(frames) > 30 && st.Width >= 640 && len(frames) >= st.Frames-30 {
			t.Logf("host: %+v; viewer got %d frames", st, len(frames))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 15 s: host %+v, viewer %d frames", st, len(frames))
		}
		time.Sleep(200 * time.Millisecond)
	}
	h.stop(t)
}
