package auth

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var key = []byte("0123456789abcdef0123456789abcdef")

func mint(t *testing.T, r Request) string {
	t.Helper()
	tok, err := Mint(key, r, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestMintVerify(t *testing.T) {
	tok := mint(t, Request{Room: "r1", Identity: "alice", Name: "Alice", Grants: []string{GrantPublish, GrantChat}, TTL: time.Hour})
	c, err := Verify(key, tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.Room != "r1" || c.Identity != "alice" || c.Name != "Alice" || !c.Has(GrantPublish) || c.Has(GrantAdmin) {
		t.Fatalf("claims %+v", c)
	}
	if err := c.CanPublish("r1", "alice"); err != nil {
		t.Fatal(err)
	}
	if err := c.CanPublish("r1", "alice-screen"); err != nil {
		t.Fatal(err)
	}
}

func TestRejected(t *testing.T) {
	good := Request{Room: "r1", Identity: "alice", Grants: []string{GrantPublish}, TTL: time.Hour}
	expired, err := Mint(key, Request{Room: "r1", Identity: "alice", Grants: []string{GrantPublish}, TTL: time.Minute}, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _ := Mint([]byte("another-key-another-key-another-k"), good, time.Now())
	// The same claims signed with HS512, and unsigned ("none").
	c := Claims{Room: "r1", Identity: "alice", Grants: []string{GrantPublish}, RegisteredClaims: jwt.RegisteredClaims{
		Issuer: "livegate", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}}
	hs512, _ := jwt.NewWithClaims(jwt.SigningMethodHS512, c).SignedString(key)
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, c).SignedString(jwt.UnsafeAllowNoneSignatureType)
	noExp := c
	noExp.ExpiresAt = nil
	noExpTok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, noExp).SignedString(key)
	tampered := mint(t, good)
	parts := strings.Split(tampered, ".")
	parts[1] = parts[1][:len(parts[1])-2] + "AA"
	tampered = strings.Join(parts, ".")

	for name, tok := range map[string]string{
		"expired": expired, "bad signature": otherKey, "wrong algorithm": hs512, "alg none": none,
		"no expiry": noExpTok, "tampered": tampered, "garbage": "abc.def.ghi", "empty": "",
	} {
		if _, err := Verify(key, tok); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: err %v, want ErrInvalidToken", name, err)
		}
	}

	c2, _ := Verify(key, mint(t, good))
	for name, err := range map[string]error{
		"wrong room":          c2.CanPublish("r2", "alice"),
		"someone else":        c2.CanPublish("r1", "bob"),
		"missing grant":       mustClaims(t, Request{Room: "r1", Identity: "alice", Grants: []string{GrantSubscribe}, TTL: time.Hour}).CanPublish("r1", "alice"),
		"subscribe elsewhere": c2.CanSubscribe("r2"),
		"chat only":           mustClaims(t, Request{Room: "r1", Identity: "v", Grants: []string{GrantChat}, TTL: time.Hour}).CanSubscribe("r1"),
	} {
		if !errors.Is(err, ErrForbidden) {
			t.Errorf("%s: err %v, want ErrForbidden", name, err)
		}
	}
}

func mustClaims(t *testing.T, r Request) *Claims {
	c, err := Verify(key, mint(t, r))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestMintValidation(t *testing.T) {
	for _, r := range []Request{
		{Identity: "a", Grants: []string{GrantPublish}, TTL: time.Hour},     // no room
		{Room: "r", Grants: []string{GrantPublish}, TTL: time.Hour},         // no identity
		{Room: "r", Identity: "a", TTL: time.Hour},                          // no grants
		{Room: "r", Identity: "a", Grants: []string{"fly"}, TTL: time.Hour}, // unknown grant
		{Room: "r", Identity: "a", Grants: []string{GrantPublish}},          // no ttl
		{Room: "r", Identity: "a", Grants: []string{GrantPublish}, TTL: 40 * 24 * time.Hour},
	} {
		if _, err := Mint(key, r, time.Now()); err == nil {
			t.Errorf("Mint(%+v) accepted", r)
		}
	}
	if _, err := Mint([]byte("short"), Request{Room: "r", Identity: "a", Grants: []string{GrantPublish}, TTL: time.Hour}, time.Now()); err == nil {
		t.Error("short key accepted")
	}
}
