package web

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/livegate/livegate/internal/addrlimit"
	"github.com/livegate/livegate/internal/testenv"
	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/rtc"
	"github.com/livegate/livegate/web/auth"
	"github.com/livegate/livegate/web/metrics"
)

const (
	testSigningKey = "test-signing-key-0123456789abcdef"
	testAdminKey   = "admin-key-0123456789"
)

// call sends one request to s as a client at remote addressing host.
func call(s *Server, method, target, remote, host string, hdr map[string]string, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	req.RemoteAddr, req.Host = remote, host
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	return rec
}

func newTestServer(t *testing.T, p Params) *Server {
	t.Helper()
	if p.Hub == nil {
		hub := relay.NewHub(relay.Params{})
		t.Cleanup(hub.Close)
		p.Hub = hub
	}
	return New(p)
}

// Found: behind a same-host proxy, or from a DNS-rebinding page, every
// client counted as local on a gateway without a key, and CORS answered *.
func TestOpenModeAnswersOnlyThisMachine(t *testing.T) {
	s := newTestServer(t, Params{Auth: AuthParams{Mode: AuthAuto}})
	const local, remote = "127.0.0.1:5000", "198.51.100.7:5000"
	for _, tc := range []struct {
		name, remote, host string
		hdr                map[string]string
		want               int
	}{
		{"browser on this machine", local, "127.0.0.1:8080", nil, 200},
		{"localhost", "[::1]:5000", "localhost:8080", nil, 200},
		{"own page", local, "127.0.0.1:8080", map[string]string{"Origin": "http://127.0.0.1:8080"}, 200},
		{"DNS rebinding", local, "attacker.example:8080", nil, 403},
		{"no Host", local, "", nil, 403},
		{"page of another origin", local, "127.0.0.1:8080", map[string]string{"Origin": "http://attacker.example"}, 403},
		{"other local port", local, "127.0.0.1:8080", map[string]string{"Origin": "http://127.0.0.1:3000"}, 403},
		{"sandboxed page", local, "127.0.0.1:8080", map[string]string{"Origin": "null"}, 403},
		{"cross-site subresource", local, "127.0.0.1:8080", map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}, 403},
		{"nginx default proxy_pass (Host of the upstream, XFF)", local, "127.0.0.1:8080", map[string]string{"X-Forwarded-For": "198.51.100.7"}, 401},
		{"proxy that sets only X-Forwarded-Proto", local, "127.0.0.1:8080", map[string]string{"X-Forwarded-Proto": "https"}, 401},
		{"proxy that sets Via", local, "127.0.0.1:8080", map[string]string{"Via": "1.1 proxy"}, 401},
		{"remote", remote, "gateway.example", nil, 401},
	} {
		rec := call(s, http.MethodGet, "/api/v1/streams", tc.remote, tc.host, tc.hdr, "")
		if rec.Code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, rec.Code, rec.Body, tc.want)
		}
		for k := range rec.Header() {
			if strings.HasPrefix(k, "Access-Control-") {
				t.Errorf("%s: open gateway sent CORS header %s", tc.name, k)
			}
		}
	}
	// nginx's default proxy_pass: HTTP/1.0, Host of the upstream, no headers.
	req := httptest.NewRequest(http.MethodGet, "/api/v1/streams", nil)
	req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/1.0", 1, 0
	req.RemoteAddr, req.Host = local, "127.0.0.1:8080"
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	if rec.Code != 401 {
		t.Errorf("HTTP/1.0 request (nginx default proxy_pass): %d", rec.Code)
	}
	rec = call(s, http.MethodOptions, "/whip/r/a", local, "127.0.0.1:8080", map[string]string{"Origin": "http://attacker.example"}, "")
	if rec.Header().Get("Access-Control-Allow-Origin") != "" || rec.Header().Get("Access-Control-Allow-Methods") != "" {
		t.Errorf("open gateway answered a CORS preflight: %v", rec.Header())
	}

	// With tokens required, CORS is what cors-origin says.
	s = newTestServer(t, Params{Auth: AuthParams{Mode: AuthOn, Key: []byte(testSigningKey)}})
	rec = call(s, http.MethodGet, "/api/v1/streams", remote, "gateway.example", map[string]string{"Origin": "https://app.example"}, "")
	if rec.Code != 401 || rec.Header().Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("auth on: %d, CORS %q", rec.Code, rec.Header().Get("Access-Control-Allow-Origin"))
	}
}

