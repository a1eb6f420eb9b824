package web

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/livegate/livegate/web/auth"
)

// Auth modes (the values of auth.Mode, for callers that use strings).
const (
	AuthAuto = string(auth.ModeAuto)
	AuthOn   = string(auth.ModeOn)
	AuthOff  = string(auth.ModeOff)
)

// AuthParams configures access control when Params.Policy is nil.
type AuthParams struct {
	Mode string
	// Key signs and verifies tokens (HS256). Never sent to browsers.
	Key []byte
	// PreviousKeys still verify tokens during a key rotation.
	PreviousKeys [][]byte
	// AdminKey, presented as a bearer header, allows minting tokens and
	// admin calls from an app backend.
	AdminKey string
	// ClusterKey, presented as a bearer header, lets relay edges watch any
	// stream.
	ClusterKey string
	// OpenHosts are extra Host names an open gateway answers.
	OpenHosts []string
}

// policyFrom builds the policy of p. An invalid configuration yields nil
// and the error, and the server refuses every request (fail closed).
func policyFrom(p Params) (*auth.Policy, error) {
	if p.Policy != nil {
		return p.Policy, nil
	}
	return auth.NewPolicy(auth.PolicyConfig{Mode: auth.Mode(p.Auth.Mode), Key: p.Auth.Key, PreviousKeys: p.Auth.PreviousKeys,
		AdminKey: p.Auth.AdminKey, ClusterKey: p.Auth.ClusterKey, OpenHosts: p.Auth.OpenHosts})
}

// proxyHeaders are set by reverse proxies. A request with any of them came
// through one, so its TCP peer says nothing about where the client is.
var proxyHeaders = []string{"X-Forwarded-For", "X-Real-Ip", "Forwarded", "X-Forwarded-Host", "X-Forwarded-Proto",
	"X-Forwarded-Port", "X-Forwarded-Server", "Via", "X-Client-Ip", "True-Client-Ip", "Cf-Connecting-Ip"}

func forwarded(r *http.Request) bool {
	// nginx's default proxy_pass speaks HTTP/1.0 to its upstream and adds
	// no forwarding header; browsers and players speak HTTP/1.1 or later.
	if r.ProtoMajor == 1 && r.ProtoMinor == 0 {
		return true
	}
	for _, h := range proxyHeaders {
		if _, ok := r.Header[h]; ok {
			return true
		}
	}
	return false
}

// peerAddr is the TCP peer of r.
func peerAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// hostOnly strips the port from a Host header.
func hostOnly(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
}

// crossOrigin reports whether a browser sent r from a page of another
// origin (or a sandboxed one, Origin "null").
func crossOrigin(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host == "" {
			return true
		}
		if !strings.EqualFold(u.Host, r.Host) {
			return true
		}
	}
	// Subresource requests that carry no Origin (images, media) still say
	// where they come from in Fetch Metadata; navigations (a link from
	// another site to a page) are fine.
	return r.Header.Get("Sec-Fetch-Site") == "cross-site" && r.Header.Get("Sec-Fetch-Mode") != "navigate"
}

// bearer returns the request's credential: the Authorization header, or
// for GET and HEAD requests the access_token query parameter (EventSource
// and media elements in browsers cannot set headers). inURL says which.
func bearer(r *http.Request) (tok string, inURL bool) {
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:]), false
	}
	// A WHEP offer redirected to another edge carries a redirect token in
	// the URL: a browser drops the Authorization header on the way.
	whep := r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/whep/")
	if r.Method == http.MethodGet || r.Method == http.MethodHead || whep {
		if t := r.URL.Query().Get("access_token"); t != "" {
			return t, true
		}
	}
	return "", false
}

// authorize is the HTTP adapter of the access policy: it extracts the
// credential and the facts about the client, asks the policy and maps the
// answer to a status. The decision's token claims are kept in the context
// for handlers that show who the client is.
func (s *Server) authorize(c echo.Context, action auth.Action, proto auth.Protocol) (auth.Decision, error) {
	if s.policy == nil {
		return auth.Decision{}, newError(http.StatusInternalServerError, "bad_auth_config",
			"the access configuration is invalid: "+s.policyErr.Error())
	}
	r := c.Request()
	tok, inURL := bearer(r)
	d, err := s.policy.Authorize(auth.Access{
		Action: action, Protocol: proto, Room: c.Param("room"), Name: c.Param("name"),
		Credential: tok, CredentialInURL: inURL,
		Recording: recordingOf(action, c),
		Client:    peerAddr(r), Forwarded: forwarded(r), Host: hostOnly(r.Host), CrossOrigin: crossOrigin(r),
	})
	if err != nil {
		return d, s.accessError(c, err)
	}
	if d.Claims != nil {
		c.Set("claims", d.Claims)
	}
	return d, nil
}

// recordingOf is the recording a playback request is for.
func recordingOf(action auth.Action, c echo.Context) string {
	if action != auth.ActionPlayback {
		return ""
	}
	return c.Param("id")
}

// accessError maps a refusal to its status.
func (s *Server) accessError(c echo.Context, err error) error {
	h := c.Response().Header()
	switch {
	case errors.Is(err, auth.ErrNoToken):
		h.Set("WWW-Authenticate", `Bearer realm="livegate"`)
		return newError(http.StatusUnauthorized, "unauthorized", "a bearer token is required")
	case errors.Is(err, auth.ErrInvalidToken):
		h.Set("WWW-Authenticate", `Bearer realm="livegate", error="invalid_token"`)
		return newError(http.StatusUnauthorized, "invalid_token", err.Error())
	case errors.Is(err, auth.ErrNotLocal) && s.policy.Mode() != auth.ModeOff:
		h.Set("WWW-Authenticate", `Bearer realm="livegate"`)
		return newError(http.StatusUnauthorized, "unauthorized", err.Error())
	case errors.Is(err, auth.ErrNotLocal):
		return newError(http.StatusForbidden, "not_local", err.Error())
	case errors.Is(err, auth.ErrHostNotAllowed):
		return newError(http.StatusForbidden, "host_not_allowed", err.Error())
	case errors.Is(err, auth.ErrForbidden):
		return newError(http.StatusForbidden, "forbidden", err.Error())
	}
	return err
}

// isAdmin allows the admin key, a token with the admin grant, or a client
// of an open gateway.
func (s *Server) isAdmin(c echo.Context) error {
	_, err := s.authorize(c, auth.ActionAdmin, auth.ProtoAPI)
	return err
}

// corsAllowed reports whether responses may carry CORS headers: never on
// an open gateway, which answers only pages of its own origin.
func (s *Server) corsAllowed() bool { return s.policy != nil && !s.policy.Open() }

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
	if !s.policy.CanMint() {
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
	tok, err := auth.Mint(s.policy.SigningKey(), auth.Request{Room: req.Room, Identity: req.Identity, Name: req.Name,
		Grants: req.Grants, TTL: ttl}, time.Now())
	if err != nil {
		return newError(http.StatusBadRequest, "bad_request", err.Error())
	}
	return c.JSON(http.StatusCreated, map[string]any{"token": tok, "expiresAt": time.Now().Add(ttl).UTC()})
}
