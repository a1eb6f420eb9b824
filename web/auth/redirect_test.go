package auth

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

// A redirect token (stream claim) lets its holder watch that one stream,
// from a header or a WHEP URL, and nothing else; an ordinary token is not
// accepted in a WHEP URL.
func TestRedirectToken(t *testing.T) {
	p, err := NewPolicy(PolicyConfig{Mode: ModeOn, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Mint(key, Request{Room: "r", Identity: "v", Grants: []string{GrantSubscribe, GrantChat}, Stream: "r/a", TTL: time.Minute}, time.Now()); err == nil {
		t.Fatal("a stream token with more than the subscribe grant was minted")
	}
	if _, err := Mint(key, Request{Room: "r", Identity: "v", Grants: []string{GrantSubscribe}, Stream: "other/a", TTL: time.Minute}, time.Now()); err == nil {
		t.Fatal("a stream token for another room was minted")
	}
	rt, err := Mint(key, Request{Room: "r", Identity: "v", Grants: []string{GrantSubscribe}, Stream: "r/a", TTL: RedirectTTL}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := Mint(key, Request{Room: "r", Identity: "v", Grants: []string{GrantSubscribe}, TTL: time.Hour}, time.Now())
	remote := netip.MustParseAddr("203.0.113.9")
	for _, c := range []struct {
		what  string
		a     Access
		allow bool
	}{
		{"its stream, in the WHEP URL", Access{Action: ActionRead, Protocol: ProtoWHEP, Room: "r", Name: "a", Credential: rt, CredentialInURL: true}, true},
		{"its stream, as a header", Access{Action: ActionRead, Protocol: ProtoWHEP, Room: "r", Name: "a", Credential: rt}, true},
		{"another stream of the room", Access{Action: ActionRead, Protocol: ProtoWHEP, Room: "r", Name: "b", Credential: rt, CredentialInURL: true}, false},
		{"the room's events", Access{Action: ActionRoom, Protocol: ProtoEvents, Room: "r", Credential: rt, CredentialInURL: true}, false},
		{"chat", Access{Action: ActionChat, Protocol: ProtoAPI, Room: "r", Credential: rt}, false},
		{"an ordinary token in a WHEP URL", Access{Action: ActionRead, Protocol: ProtoWHEP, Room: "r", Name: "a", Credential: plain, CredentialInURL: true}, false},
		{"an ordinary token as a header", Access{Action: ActionRead, Protocol: ProtoWHEP, Room: "r", Name: "a", Credential: plain}, true},
	} {
		c.a.Client = remote
		_, err := p.Authorize(c.a)
		if c.allow && err != nil {
			t.Errorf("%s: refused: %v", c.what, err)
		}
		if !c.allow && !errors.Is(err, ErrForbidden) {
			t.Errorf("%s: %v, want forbidden", c.what, err)
		}
	}
}