// The admin key and tokens with the admin grant work only in the
// Authorization header (URLs end up in logs and histories), recording
// playback included: its player, which cannot send a header, gets a
// playback token of its own from the recordings API (TestPlaybackToken).
func TestAdminKeyNotInURL(t *testing.T) {
	s := newTestServer(t, Params{Auth: AuthParams{Mode: AuthOn, Key: []byte(testSigningKey), AdminKey: testAdminKey}})
	const remote = "198.51.100.7:5000"
	if rec := call(s, http.MethodGet, "/api/v1/streams", remote, "gw", map[string]string{"Authorization": "Bearer " + testAdminKey}, ""); rec.Code != 200 {
		t.Fatalf("admin key in the header: %d", rec.Code)
	}
	if rec := call(s, http.MethodGet, "/api/v1/streams?access_token="+testAdminKey, remote, "gw", nil, ""); rec.Code != 401 {
		t.Fatalf("admin key in the URL: %d", rec.Code)
	}
	tok, err := auth.Mint([]byte(testSigningKey), auth.Request{Identity: "ops", Grants: []string{auth.GrantAdmin}, TTL: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if rec := call(s, http.MethodGet, "/api/v1/streams", remote, "gw", map[string]string{"Authorization": "Bearer " + tok}, ""); rec.Code != 200 {
		t.Fatalf("admin token in the header: %d", rec.Code)
	}
	if rec := call(s, http.MethodGet, "/api/v1/streams?access_token="+tok, remote, "gw", nil, ""); rec.Code != 401 {
		t.Fatalf("admin token in the URL: %d", rec.Code)
	}
	s = newTestServer(t, Params{Auth: AuthParams{Mode: AuthOn, Key: []byte(testSigningKey), AdminKey: testAdminKey}, Recordings: fakeRecordings{}})
	for _, cred := range []string{tok, testAdminKey} {
		if rec := call(s, http.MethodGet, "/recordings/r1/index.m3u8?access_token="+cred, remote, "gw", nil, ""); rec.Code != 401 {
			t.Fatalf("recording playback with an admin credential in the URL: %d %s", rec.Code, rec.Body)
		}
	}
	if rec := call(s, http.MethodGet, "/recordings/r1/index.m3u8", remote, "gw", map[string]string{"Authorization": "Bearer " + tok}, ""); rec.Code != 200 {
		t.Fatalf("recording playback with the admin token in the header: %d %s", rec.Code, rec.Body)
	}
	if rec := call(s, http.MethodGet, "/api/v1/recordings?access_token="+tok, remote, "gw", nil, ""); rec.Code != 401 {
		t.Fatalf("recording list with the admin token in the URL: %d", rec.Code)
	}
}

func TestPagesSendSecurityHeaders(t *testing.T) {
	s := newTestServer(t, Params{})
	rec := call(s, http.MethodGet, "/", "127.0.0.1:5000", "127.0.0.1:8080", nil, "")
	h := rec.Header()
	if rec.Code != 200 || !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") ||
		!strings.Contains(h.Get("Content-Security-Policy"), "script-src 'self'") || h.Get("X-Frame-Options") != "DENY" ||
		h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" {
		t.Fatalf("index page: %d %v", rec.Code, h)
	}
	rec = call(s, http.MethodGet, "/js/app.js", "127.0.0.1:5000", "127.0.0.1:8080", nil, "")
	if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("script: %v", rec.Header())
	}
	// The recordings page is a static page like the others: no inline
	// script, the same policy.
	s = newTestServer(t, Params{Recordings: pageOnlyRecordings{}})
	rec = call(s, http.MethodGet, "/recordings", "127.0.0.1:5000", "127.0.0.1:8080", nil, "")
	if csp := rec.Header().Get("Content-Security-Policy"); rec.Code != 200 || csp != pageCSP ||
		!strings.Contains(rec.Body.String(), `src="/js/recordings.js"`) || strings.Contains(rec.Body.String(), "<script>") {
		t.Fatalf("recordings page: %d %q\n%s", rec.Code, csp, rec.Body)
	}
}

