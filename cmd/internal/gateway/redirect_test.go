package gateway

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/livegate/livegate/relay/cluster"
	"github.com/livegate/livegate/relay/cluster/clustertest"
	"github.com/livegate/livegate/relay/rtcclient"
)

// tokenCluster is an origin and two edges sharing a Redis directory and an
// auth key; the first edge is full after one viewer, so it redirects.
type tokenCluster struct {
	origin, full, spare *testGateway
}

func startTokenCluster(t *testing.T, path string) *tokenCluster {
	t.Helper()
	rs := clustertest.StartRedis(t)
	node := func(role cluster.Role, max int) *testGateway {
		return startGateway(t, func(c *Config) {
			c.ClusterRedis, c.ClusterRole, c.ClusterKey = rs.URL(), string(role), clusterKey
			c.WHEPParams.MaxSessions, c.TreeParams.Linger, c.Grace = max, 5*time.Second, 5*time.Second
			c.AuthMode, c.AuthKey = "on", testKey
		})
	}
	tc := &tokenCluster{origin: node(cluster.RoleOrigin, 0), full: node(cluster.RoleEdge, 1), spare: node(cluster.RoleEdge, 0)}
	room, name, _ := strings.Cut(path, "/")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opts := clientOpts(t)
	opts.Token = token(t, room, name, time.Hour, "publish")
	pub, err := rtcclient.Publish(ctx, tc.origin.base+"/whip/"+path, opts, rtcclient.H264ConstrainedBaseline, true)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	waitConnected(t, pub.PC)
	pctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); play(pctx, pub, loadClip(t), 0) }()
	t.Cleanup(func() { stop(); <-done; _ = pub.PC.Close() })

	// One viewer fills the full edge; its next heartbeat knows the spare.
	first := tc.viewWith(t, tc.full.base, path, token(t, room, "first", time.Hour, "subscribe"), nil)
	first.waitFrames(t, 10*time.Second, 11, "frames for the first viewer")
	waitFor(t, 8*time.Second, "the full edge to know the spare edge", func() bool {
		u, ok := tc.full.Member().LeastLoaded(ctx, tc.full.Member().Self().ID)
		return ok && u.URL == tc.spare.base
	})
	time.Sleep(2500 * time.Millisecond) // a heartbeat refreshes the candidates Redirect uses
	return tc
}

// viewWith plays path at base with a bearer token through client (nil:
// the harness's).
func (tc *tokenCluster) viewWith(t *testing.T, base, path, tok string, client *http.Client) *viewer {
	t.Helper()
	opts := clientOpts(t)
	opts.Token = tok
	if client != nil {
		opts.HTTP = client
	}
	v, err := dialViewer(t, base+"/whep/"+path, opts)
	if err != nil {
		t.Fatalf("view %s at %s: %v", path, base, err)
	}
	return v
}

