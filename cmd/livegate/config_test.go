package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/livegate/livegate/web/auth"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestDefaults(t *testing.T) {
	s, err := load(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	g := s.Gateway
	if g.HTTP != ":8080" || g.WebRTCUDP != ":8189" || g.Grace != 10*time.Second || s.LogFormat != "text" ||
		!reflect.DeepEqual(g.VideoCodecs, []string{"h264", "vp8", "vp9", "av1"}) {
		t.Fatalf("unexpected defaults: %+v %+v", s, g)
	}
}

// Precedence is flag, then YAML, then environment, then default.
func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "livegate.yaml")
	yaml := "http: 127.0.0.1:9000\nwebrtc-udp: 127.0.0.1:9001\nwebrtc-ips: [127.0.0.1, 10.0.0.1]\ngrace: 3s\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	e := env(map[string]string{
		"LIVEGATE_HTTP":       "127.0.0.1:7000", // YAML wins
		"LIVEGATE_LOG_FORMAT": "json",           // only here: env wins over default
		"LIVEGATE_MAX_TRACKS": "6",
		"LIVEGATE_GRACE":      "1s", // YAML wins
	})
	s, err := load([]string{"--config", cfg, "--webrtc-udp", "127.0.0.1:5000"}, e, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	g := s.Gateway
	if g.WebRTCUDP != "127.0.0.1:5000" {
		t.Errorf("flag should win: webrtc-udp = %q", g.WebRTCUDP)
	}
	if g.HTTP != "127.0.0.1:9000" || g.Grace != 3*time.Second {
		t.Errorf("YAML should beat env: http=%q grace=%v", g.HTTP, g.Grace)
	}
	if !reflect.DeepEqual(g.WebRTCIPs, []string{"127.0.0.1", "10.0.0.1"}) {
		t.Errorf("YAML list: %v", g.WebRTCIPs)
	}
	if s.LogFormat != "json" || g.MaxTracks != 6 {
		t.Errorf("env should beat defaults: log-format=%q max-tracks=%d", s.LogFormat, g.MaxTracks)
	}
	// The config file can also come from the environment.
	s, err = load(nil, env(map[string]string{"LIVEGATE_CONFIG": cfg}), io.Discard)
	if err != nil || s.Gateway.HTTP != "127.0.0.1:9000" {
		t.Fatalf("LIVEGATE_CONFIG: %v %q", err, s.Gateway.HTTP)
	}
}

func TestBadSettings(t *testing.T) {
	dir := t.TempDir()
	unknown := filepath.Join(dir, "u.yaml")
	_ = os.WriteFile(unknown, []byte("htpp: :80\n"), 0o600)
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--log-level", "loud"}, nil, "log-level"},
		{[]string{"--log-format", "xml"}, nil, "log-format"},
		{[]string{"--grace", "soon"}, nil, "grace"},
		{[]string{"--video-codecs", "h265"}, nil, "video-codecs"},
		{[]string{"--config", unknown}, nil, `unknown setting "htpp"`},
		{[]string{"--config", filepath.Join(dir, "missing.yaml")}, nil, "config"},
		{nil, map[string]string{"LIVEGATE_MAX_BODY": "lots"}, "LIVEGATE_MAX_BODY"},
		{[]string{"extra"}, nil, "unexpected argument"},
	} {
		_, err := load(tc.args, env(tc.env), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: error %v, want one mentioning %q", tc.args, tc.env, err, tc.want)
		}
	}
}