// pageOnlyRecordings turns the recording routes on for tests that only
// fetch the page (its methods are never called).
type pageOnlyRecordings struct{ RecordingsAPI }

// Candidates that name addresses no client owns are dropped; the rest
// are counted against the per-session budget.
func TestCandidatesScreened(t *testing.T) {
	frag := func(addrs ...string) string {
		var b strings.Builder
		b.WriteString("a=ice-ufrag:abcd\r\na=mid:0\r\n")
		for _, a := range addrs {
			b.WriteString("a=candidate:1 1 udp 2130706431 " + a + " 4000 typ host\r\n")
		}
		return b.String()
	}
	s := newTestServer(t, Params{})
	out, n := s.screenCandidates(frag("203.0.113.5", "224.0.0.1", "255.255.255.255", "0.0.0.0", "ff02::1", "::",
		"example.com", "abc.local", "10.0.0.1", "127.0.0.1", "240.1.2.3"))
	if n != 4 || !strings.Contains(out, "203.0.113.5") || !strings.Contains(out, "abc.local") || !strings.Contains(out, "10.0.0.1") ||
		strings.Contains(out, "224.0.0.1") || strings.Contains(out, "255.255.255.255") || strings.Contains(out, "example.com") ||
		!strings.Contains(out, "a=ice-ufrag:abcd") {
		t.Fatalf("kept %d:\n%s", n, out)
	}
	s = newTestServer(t, Params{Limits: Limits{RefusePrivateCandidates: true}})
	if out, n := s.screenCandidates(frag("203.0.113.5", "10.0.0.1", "192.168.1.2", "127.0.0.1", "fe80::1", "fd00::1", "100.64.0.1", "abc.local")); n != 1 {
		t.Fatalf("refusing private: kept %d:\n%s", n, out)
	}
	var b candidateBudget
	sess := &rtc.Session{}
	if err := b.take(sess, 40, 50); err != nil {
		t.Fatal(err)
	}
	if err := b.take(sess, 11, 50); err == nil {
		t.Fatal("51 candidates accepted, limit 50")
	}
	if err := b.take(sess, 10, 50); err != nil {
		t.Fatal(err)
	}
}

// countingWHEP counts offers that reached the endpoint.
type countingWHEP struct{ n atomic.Int64 }

func (e *countingWHEP) Offer(context.Context, string, string, string) (*rtc.Session, error) {
	e.n.Add(1)
	return nil, relay.ErrNotFound
}
func (e *countingWHEP) Session(string, string) (*rtc.Session, error) {
	return nil, rtc.ErrSessionNotFound
}

// Found: an edge asked its parent for a stream for every POST, before
// reading the offer. A body that is no offer must cost nothing.
func TestGarbageOfferCostsNothing(t *testing.T) {
	ep := &countingWHEP{}
	s := newTestServer(t, Params{WHEP: ep, Limits: Limits{ViewsPerMinute: 5}})
	sdp := map[string]string{"Content-Type": "application/sdp"}
	for range 20 {
		if rec := call(s, http.MethodPost, "/whep/r/cam", "127.0.0.1:5000", "127.0.0.1:8080", sdp, "garbage"); rec.Code != 400 {
			t.Fatalf("garbage offer: %d", rec.Code)
		}
	}
	// SDP, but no WebRTC offer (no ICE credentials, no fingerprint).
	noICE := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n"
	if rec := call(s, http.MethodPost, "/whep/r/cam", "127.0.0.1:5000", "127.0.0.1:8080", sdp, noICE); rec.Code != 400 {
		t.Fatalf("offer without ICE credentials: %d", rec.Code)
	}
	if n := ep.n.Load(); n != 0 {
		t.Fatalf("%d garbage offers reached the endpoint", n)
	}
	// Valid offers are rate limited per address.
	codes := map[int]int{}
	for range 8 {
		codes[call(s, http.MethodPost, "/whep/r/cam", "127.0.0.1:5000", "127.0.0.1:8080", sdp, minimalOffer).Code]++
	}
	if codes[404] != 5 || codes[429] != 3 || ep.n.Load() != 5 {
		t.Fatalf("8 offers with views-per-minute 5: %v, %d reached the endpoint", codes, ep.n.Load())
	}
}