// A full edge redirects a tokened viewer to the spare edge with a redirect
// token in the Location, so a client that drops the Authorization header
// on the redirect (as browsers do across origins) is served there. The
// redirect token works for that stream only, for nothing else, and the
// session's Location names the node it is on.
func TestRedirectCarriesToken(t *testing.T) {
	const path = "redir/cam"
	tc := startTokenCluster(t, path)

	var location string
	browserLike := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			req.Header.Del("Authorization") // what a browser does for another origin
			location = req.URL.String()
			return nil
		}}
	v := tc.viewWith(t, tc.full.base, path, token(t, "redir", "second", time.Hour, "subscribe"), browserLike)
	if !strings.HasPrefix(location, tc.spare.base+"/whep/"+path+"?access_token=") {
		t.Fatalf("redirected to %q, want the spare edge with a token", location)
	}
	if !strings.HasPrefix(v.Resource, tc.spare.base+"/whep/"+path+"/") {
		t.Fatalf("session resource %q is not an absolute URL on the spare edge", v.Resource)
	}
	v.waitFrames(t, 10*time.Second, 31, "frames for the redirected viewer")
	t.Logf("redirected with %s", location[:strings.Index(location, "?")]+"?access_token=…")

	// The redirect token is for this stream only.
	u, _ := url.Parse(location)
	rt := u.Query().Get("access_token")
	offer := recvOffer(t)
	for _, c := range []struct {
		what, method, url, body string
		want                    int
	}{
		{"another stream in the URL", "POST", tc.spare.base + "/whep/redir/other?access_token=" + rt, offer, http.StatusForbidden},
		{"the stream list", "GET", tc.spare.base + "/api/v1/streams?access_token=" + rt, "", http.StatusForbidden},
		{"publishing", "POST", tc.spare.base + "/whip/redir/cam?access_token=" + rt, offer, http.StatusUnauthorized},
		{"an ordinary token in a WHEP URL", "POST", tc.spare.base + "/whep/" + path + "?access_token=" + token(t, "redir", "x", time.Hour, "subscribe"), offer, http.StatusForbidden},
	} {
		contentType := ""
		if c.body != "" {
			contentType = "application/sdp"
		}
		resp, _ := fetch(t, c.method, c.url, c.body, "Content-Type", contentType)
		if resp.StatusCode != c.want {
			t.Errorf("redirect token for %s: %d, want %d", c.what, resp.StatusCode, c.want)
		}
	}
}

// recvOffer is a valid recvonly offer, for requests that must be refused
// before it is used.
func recvOffer(t *testing.T) string {
	t.Helper()
	pc, err := clientOpts(t).API.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	o, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return o.SDP
}

// thirdPartyPlayer is a WHEP player as other projects write it, served
// from an origin of its own: fetch with the token as a bearer header,
// redirects followed by the browser, the answer applied, frames counted.
const thirdPartyPlayer = `<!doctype html><meta charset=utf-8><video id=v autoplay muted playsinline></video><script>
window.result = {done: false};
(async () => {
  const p = new URLSearchParams(location.search);
  const pc = new RTCPeerConnection();
  pc.addTransceiver('video', {direction: 'recvonly'});
  pc.addTransceiver('audio', {direction: 'recvonly'});
  pc.ontrack = e => { const v = document.getElementById('v'); v.srcObject = e.streams[0] || new MediaStream([e.track]); };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise(r => {
    if (pc.iceGatheringState === 'complete') return r();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r();
    setTimeout(r, 2000);
  });
  const res = await fetch(p.get('whep'), {method: 'POST', body: pc.localDescription.sdp,
    headers: {'Content-Type': 'application/sdp', 'Authorization': 'Bearer ' + p.get('token')}});
  const r = {status: res.status, redirected: res.redirected, url: res.url, location: res.headers.get('Location'), frames: 0};
  if (res.status !== 201) { window.result = {...r, done: true, body: await res.text()}; return; }
  await pc.setRemoteDescription({type: 'answer', sdp: await res.text()});
  const started = performance.now();
  const tick = async () => {
    (await pc.getStats()).forEach(s => { if (s.type === 'inbound-rtp' && s.kind === 'video') r.frames = s.framesDecoded || 0; });
    r.ms = Math.round(performance.now() - started);
    window.result = {...r, done: r.frames >= 30 || r.ms > 15000};
    if (!window.result.done) setTimeout(tick, 100);
  };
  tick();
})().catch(e => { window.result = {done: true, error: String(e)}; });
</script>`

type playerResult struct {
	Done       bool   `json:"done"`
	Status     int    `json:"status"`
	Redirected bool   `json:"redirected"`
	URL        string `json:"url"`
	Location   string `json:"location"`
	Frames     int    `json:"frames"`
	MS         int    `json:"ms"`
	Body       string `json:"body"`
	Error      string `json:"error"`
}

