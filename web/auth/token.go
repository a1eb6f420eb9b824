// Package auth issues and checks livegate access tokens: HS256 JWTs signed
// with a server-side key that never reaches a browser. An app backend (or
// `livegate token`) mints a token per user; WHIP, WHEP and the API check it.
package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
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
	// Stream, if set, limits the token to watching that one stream
	// (ROOM/NAME): a redirect token (see RedirectTTL).
	Stream string `json:"stream,omitempty"`
	// Recording, if set, limits the token to playing back that one
	// recording: a playback token (see MintPlayback). It grants nothing
	// else.
	Recording string `json:"recording,omitempty"`
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
	// Stream limits the token to watching ROOM/NAME (grant subscribe only).
	Stream string
}

// RedirectTTL is the life of a redirect token: a node that sends a viewer
// to another edge (307) puts one in the Location, because browsers drop
// the Authorization header on a redirect to another origin. The viewer
// uses it at once; nobody should be able to reuse a leaked one for long.
const RedirectTTL = time.Minute

// ScreenSuffix names a host's screen share: identity alice publishes
// ROOM/alice and ROOM/alice-screen. No identity may end with it, or its
// holder could take someone else's screen share name.
const ScreenSuffix = "-screen"

// Validate checks a mint request.
func (r Request) Validate() error {
	if r.Room == "" && !slices.Contains(r.Grants, GrantAdmin) {
		return errors.New("room is required")
	}
	if r.Identity == "" {
		return errors.New("identity is required")
	}
	if strings.HasSuffix(r.Identity, ScreenSuffix) {
		return fmt.Errorf("identity %q may not end with %q: that name is its owner's screen share", r.Identity, ScreenSuffix)
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
	if r.Stream != "" {
		room, _, ok := strings.Cut(r.Stream, "/")
		if !ok || room != r.Room || !slices.Equal(r.Grants, []string{GrantSubscribe}) {
			return errors.New("a stream token names a stream of its room and has the subscribe grant only")
		}
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
		Room: r.Room, Identity: r.Identity, Name: r.Name, Grants: r.Grants, Stream: r.Stream,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    "livegate",
			Subject:   r.Identity,
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now.Add(-5 * time.Second)),
			ExpiresAt: jwt.NewNumericDate(now.Add(r.TTL)),
		},
	}
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
	// The key ID lets a gateway verify tokens of several keys during a
	// rotation, and refuse (revoke) every token of a key it dropped.
	t.Header["kid"] = KeyID(key)
	return t.SignedString(key)
}

// MintPlayback signs a playback token: it lets the holder fetch recording
// id's playlist and segments (read-only) until ttl has passed, and nothing
// else. The recordings API hands it out in playback URLs, because a
// browser's media player cannot send an Authorization header, and a
// long-lived admin credential must never sit in a URL.
func MintPlayback(key []byte, id string, ttl time.Duration, now time.Time) (string, error) {
	if len(key) < MinKeyLen {
		return "", fmt.Errorf("signing key must be at least %d bytes", MinKeyLen)
	}
	if id == "" || ttl <= 0 {
		return "", errors.New("a playback token needs a recording ID and a positive lifetime")
	}
	c := Claims{
		Recording: id,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    "livegate",
			Subject:   "recording:" + id,
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now.Add(-5 * time.Second)),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
	}
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
	t.Header["kid"] = KeyID(key)
	return t.SignedString(key)
}

// KeyID names a signing key in tokens without revealing it: the first 8
// bytes of a SHA-256 over a fixed label and the key, in hex.
func KeyID(key []byte) string {
	h := sha256.New()
	h.Write([]byte("livegate key id\x00"))
	h.Write(key)
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// Verify parses and checks a token: signature (HS256 only: "none" and
// other algorithms are refused), expiry (required), issuer.
func Verify(key []byte, token string) (*Claims, error) {
	return verify([]verifyKey{{KeyID(key), key}}, token)
}

// verify checks token against keys (the current one first). A token with
// a key ID must name one of them; one without (minted before key IDs) is
// checked against the current key only.
func verify(keys []verifyKey, token string) (*Claims, error) {
	var c Claims
	pick := func(t *jwt.Token) (any, error) {
		kid, has := t.Header["kid"]
		if !has {
			return keys[0].key, nil
		}
		id, _ := kid.(string)
		for _, k := range keys {
			if subtle.ConstantTimeCompare([]byte(id), []byte(k.id)) == 1 {
				return k.key, nil
			}
		}
		return nil, errors.New("signed with a key this gateway no longer accepts (revoked by rotation)")
	}
	_, err := jwt.ParseWithClaims(token, &c, pick,
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
	case c.Identity == "" || strings.HasSuffix(c.Identity, ScreenSuffix):
		return fmt.Errorf("%w: identity %q may not publish: identities ending with %q are reserved for screen shares", ErrForbidden, c.Identity, ScreenSuffix)
	case name != c.Identity && name != c.Identity+ScreenSuffix:
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

// CanChat checks that c may post to room's chat.
func (c *Claims) CanChat(room string) error {
	switch {
	case !c.Has(GrantChat):
		return fmt.Errorf("%w: token lacks the chat grant", ErrForbidden)
	case c.Room != room:
		return fmt.Errorf("%w: token is for room %q, not %q", ErrForbidden, c.Room, room)
	}
	return nil
}