func TestTokenCommand(t *testing.T) {
	key := "0123456789abcdef0123456789abcdef"
	var out, errb strings.Builder
	code := runToken([]string{"--room", "r1", "--identity", "alice", "--grant", "publish,subscribe", "--ttl", "30m"},
		env(map[string]string{"LIVEGATE_AUTH_KEY": key}), &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	c, err := auth.Verify([]byte(key), strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatal(err)
	}
	if c.Room != "r1" || c.Identity != "alice" || !c.Has(auth.GrantPublish) || !c.Has(auth.GrantSubscribe) {
		t.Fatalf("claims %+v", c)
	}
	if d := time.Until(c.ExpiresAt.Time); d < 29*time.Minute || d > 31*time.Minute {
		t.Fatalf("expires in %v", d)
	}
	if code := runToken([]string{"--room", "r1", "--identity", "a"}, env(nil), io.Discard, io.Discard); code == 0 {
		t.Fatal("token minted without a key")
	}
}

func TestHealthcheck(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	if code := runHealthcheck([]string{addr}, env(nil), io.Discard); code != 0 {
		t.Fatalf("healthy gateway: exit %d", code)
	}
	srv.Close()
	if code := runHealthcheck([]string{addr}, env(nil), io.Discard); code == 0 {
		t.Fatal("stopped gateway reported healthy")
	}
}

// The access and hardening settings reach the gateway's config; bad
// values are refused at load.
func TestAccessSettings(t *testing.T) {
	s, err := load([]string{"--open-hosts", "Dev.Test", "--trusted-proxies", "127.0.0.1,10.0.0.0/8",
		"--auth-previous-keys", "old-key-0123456789abcdef0123456789", "--views-per-minute", "60",
		"--max-event-streams-per-identity", "4", "--refuse-private-candidates"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	g := s.Gateway
	if !reflect.DeepEqual(g.OpenHosts, []string{"dev.test"}) || !reflect.DeepEqual(g.TrustedProxies, []string{"127.0.0.1", "10.0.0.0/8"}) ||
		len(g.AuthPreviousKeys) != 1 || g.Limits.ViewsPerMinute != 60 || g.Limits.EventStreamsPerIdentity != 4 ||
		!g.Limits.RefusePrivateCandidates || g.Limits.CandidatesPerSession != 50 || g.MaxConnsPerIP != 8 {
		t.Fatalf("settings: %+v", g)
	}
	for _, args := range [][]string{{"--views-per-minute", "-1"}, {"--max-ice-candidates", "0"}, {"--rtmp-conns-per-ip", "0"}} {
		if _, err := load(args, env(nil), io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

// keyframe-max-interval defaults to 2 s, 0 turns the cadence off, and a
// value that would ask for a keyframe every few frames is refused.
func TestKeyframeMaxInterval(t *testing.T) {
	s, err := load(nil, env(nil), io.Discard)
	if err != nil || s.Gateway.KeyframeMaxInterval != 2*time.Second {
		t.Fatalf("default: %v, %v; want 2s", s.Gateway.KeyframeMaxInterval, err)
	}
	s, err = load(nil, env(map[string]string{"LIVEGATE_KEYFRAME_MAX_INTERVAL": "0"}), io.Discard)
	if err != nil || s.Gateway.KeyframeMaxInterval != 0 {
		t.Fatalf("0 from the environment: %v, %v; want off", s.Gateway.KeyframeMaxInterval, err)
	}
	for _, bad := range []string{"50ms", "-1s"} {
		if _, err := load([]string{"--keyframe-max-interval", bad}, env(nil), io.Discard); err == nil ||
			!strings.Contains(err.Error(), "keyframe-max-interval") {
			t.Errorf("%s: error %v, want one naming keyframe-max-interval", bad, err)
		}
	}
}

// A former auth-key is kept as written: keys made with base64 may end with
// "/", and a rotation that trimmed it would make every token signed with
// it invalid at once (401) instead of during the overlap.
func TestPreviousKeyKeptAsWritten(t *testing.T) {
	const oldKey = "Zm9vYmFyYmF6cXV4MDEyMzQ1Njc4OWFiY2RlZg+/"
	const newKey = "bmV3LWtleS0wMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OQ=="
	tok, err := auth.Mint([]byte(oldKey), auth.Request{Room: "r", Identity: "alice", Grants: []string{auth.GrantSubscribe}, TTL: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for name, e := range map[string]func(string) string{
		"flag": env(nil),
		"env":  env(map[string]string{"LIVEGATE_AUTH_PREVIOUS_KEYS": " " + oldKey + " "}),
	} {
		t.Run(name, func(t *testing.T) {
			args := []string{"--auth-key", newKey}
			if name == "flag" {
				args = append(args, "--auth-previous-keys", oldKey)
			}
			s, err := load(args, e, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			var prev [][]byte
			for _, k := range s.Gateway.AuthPreviousKeys {
				prev = append(prev, []byte(k))
			}
			p, err := auth.NewPolicy(auth.PolicyConfig{Mode: auth.ModeOn, Key: []byte(s.Gateway.AuthKey), PreviousKeys: prev})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.Authorize(auth.Access{Action: auth.ActionRead, Protocol: auth.ProtoWHEP, Room: "r", Name: "bob", Credential: tok}); err != nil {
				t.Fatalf("token of the previous key %q (loaded as %q) refused: %v", oldKey, s.Gateway.AuthPreviousKeys, err)
			}
		})
	}
}