// A browser player on a page of another origin, with a token, asks the
// full edge: Chromium follows the 307 (without the Authorization header)
// and plays from the spare edge.
func TestBrowserRedirectedViewerWithToken(t *testing.T) {
	if !inBrowserNetns(t) {
		return
	}
	const path = "redir/browser"
	tc := startTokenCluster(t, path)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	page := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, thirdPartyPlayer)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = page.Serve(ln) }()
	t.Cleanup(func() { _ = page.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	b := startBrowser(t, ctx)
	tab, _ := b.tab(t, "player")
	q := url.Values{"whep": {tc.full.base + "/whep/" + path}, "token": {token(t, "redir", "browser", time.Hour, "subscribe")}}
	b.navigate(t, tab, "http://"+ln.Addr().String()+"/?"+q.Encode())
	r := waitPage(t, tab, 25*time.Second, "the player's result", `window.result`,
		func(r playerResult) (bool, error) { return r.Done, nil })
	t.Logf("third-party player: HTTP %d, redirected %v to %s, session %s, %d frames decoded in %d ms %s%s",
		r.Status, r.Redirected, r.URL, r.Location, r.Frames, r.MS, r.Body, r.Error)
	if r.Status != http.StatusCreated || !r.Redirected || !strings.HasPrefix(r.URL, tc.spare.base) {
		t.Fatalf("the player was not served by the spare edge after a redirect")
	}
	if r.Frames < 30 {
		t.Fatalf("the redirected player decoded %d frames, want 30", r.Frames)
	}
	if n := tc.spare.whep.Sessions(); n != 1 {
		t.Errorf("spare edge has %d WHEP sessions, want the player's", n)
	}

	// The same with medooze's WHEPClient (npm whip-whep, installed by
	// .ci/run), which resolves the session's Location against the URL it
	// asked and trickles its candidates there with the bearer token.
	var src strings.Builder
	body, err := os.ReadFile(filepath.Join(whipWhepDir, "whep.js"))
	if err != nil {
		skipOrFail(t, "the whip-whep npm package is missing (.ci/run installs it): %v", err)
	}
	src.WriteString(strings.Replace(string(body), "export class", "class", 1))
	lib := "(() => {\n" + src.String() + "\nwindow.WHEPClient = WHEPClient; return true; })()"
	mtab, _ := b.tab(t, "medooze")
	b.navigate(t, mtab, "http://"+ln.Addr().String()+"/blank")
	evalJS[bool](t, mtab, lib)
	evalJS[bool](t, mtab, fmt.Sprintf(`(async (url, token) => {
  const R = window.mz = {frames: 0, error: '', resource: ''};
  try {
    const pc = new RTCPeerConnection();
    pc.addTransceiver('video', {direction: 'recvonly'});
    pc.addTransceiver('audio', {direction: 'recvonly'});
    const video = document.createElement('video');
    video.muted = true; video.autoplay = true; video.playsInline = true;
    document.body.append(video);
    const stream = new MediaStream();
    video.srcObject = stream;
    pc.addEventListener('track', (e) => stream.addTrack(e.track));
    const count = () => video.requestVideoFrameCallback(() => { R.frames++; count(); });
    count();
    const c = new WHEPClient();
    await c.view(pc, url, token);
    R.resource = String(c.resourceURL);
  } catch (e) { R.error = String(e); }
})(%q, %q), true`, tc.full.base+"/whep/"+path, token(t, "redir", "medooze", time.Hour, "subscribe")))
	type mzState struct {
		Frames   int    `json:"frames"`
		Error    string `json:"error"`
		Resource string `json:"resource"`
	}
	m := waitPage(t, mtab, 20*time.Second, "medooze's WHEPClient playing after the redirect", `window.mz`,
		func(s mzState) (bool, error) {
			if s.Error != "" {
				return false, fmt.Errorf("WHEPClient: %s", s.Error)
			}
			return s.Frames > 30, nil
		})
	t.Logf("medooze WHEPClient: session %s, %d frames shown", m.Resource, m.Frames)
	if !strings.HasPrefix(m.Resource, tc.spare.base) {
		t.Errorf("medooze WHEPClient's session %s is not on the spare edge", m.Resource)
	}
	if n := tc.spare.whep.Sessions(); n != 2 {
		t.Errorf("spare edge has %d WHEP sessions, want both players'", n)
	}
}