// Session IDs are the only secret needed to end someone's session: not
// in logs. The peer address comes from X-Forwarded-For only when the
// proxy is trusted by setting.
func TestLogsHideSessionIDsAndTrustOnlyConfiguredProxies(t *testing.T) {
	var buf testenv.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	s := newTestServer(t, Params{WHEP: &countingWHEP{}, Logger: log})
	const secret = "0123456789abcdef0123456789abcdef"
	xff := map[string]string{"X-Forwarded-For": "203.0.113.9"}
	call(s, http.MethodDelete, "/whep/r/cam/"+secret, "127.0.0.1:5000", "127.0.0.1:8080", xff, "")
	out := buf.String()
	if strings.Contains(out, secret) || !strings.Contains(out, "peer=127.0.0.1") || strings.Contains(out, "203.0.113.9") {
		t.Fatalf("log:\n%s", out)
	}
	buf = testenv.Buffer{}
	s = newTestServer(t, Params{WHEP: &countingWHEP{}, Logger: log, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	call(s, http.MethodDelete, "/whep/r/cam/"+secret, "127.0.0.1:5000", "127.0.0.1:8080", xff, "")
	if out := buf.String(); !strings.Contains(out, "peer=203.0.113.9") {
		t.Fatalf("trusted proxy, log:\n%s", out)
	}
}

// Found: every API error was counted as status="200".
func TestMetricsCountRealStatus(t *testing.T) {
	m := metrics.New(metrics.Source{})
	s := newTestServer(t, Params{Metrics: m})
	call(s, http.MethodGet, "/api/v1/streams", "198.51.100.7:5000", "gw", nil, "")
	call(s, http.MethodGet, "/api/v1/streams/bad.room/x", "127.0.0.1:5000", "127.0.0.1:8080", nil, "")
	rec := call(s, http.MethodGet, "/metrics", "127.0.0.1:5000", "127.0.0.1:8080", nil, "")
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{`route="/api/v1/streams",status="401"`, `route="/api/v1/streams/:room/:name",status="400"`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s:\n%s", want, grepLines(string(body), "http_request_duration_seconds_count"))
		}
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A session that ended before its candidates were counted is forgotten at
// once, without deadlock.
func TestCandidateBudgetOfClosedSession(t *testing.T) {
	var b candidateBudget
	sess := rtc.NewSession("r/a", "127.0.0.1", nil)
	sess.Close()
	done := make(chan error, 1)
	go func() { done <- b.take(sess, 3, 50) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("take on a closed session deadlocked")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.per) != 0 {
		t.Fatalf("closed session still counted: %v", b.per)
	}
}

// Found: per-address limits counted every IPv6 address apart, and a host
// picks any address of its /64 at will: the limits bound nobody on IPv6.
func TestIPv6LimitsCountThe64(t *testing.T) {
	ep := &countingWHEP{}
	s := newTestServer(t, Params{WHEP: ep, Limits: Limits{ViewsPerMinute: 2}, Auth: AuthParams{Mode: AuthOn, Key: []byte(testSigningKey)}})
	tok, err := auth.Mint([]byte(testSigningKey), auth.Request{Room: "r", Identity: "v", Grants: []string{auth.GrantSubscribe}, TTL: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	sdp := map[string]string{"Content-Type": "application/sdp", "Authorization": "Bearer " + tok}
	codes := map[int]int{}
	for i := range 4 {
		remote := "[2001:db8:1:2::" + string(rune('a'+i)) + "]:5000"
		codes[call(s, http.MethodPost, "/whep/r/cam", remote, "127.0.0.1:8080", sdp, minimalOffer).Code]++
	}
	if codes[429] != 2 {
		t.Fatalf("4 offers from one /64 with views-per-minute 2: %v", codes)
	}
	if c := call(s, http.MethodPost, "/whep/r/cam", "[2001:db8:1:3::1]:5000", "127.0.0.1:8080", sdp, minimalOffer).Code; c == 429 {
		t.Fatal("another /64 was limited too")
	}
	if addrlimit.Key("192.0.2.7") != "192.0.2.7" || addrlimit.Key("::ffff:192.0.2.7") != "192.0.2.7" {
		t.Fatal("IPv4 addresses must count one by one")
	}
}
