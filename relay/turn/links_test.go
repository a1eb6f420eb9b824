package turn

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // the TURN REST convention
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

func TestCredentials(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	user, pass := Credentials("s3cret", `al"ice:x`, time.Hour, now)
	if user != "1800003600:alicex" {
		t.Fatalf("username %q: want EXPIRY:USER with quote and colon removed", user)
	}
	mac := hmac.New(sha1.New, []byte("s3cret"))
	mac.Write([]byte(user))
	if pass != base64.StdEncoding.EncodeToString(mac.Sum(nil)) {
		t.Fatalf("password is not base64(HMAC-SHA1(secret, username))")
	}
	if u, _ := Credentials("s3cret", "", time.Hour, now); u != "1800003600" {
		t.Fatalf("username without user %q", u)
	}
}

func TestForAndLink(t *testing.T) {
	l := ICEServers{URLs: []string{"stun:{host}:3478", "turn:{host}:3478?transport=tcp"}, Secret: "k", TTL: time.Minute}
	now := time.Unix(1_800_000_000, 0)
	got := l.For("live.example.com", "bob", now)
	if len(got) != 2 || got[0].URL != "stun:live.example.com:3478" || got[0].Username != "" ||
		got[1].URL != "turn:live.example.com:3478?transport=tcp" || got[1].Username != "1800000060:bob" {
		t.Fatalf("For: %+v", got)
	}
	if link := got[1].Link(); !strings.HasPrefix(link, `<turn:live.example.com:3478?transport=tcp>; rel="ice-server"; username="1800000060:bob"; credential="`) ||
		!strings.HasSuffix(link, `"; credential-type="password"`) {
		t.Fatalf("Link %q", link)
	}
	if got[0].Link() != `<stun:live.example.com:3478>; rel="ice-server"` {
		t.Fatalf("STUN link %q", got[0].Link())
	}
	if got := l.For("::1", "", now); got[0].URL != "stun:[::1]:3478" {
		t.Fatalf("IPv6 host: %q", got[0].URL)
	}
	// A Host header with characters no host has drops the {host} entries.
	if got := l.For(`evil>"; rel=x`, "", now); len(got) != 0 {
		t.Fatalf("junk host kept: %+v", got)
	}
	if got := (ICEServers{URLs: []string{"turn:t.example.com"}}).For("h", "u", now); got[0].Username != "" {
		t.Fatalf("credentials without a secret: %+v", got)
	}
}

func TestCheckURL(t *testing.T) {
	for _, u := range []string{"stun:stun.example.com:3478", "turns:t.example.com:443?transport=tcp", "turn:{host}:3478"} {
		if err := CheckURL(u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	for _, u := range []string{"http://x", "turn:", "stun", "turn:a b", `turn:x>"`, "turn:a,b"} {
		if CheckURL(u) == nil {
			t.Errorf("%q accepted", u)
		}
	}
}
