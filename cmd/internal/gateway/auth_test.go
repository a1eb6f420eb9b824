package gateway

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/livegate/livegate/relay/rtcclient"
	"github.com/livegate/livegate/web/auth"
)

const testKey = "test-signing-key-0123456789abcdef"

func token(t *testing.T, room, identity string, ttl time.Duration, grants ...string) string {
	t.Helper()
	tok, err := auth.Mint([]byte(testKey), auth.Request{Room: room, Identity: identity, Grants: grants, TTL: ttl}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func statusOf(err error) int {
	var he *rtcclient.HTTPError
	if errors.As(err, &he) {
		return he.Status
	}
	if err == nil {
		return http.StatusCreated
	}
	return -1
}

func TestTokensGuardPublishAndPlay(t *testing.T) {
	g := startGateway(t, func(c *Config) { c.AuthMode = "on"; c.AuthKey = testKey; c.AdminKey = "admin-secret-0123456789" })
	expired, _ := auth.Mint([]byte(testKey), auth.Request{Room: "r1", Identity: "alice", Grants: []string{"publish"}, TTL: time.Minute}, time.Now().Add(-time.Hour))
	forged, _ := auth.Mint([]byte("some-other-key-0123456789abcdefgh"), auth.Request{Room: "r1", Identity: "alice", Grants: []string{"publish"}, TTL: time.Hour}, time.Now())
	for _, tc := range []struct {
		name, path, tok string
		want            int
	}{
		{"no token", "r1/alice", "", 401},
		{"expired", "r1/alice", expired, 401},
		{"bad signature", "r1/alice", forged, 401},
		{"wrong room", "r2/alice", token(t, "r1", "alice", time.Hour, "publish"), 403},
		{"someone else's name", "r1/bob", token(t, "r1", "alice", time.Hour, "publish"), 403},
		{"missing grant", "r1/alice", token(t, "r1", "alice", time.Hour, "subscribe"), 403},
		{"valid", "r1/alice", token(t, "r1", "alice", time.Hour, "publish"), 201},
		{"screen share", "r1/alice-screen", token(t, "r1", "alice", time.Hour, "publish"), 201},
	} {
		if got := g.publishStatus(t, tc.path, tc.tok); got != tc.want {
			t.Errorf("publish %s (%s): status %d, want %d", tc.path, tc.name, got, tc.want)
		}
	}

	view := func(tok string) error {
		o := clientOpts(t)
		o.Token = tok
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := rtcclient.Connect(ctx, g.base+"/whep/r1/alice", o, recvonlySetup)
		if err == nil {
			_ = s.Close(context.Background())
		}
		return err
	}
	if got := statusOf(view("")); got != 401 {
		t.Errorf("view without token: %d", got)
	}
	if got := statusOf(view(token(t, "r2", "v", time.Hour, "subscribe"))); got != 403 {
		t.Errorf("view with a token for another room: %d", got)
	}
	if got := statusOf(view(token(t, "r1", "v", time.Hour, "subscribe"))); got != 201 {
		t.Errorf("view with a subscribe token: %d", got)
	}

	// App backends mint tokens with the admin key; others cannot.
	mint := func(key string) int {
		resp, _ := fetch(t, http.MethodPost, g.base+"/api/v1/tokens", `{"room":"r1","identity":"carol","grants":["publish"],"ttl":"10m"}`,
			"Content-Type", "application/json", "Authorization", bearer(key))
		return resp.StatusCode
	}
	if got := mint("admin-secret-0123456789"); got != 201 {
		t.Errorf("mint with the admin key: %d", got)
	}
	if got := mint(token(t, "r1", "alice", time.Hour, "publish")); got != 403 {
		t.Errorf("mint with a publisher token: %d", got)
	}
	if got := mint("wrong"); got != 401 {
		t.Errorf("mint with a wrong key: %d", got)
	}
}

// Without a key, only clients on this machine may publish; a request that
// came through a proxy is not local.
func TestNoKeyIsLoopbackOnly(t *testing.T) {
	g := startGateway(t, nil)
	resp, _ := fetch(t, http.MethodPost, g.base+"/whip/r1/alice", "v=0\r\n", "Content-Type", "application/sdp", "X-Forwarded-For", "198.51.100.7")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("proxied request without token: %d, want 401", resp.StatusCode)
	}
}

func TestAuthOffRefusedOffLoopback(t *testing.T) {
	_, err := New(Config{HTTP: "0.0.0.0:0", WebRTCUDP: "127.0.0.1:0", AuthMode: "off"}, quietLog())
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("auth off on all interfaces: %v", err)
	}
}

func recvonlySetup(pc *webrtc.PeerConnection) error {
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			return err
		}
	}
	return nil
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// Per-address limits answer 429 before any WebRTC work is done.
func TestPerAddressLimits(t *testing.T) {
	g := startGateway(t, func(c *Config) { c.Limits.PublishesPerMinute = 2; c.Limits.SessionsPerIP = 3 })
	publish := func(path string) int { return g.publishStatus(t, path, "") }
	if a, b, c := publish("lim/a"), publish("lim/b"), publish("lim/c"); a != 201 || b != 201 || c != 429 {
		t.Fatalf("publishes: %d %d %d, want 201 201 429", a, b, c)
	}
	view := func() int {
		o := clientOpts(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := rtcclient.Connect(ctx, g.base+"/whep/lim/a", o, recvonlySetup)
		if err == nil {
			t.Cleanup(func() { _ = s.Close(context.Background()) })
		}
		return statusOf(err)
	}
	if a, b := view(), view(); a != 201 || b != 429 {
		t.Fatalf("sessions: %d %d, want 201 then 429 (limit 3 with 2 publishers)", a, b)
	}
}
