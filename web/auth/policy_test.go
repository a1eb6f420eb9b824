package auth

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	adminKey   = "admin-key-0123456789"
	clusterKey = "cluster-key-0123456789"
)

var oldKey = []byte("the-previous-signing-key-0123456789")

// op is one protocol and action on stream r/alice (room r).
type op struct {
	proto  Protocol
	action Action
}

// ops is every action each protocol can ask for.
var ops = []op{
	{ProtoWHIP, ActionPublish}, {ProtoRTMP, ActionPublish}, {ProtoRTSP, ActionPublish},
	{ProtoWHEP, ActionRead}, {ProtoHLS, ActionRead}, {ProtoRTSP, ActionRead}, {ProtoAPI, ActionRead},
	{ProtoAPI, ActionRoom}, {ProtoEvents, ActionRoom}, {ProtoAPI, ActionChat},
	{ProtoAPI, ActionAdmin}, {ProtoAPI, ActionWhoami}, {ProtoAPI, ActionPlayback},
}

func (o op) String() string { return string(o.proto) + "/" + string(o.action) }

// urlOnly: RTMP and RTSP clients can send a credential only in the URL.
func (o op) urlOnly() bool { return o.proto == ProtoRTMP || o.proto == ProtoRTSP }

// cred is a credential as a client presents it.
type cred struct {
	name  string
	value string
	inURL bool
	// may lists what it grants where tokens are required: "publish",
	// "read", "room", "chat", "admin", "whoami", "playback" (of recording
	// rec1), and "whep" for reads over WHEP and the API only. Empty:
	// nothing (401).
	may []string
	// forbidden: refused with 403 (a valid credential lacking the right);
	// otherwise a credential that grants nothing is refused with 401.
	forbidden bool
}

