package auth

import (
	"testing"
	"time"
)

// FuzzVerify: arbitrary bearer tokens are rejected with ErrInvalidToken
// unless they are genuinely signed with the key; never a panic.
func FuzzVerify(f *testing.F) {
	good, err := Mint(key, Request{Room: "r", Identity: "a", Grants: []string{GrantPublish}, TTL: time.Hour}, time.Now())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add("eyJhbGciOiJub25lIn0.eyJyb29tIjoiciJ9.")
	f.Add("a.b.c")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := Verify(key, tok)
		if err != nil {
			return
		}
		if c.Issuer != "livegate" || c.ExpiresAt == nil {
			t.Fatalf("accepted claims without issuer or expiry: %+v", c)
		}
	})
}
