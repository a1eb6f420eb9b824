// Package auth issues and checks livegate access tokens: HS256 JWTs signed
// with a server-side key that never reaches a browser. An app backend (or
// `livegate token`) mints a token per user; WHIP, WHEP and the API check it.
package auth

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Grants a token can carry.
const (
	GrantPublish   = "publish"
	GrantSubscribe = "subscribe"
	GrantChat      = "chat"
	GrantAdmin     = "admin"
)

// AllGrants lists the valid grants.
var AllGrants = []string{GrantPublish, GrantSubscribe, GrantChat, GrantAdmin}

// MinKeyLen is the shortest accepted signing key: HS256 needs at least as
// many bytes of secret as its output to be as strong as it can be.
const MinKeyLen = 32

// Errors of token checks. Unauthenticated ones map to 401, the others to 403.
var (
	ErrNoToken      = errors.New("missing bearer token")
	ErrInvalidToken = errors.New("invalid token")
	ErrForbidden    = errors.New("forbidden")
)

// Claims are what a token says about its holder.
type Claims struct {
	Room     string   `json:"room"`
	Identity string   `json:"sub_identity"`
	Name     string   `json:"name,omitempty"`
	Grants   []string `json:"grants"`
	jwt.RegisteredClaims
}

// Has reports whether the token carries grant.
func (c *Claims) Has(grant string) bool { return slices.Contains(c.Grants, grant) }

// Request describes a token to mint.
type Request struct {
	Room     string
	Identity string
	Name     string
	Grants   []string
	TTL      time.Duration
}

// Validate checks a mint request.
func (r Request) Validate() error {
	if r.Room == "" && !slices.Contains(r.Grants, GrantAdmin) {
		return errors.New("room is required")
	}
	if r.Identity == "" {
		return errors.New("identity is required")
	}
	if len(r.Grants) == 0 {
		return errors.New("at least one grant is required")
	}
	for _, g := range r.Grants {
		if !slices.Contains(AllGrants, g) {
			return fmt.Errorf("unknown grant %q (valid: %s)", g, strings.Join(AllGrants, ", "))
		}
	}
	if r.TTL <= 0 || r.TTL > 31*24*time.Hour {
		return errors.New("ttl must be between 1s and 31 days")
	}
	return nil
}

// Mint signs a token.
func Mint(key []byte, r Request, now time.Time) (string, error) {
	if len(key) < MinKeyLen {
		return "", fmt.Errorf("signing key must be at least %d bytes", MinKeyLen)
	}
	if err := r.Validate(); err != nil {
		return "", err
	}
	c := Claims{
		Room: r.Room, Identity: r.Identity, Name: r.Name, Grants: r.Grants,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    "livegate",
			Subject:   r.Identity,
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now.Add(-5 * time.Second)),
			ExpiresAt: jwt.NewNumericDate(now.Add(r.TTL)),
		},
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(key)
}

// Verify parses and checks a token: signature (HS256 only: "none" and
// other algorithms are refused), expiry (required), issuer.
func Verify(key []byte, token string) (*Claims, error) {
	var c Claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return key, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuer("livegate"),
		jwt.WithLeeway(5*time.Second),
	)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	return &c, nil
}

// CanPublish checks that c may publish the stream ROOM/NAME: its room, the
// publish grant, and NAME being the identity or its screen share.
func (c *Claims) CanPublish(room, name string) error {
	switch {
	case !c.Has(GrantPublish):
		return fmt.Errorf("%w: token lacks the publish grant", ErrForbidden)
	case c.Room != room:
		return fmt.Errorf("%w: token is for room %q, not %q", ErrForbidden, c.Room, room)
	case name != c.Identity && name != c.Identity+"-screen":
		return fmt.Errorf("%w: identity %q may publish only %s/%s and %s/%s-screen",
			ErrForbidden, c.Identity, room, c.Identity, room, c.Identity)
	}
	return nil
}

// CanSubscribe checks that c may watch streams of room.
func (c *Claims) CanSubscribe(room string) error {
	switch {
	case !c.Has(GrantSubscribe) && !c.Has(GrantPublish):
		return fmt.Errorf("%w: token lacks the subscribe grant", ErrForbidden)
	case c.Room != room:
		return fmt.Errorf("%w: token is for room %q, not %q", ErrForbidden, c.Room, room)
	}
	return nil
}
