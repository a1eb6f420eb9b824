package web

import (
	"crypto/subtle"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/livegate/livegate/web/auth"
)

// Auth modes.
const (
	// AuthAuto requires tokens, except from clients on this machine while
	// no signing key is configured: the zero-setup development default.
	AuthAuto = "auto"
	// AuthOn always requires tokens.
	AuthOn = "on"
	// AuthOff requires nothing; refused unless HTTP listens on loopback.
	AuthOff = "off"
)

// AuthParams configures access control.
type AuthParams struct {
	Mode string
	// Key signs and verifies tokens (HS256). Never sent to browsers.
	Key []byte
	// AdminKey, presented as a bearer token, allows minting tokens and
	// admin calls from an app backend.
	AdminKey string
	// ClusterKey, presented as a bearer token, lets relay edges watch any
	// stream.
	ClusterKey string
}

// open reports whether this request needs no token: auth off, or auto
// mode without a key and a client on this machine. A request that came
// through a proxy (forwarding headers) is never treated as local.
func (s *Server) open(c echo.Context) bool {
	switch s.p.Auth.Mode {
	case AuthOff:
		return true
	case AuthOn:
		return false
	}
	return len(s.p.Auth.Key) == 0 && localClient(c.Request())
}

func localClient(r *http.Request) bool {
	for _, h := range []string{"X-Forwarded-For", "X-Real-Ip", "Forwarded"} {
		if r.Header.Get(h) != "" {
			return false
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// bearer returns the request's token: the Authorization header, or for
// GET requests the access_token query parameter (EventSource and WebSocket
// in browsers cannot set headers).
func bearer(r *http.Request) string {
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	if r.Method == http.MethodGet {
		return r.URL.Query().Get("access_token")
	}
	return ""
}

// claims authenticates the request. It returns nil claims and no error
// for requests that need no token.
func (s *Server) claims(c echo.Context) (*auth.Claims, error) {
	if cl, ok := c.Get("claims").(*auth.Claims); ok {
		return cl, nil
	}
	if s.open(c) {
		return nil, nil
	}
	tok := bearer(c.Request())
	if tok == "" {
		c.Response().Header().Set("WWW-Authenticate", `Bearer realm="livegate"`)
		return nil, newError(http.StatusUnauthorized, "unauthorized", "a bearer token is required")
	}
	if len(s.p.Auth.Key) == 0 {
		return nil, newError(http.StatusUnauthorized, "unauthorized",
			"this gateway has no auth-key configured, so it cannot check tokens; only clients on its own machine may use it")
	}
	cl, err := auth.Verify(s.p.Auth.Key, tok)
	if err != nil {
		c.Response().Header().Set("WWW-Authenticate", `Bearer realm="livegate", error="invalid_token"`)
		return nil, newError(http.StatusUnauthorized, "invalid_token", err.Error())
	}
	c.Set("claims", cl)
	return cl, nil
}

// isAdmin accepts the admin key or a token with the admin grant.
func (s *Server) isAdmin(c echo.Context) error {
	if s.open(c) {
		return nil
	}
	tok := bearer(c.Request())
	if s.p.Auth.AdminKey != "" && tok != "" &&
		subtle.ConstantTimeCompare([]byte(tok), []byte(s.p.Auth.AdminKey)) == 1 {
		return nil
	}
	cl, err := s.claims(c)
	if err != nil {
		return err
	}
	if !cl.Has(auth.GrantAdmin) {
		return newError(http.StatusForbidden, "forbidden", "the admin grant or the admin key is required")
	}
	return nil
}

// forbidden turns an auth.ErrForbidden into a 403.
func forbidden(err error) error {
	if errors.Is(err, auth.ErrForbidden) {
		return newError(http.StatusForbidden, "forbidden", err.Error())
	}
	return err
}

// authorizePublish checks a WHIP request for ROOM/NAME.
func (s *Server) authorizePublish(c echo.Context) error {
	cl, err := s.claims(c)
	if err != nil || cl == nil {
		return err
	}
	return forbidden(cl.CanPublish(c.Param("room"), c.Param("name")))
}

// authorizeSubscribe checks a WHEP request or a room read for ROOM.
func (s *Server) authorizeSubscribe(c echo.Context) error {
	if k := s.p.Auth.ClusterKey; k != "" && subtle.ConstantTimeCompare([]byte(bearer(c.Request())), []byte(k)) == 1 {
		return nil
	}
	cl, err := s.claims(c)
	if err != nil || cl == nil {
		return err
	}
	return forbidden(cl.CanSubscribe(c.Param("room")))
}

type mintRequest struct {
	Room     string   `json:"room"`
	Identity string   `json:"identity"`
	Name     string   `json:"name"`
	Grants   []string `json:"grants"`
	TTL      string   `json:"ttl"`
}

// mintToken is POST /api/v1/tokens for app backends (admin key).
func (s *Server) mintToken(c echo.Context) error {
	if err := s.isAdmin(c); err != nil {
		return err
	}
	if len(s.p.Auth.Key) == 0 {
		return newError(http.StatusServiceUnavailable, "no_auth_key",
			"no auth-key is configured: set --auth-key (LIVEGATE_AUTH_KEY) to issue tokens")
	}
	var req mintRequest
	if err := decodeJSON(c, s.p.MaxBody, &req); err != nil {
		return err
	}
	ttl := time.Hour
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil {
			return newError(http.StatusBadRequest, "bad_request", "ttl: "+err.Error())
		}
		ttl = d
	}
	tok, err := auth.Mint(s.p.Auth.Key, auth.Request{Room: req.Room, Identity: req.Identity, Name: req.Name,
		Grants: req.Grants, TTL: ttl}, time.Now())
	if err != nil {
		return newError(http.StatusBadRequest, "bad_request", err.Error())
	}
	return c.JSON(http.StatusCreated, map[string]any{"token": tok, "expiresAt": time.Now().Add(ttl).UTC()})
}