func credentials(t *testing.T) []cred {
	tok := func(k []byte, r Request, at time.Time) string {
		t.Helper()
		s, err := Mint(k, r, at)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	now := time.Now()
	req := func(id string, grants ...string) Request {
		return Request{Room: "r", Identity: id, Grants: grants, TTL: time.Hour}
	}
	screen := forgeScreenToken(t)
	playback := func(id string) string {
		t.Helper()
		s, err := MintPlayback(key, id, time.Hour, now)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	return []cred{
		{name: "none"},
		{name: "publisher", value: tok(key, req("alice", GrantPublish), now), may: []string{"publish", "read", "room", "whoami"}, forbidden: true},
		{name: "publisher of the previous key", value: tok(oldKey, req("alice", GrantPublish), now), may: []string{"publish", "read", "room", "whoami"}, forbidden: true},
		{name: "viewer", value: tok(key, req("bob", GrantSubscribe), now), may: []string{"read", "room", "whoami"}, forbidden: true},
		{name: "chatter", value: tok(key, req("carol", GrantChat), now), may: []string{"chat", "whoami"}, forbidden: true},
		{name: "other room", value: tok(key, Request{Room: "x", Identity: "alice", Grants: AllGrants[:3], TTL: time.Hour}, now), may: []string{"whoami"}, forbidden: true},
		{name: "admin grant", value: tok(key, Request{Identity: "ops", Grants: []string{GrantAdmin}, TTL: time.Hour}, now), may: []string{"room", "admin", "whoami", "playback"}, forbidden: true},
		{name: "admin grant in URL", value: tok(key, Request{Identity: "ops", Grants: []string{GrantAdmin}, TTL: time.Hour}, now), inURL: true},
		{name: "admin and publish grants in URL", value: tok(key, Request{Room: "r", Identity: "alice", Grants: []string{GrantAdmin, GrantPublish}, TTL: time.Hour}, now), inURL: true},
		{name: "identity with the screen suffix", value: screen, may: []string{"read", "room", "whoami"}, forbidden: true},
		{name: "admin key", value: adminKey, may: []string{"room", "admin", "whoami", "playback"}, forbidden: true},
		// Recording playback URLs carry a playback token: that recording
		// only, nothing else, in the URL or the header.
		{name: "playback token in URL", value: playback("rec1"), inURL: true, may: []string{"playback"}, forbidden: true},
		{name: "playback token", value: playback("rec1"), may: []string{"playback"}, forbidden: true},
		{name: "playback token of another recording in URL", value: playback("rec2"), inURL: true, forbidden: true},
		{name: "expired playback token in URL", value: playback2(t, "rec1", now.Add(-2*time.Hour)), inURL: true},
		{name: "admin key in URL", value: adminKey, inURL: true},
		{name: "cluster key", value: clusterKey, may: []string{"whep", "whoami"}, forbidden: true},
		{name: "cluster key in URL", value: clusterKey, inURL: true},
		{name: "expired", value: tok(key, req("alice", GrantPublish), now.Add(-2*time.Hour))},
		{name: "forged", value: tok([]byte("some-other-key-0123456789abcdefgh"), req("alice", GrantPublish), now)},
		{name: "revoked key", value: tok([]byte("a-revoked-signing-key-0123456789ab"), req("alice", GrantPublish), now)},
		{name: "garbage", value: "not-a-token"},
	}
}

// playback2 is a playback token issued at a given time.
func playback2(t *testing.T, id string, at time.Time) string {
	t.Helper()
	s, err := MintPlayback(key, id, time.Hour, at)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// forgeScreenToken signs a token for identity alice-screen as an app
// backend that predates the rule would have: Mint refuses it now.
func forgeScreenToken(t *testing.T) string {
	if _, err := Mint(key, Request{Room: "r", Identity: "alice-screen", Grants: []string{GrantPublish}, TTL: time.Hour}, time.Now()); err == nil {
		t.Fatal("minted a token for an identity with the screen suffix")
	}
	s, err := mintUnchecked(key, Request{Room: "r", Identity: "alice-screen", Grants: []string{GrantPublish}, TTL: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (c cred) grants(o op, name string) bool {
	for _, m := range c.may {
		switch {
		case m == "whep" && o.action == ActionRead && (o.proto == ProtoWHEP || o.proto == ProtoAPI):
			return true
		case m == string(o.action):
			if o.action == ActionPublish && name != "alice" {
				return false
			}
			return true
		}
	}
	return false
}

// client is where a request comes from.
type client struct {
	name        string
	addr        string
	host        string
	forwarded   bool
	crossOrigin bool
}

var clients = []client{
	{name: "local", addr: "127.0.0.1", host: "127.0.0.1"},
	{name: "local via localhost", addr: "::1", host: "localhost"},
	{name: "local, DNS-rebound Host", addr: "127.0.0.1", host: "attacker.example"},
	{name: "local, page of another origin", addr: "127.0.0.1", host: "127.0.0.1", crossOrigin: true},
	{name: "local proxy", addr: "127.0.0.1", host: "127.0.0.1", forwarded: true},
	{name: "remote", addr: "198.51.100.7", host: "gateway.example"},
}

type mode struct {
	name string
	cfg  PolicyConfig
}

func modes() []mode {
	keys := PolicyConfig{AdminKey: adminKey, ClusterKey: clusterKey}
	with := func(m Mode, k []byte) PolicyConfig {
		c := keys
		c.Mode, c.Key = m, k
		if k != nil {
			c.PreviousKeys = [][]byte{oldKey}
		}
		return c
	}
	return []mode{
		{"auto without key", with(ModeAuto, nil)},
		{"auto with key", with(ModeAuto, key)},
		{"on", with(ModeOn, key)},
		{"off", with(ModeOff, nil)},
	}
}

// want is the expected answer: "ok", "401" or "403".
func want(m mode, cl client, c cred, o op, name string) string {
	open := m.cfg.Mode == ModeOff || (m.cfg.Mode == ModeAuto && m.cfg.Key == nil)
	local := !cl.forwarded && (cl.addr == "127.0.0.1" || cl.addr == "::1")
	if o.urlOnly() && c.value != "" && !c.inURL {
		c.inURL = true // the same credential, as RTMP and RTSP carry it
		switch c.name {
		case "admin key", "cluster key":
			c.may, c.forbidden = nil, false
		}
	}
	keyCred := (c.value == adminKey || c.value == clusterKey) && !c.inURL
	// The admin and cluster keys are checked first, in every mode.
	if keyCred && c.grants(o, name) {
		return "ok"
	}
	if c.inURL && (c.value == adminKey || c.value == clusterKey) {
		return "401"
	}
	if open {
		httpLike := !o.urlOnly()
		switch {
		case local && httpLike && cl.host == "attacker.example":
			return "403"
		case local && httpLike && cl.crossOrigin:
			return "403"
		case local:
			return "ok"
		case m.cfg.Mode == ModeOff:
			return "403"
		}
		return "401" // no key: tokens cannot be checked
	}
	// Tokens with the admin grant, like the keys, never in a URL.
	if c.inURL && strings.HasPrefix(c.name, "admin ") && c.value != adminKey {
		return "401"
	}
	switch {
	case c.value == "":
		return "401"
	case c.grants(o, name):
		return "ok"
	case c.forbidden:
		return "403"
	}
	return "401"
}

func outcome(p *Policy, err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrNoToken), errors.Is(err, ErrInvalidToken):
		return "401"
	case errors.Is(err, ErrNotLocal) && p.Mode() != ModeOff:
		return "401"
	case errors.Is(err, ErrNotLocal), errors.Is(err, ErrHostNotAllowed), errors.Is(err, ErrForbidden):
		return "403"
	}
	return "unexpected error " + err.Error()
}

// TestPolicyTable asks every mode x client x credential x protocol and
// action, on the holder's own stream and on someone else's.
func TestPolicyTable(t *testing.T) {
	creds := credentials(t)
	n := 0
	for _, m := range modes() {
		p, err := NewPolicy(m.cfg)
		if err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
		for _, cl := range clients {
			for _, c := range creds {
				for _, o := range ops {
					for _, name := range []string{"alice", "alice-screen", "bob"} {
						inURL := c.inURL || (o.urlOnly() && c.value != "")
						a := Access{Action: o.action, Protocol: o.proto, Room: "r", Name: name,
							Credential: c.value, CredentialInURL: inURL, Client: netip.MustParseAddr(cl.addr), Forwarded: cl.forwarded}
						if o.action == ActionPlayback {
							a.Recording = "rec1"
						}
						if !o.urlOnly() {
							a.Host, a.CrossOrigin = cl.host, cl.crossOrigin
						}
						if name == "alice-screen" && strings.HasPrefix(c.name, "publisher") && o.action == ActionPublish {
							// The owner publishes its screen share.
							if got := outcome(p, errOf(p.Authorize(a))); got != want(m, cl, c, o, "alice") {
								t.Errorf("%s | %s | %s | %s %s: %s, want %s", m.name, cl.name, c.name, o, name, got, want(m, cl, c, o, "alice"))
							}
							n++
							continue
						}
						got := outcome(p, errOf(p.Authorize(a)))
						if w := want(m, cl, c, o, name); got != w {
							t.Errorf("%s | %s | %s | %s %s: %s, want %s", m.name, cl.name, c.name, o, name, got, w)
						}
						n++
					}
				}
			}
		}
	}
	t.Logf("%d access questions answered as specified", n)
}

func errOf(_ Decision, err error) error { return err }

// The decision says who the client is, for handlers that show it.
func TestPolicyDecision(t *testing.T) {
	p, err := NewPolicy(PolicyConfig{Mode: ModeOn, Key: key, AdminKey: adminKey, ClusterKey: clusterKey})
	if err != nil {
		t.Fatal(err)
	}
	lo := netip.MustParseAddr("127.0.0.1")
	d, err := p.Authorize(Access{Action: ActionRead, Protocol: ProtoWHEP, Room: "r", Name: "a", Credential: clusterKey, Client: lo})
	if err != nil || !d.Relay || d.Admin || d.Open {
		t.Fatalf("cluster key: %+v %v", d, err)
	}
	tok, _ := Mint(key, Request{Room: "r", Identity: "alice", Name: "Alice", Grants: []string{GrantPublish}, TTL: time.Hour}, time.Now())
	d, err = p.Authorize(Access{Action: ActionPublish, Protocol: ProtoWHIP, Room: "r", Name: "alice", Credential: tok, Client: lo})
	if err != nil || d.Claims == nil || d.Claims.Name != "Alice" || d.Open {
		t.Fatalf("token: %+v %v", d, err)
	}
	// A protocol cannot ask for what it does not do.
	if _, err := p.Authorize(Access{Action: ActionPublish, Protocol: ProtoWHEP, Room: "r", Name: "alice", Credential: tok, Client: lo}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("publish over WHEP: %v", err)
	}
	if _, err := p.Authorize(Access{Action: ActionPublish, Protocol: ProtoWHIP, Room: "r/../x", Name: "alice", Credential: tok, Client: lo}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("bad room: %v", err)
	}
}

// Bad configurations are refused at start with every problem named.
func TestPolicyConfigValidated(t *testing.T) {
	for _, tc := range []struct {
		cfg  PolicyConfig
		want string
	}{
		{PolicyConfig{Mode: "maybe"}, "not auto, on or off"},
		{PolicyConfig{Mode: ModeOn}, "needs an auth-key"},
		{PolicyConfig{Key: []byte("short")}, "auth-key must be at least 32"},
		{PolicyConfig{Key: key, AdminKey: "admin"}, "admin-key must be at least 16"},
		{PolicyConfig{Key: key, ClusterKey: "ck"}, "cluster-key must be at least 16"},
		{PolicyConfig{Key: key, AdminKey: adminKey, ClusterKey: adminKey}, "must differ"},
		{PolicyConfig{Key: key, AdminKey: string(key)}, "differ from auth-key"},
		{PolicyConfig{Key: key, PreviousKeys: [][]byte{key}}, "is the current auth-key"},
		{PolicyConfig{PreviousKeys: [][]byte{oldKey}}, "needs an auth-key"},
		{PolicyConfig{OpenHosts: []string{"*"}}, "not a host name"},
		{PolicyConfig{OpenHosts: []string{"dev.example:8080"}}, "not a host name"},
	} {
		if _, err := NewPolicy(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
	p, err := NewPolicy(PolicyConfig{OpenHosts: []string{"Dev.Example."}})
	if err != nil {
		t.Fatal(err)
	}
	lo := netip.MustParseAddr("127.0.0.1")
	if _, err := p.Authorize(Access{Action: ActionAdmin, Protocol: ProtoAPI, Client: lo, Host: "dev.example"}); err != nil {
		t.Fatalf("allow-listed host: %v", err)
	}
	if _, err := p.Authorize(Access{Action: ActionAdmin, Protocol: ProtoAPI, Client: lo, Host: "other.example"}); !errors.Is(err, ErrHostNotAllowed) {
		t.Fatalf("other host: %v", err)
	}
}

// With auth off, a listener beyond loopback is refused; otherwise any
// address is fine (remote clients need tokens).
func TestPolicyListeners(t *testing.T) {
	off, _ := NewPolicy(PolicyConfig{Mode: ModeOff})
	auto, _ := NewPolicy(PolicyConfig{})
	for _, tc := range []struct {
		p    *Policy
		addr net.Addr
		ok   bool
	}{
		{off, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1935}, true},
		{off, &net.TCPAddr{IP: net.IPv6loopback, Port: 1935}, true},
		{off, &net.TCPAddr{IP: net.IPv4zero, Port: 1935}, false},
		{off, &net.TCPAddr{IP: net.IPv6unspecified, Port: 8554}, false},
		{off, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 8080}, false},
		{auto, &net.TCPAddr{IP: net.IPv4zero, Port: 1935}, true},
	} {
		if err := tc.p.CheckListener("rtmp", tc.addr); (err == nil) != tc.ok {
			t.Errorf("%s %v: %v", tc.p.Mode(), tc.addr, err)
		}
	}
}

// Rotation: tokens of the previous key keep working until it is removed;
// then they are refused, while new tokens (with the current key) work.
func TestKeyRotationRevokes(t *testing.T) {
	old, _ := Mint(oldKey, Request{Room: "r", Identity: "alice", Grants: []string{GrantPublish}, TTL: time.Hour}, time.Now())
	ask := func(p *Policy, tok string) error {
		_, err := p.Authorize(Access{Action: ActionPublish, Protocol: ProtoWHIP, Room: "r", Name: "alice", Credential: tok,
			Client: netip.MustParseAddr("198.51.100.7")})
		return err
	}
	during, _ := NewPolicy(PolicyConfig{Mode: ModeOn, Key: key, PreviousKeys: [][]byte{oldKey}})
	after, _ := NewPolicy(PolicyConfig{Mode: ModeOn, Key: key})
	if err := ask(during, old); err != nil {
		t.Fatalf("previous key during rotation: %v", err)
	}
	if err := ask(after, old); !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("previous key after rotation: %v", err)
	}
	cur, _ := Mint(key, Request{Room: "r", Identity: "alice", Grants: []string{GrantPublish}, TTL: time.Hour}, time.Now())
	if err := ask(after, cur); err != nil {
		t.Fatal(err)
	}
}

// mintUnchecked signs r without validating it.
func mintUnchecked(k []byte, r Request, now time.Time) (string, error) {
	c := Claims{Room: r.Room, Identity: r.Identity, Grants: r.Grants, RegisteredClaims: jwt.RegisteredClaims{
		Issuer: "livegate", ExpiresAt: jwt.NewNumericDate(now.Add(r.TTL))}}
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
	t.Header["kid"] = KeyID(k)
	return t.SignedString(k)
}
