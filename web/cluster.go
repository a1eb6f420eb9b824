package web

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/livegate/livegate/relay/cluster"
	"github.com/livegate/livegate/web/auth"
)

// ClusterAPI is what the HTTP layer needs of the cluster membership
// (*cluster.Member implements it).
type ClusterAPI interface {
	Self() cluster.Node
	DirectoryKind() string
	Nodes(ctx context.Context) []cluster.Node
	// Redirect returns a less loaded edge's base URL when this node is
	// full (maxViewers 0: the node's own limit).
	Redirect(ctx context.Context, maxViewers int) (string, bool)
}

// registerCluster adds GET /api/v1/cluster: the nodes of the cluster and
// their load (admin key, admin grant or, in auto mode without a key, a
// local client).
func (s *Server) registerCluster(m ClusterAPI) {
	s.echo.GET("/api/v1/cluster", func(c echo.Context) error {
		if err := s.isAdmin(c); err != nil {
			return err
		}
		self := m.Self()
		return c.JSON(http.StatusOK, map[string]any{
			"self":      self.ID,
			"directory": m.DirectoryKind(),
			"nodes":     m.Nodes(c.Request().Context()),
		})
	})
}

// redirectViewer answers a WHEP POST with 307 Temporary Redirect to a less
// loaded edge when this node is full (RFC 9725 permits it; a 307 keeps the
// method and the offer). It reports whether it answered.
//
// Browsers drop the Authorization header when a redirect leads to another
// origin, so when this node can sign tokens the Location carries a redirect
// token (one stream, subscribe only, one minute) as access_token: browsers,
// players and OBS follow it without sending anything again. The edges must
// share the auth-key.
func (s *Server) redirectViewer(c echo.Context, m ClusterAPI, d auth.Decision) (bool, error) {
	base, ok := m.Redirect(c.Request().Context(), 0)
	if !ok {
		return false, nil
	}
	u := *c.Request().URL
	q := u.Query()
	q.Del("access_token")
	if s.policy != nil && s.policy.CanMint() && !d.Open {
		room, name := c.Param("room"), c.Param("name")
		id := "redirected-viewer"
		if d.Claims != nil && d.Claims.Identity != "" {
			id = d.Claims.Identity
		}
		tok, err := auth.Mint(s.policy.SigningKey(), auth.Request{Room: room, Identity: id, Name: id,
			Grants: []string{auth.GrantSubscribe}, Stream: room + "/" + name, TTL: auth.RedirectTTL}, time.Now())
		if err != nil {
			return true, fmt.Errorf("minting a redirect token: %w", err)
		}
		q.Set("access_token", tok)
	}
	u.RawQuery = q.Encode()
	return true, c.Redirect(http.StatusTemporaryRedirect, base+u.RequestURI())
}
