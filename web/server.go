// Package web is livegate's HTTP front: WHIP and WHEP resources, the JSON
// API, health and the embedded pages.
package web

import (
	"context"
	"embed"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/rtc"
	"github.com/livegate/livegate/web/auth"
	"github.com/livegate/livegate/web/metrics"
	"github.com/livegate/livegate/web/rooms"
)

//go:embed static
var static embed.FS

// Endpoint is a WHIP or WHEP server as the HTTP layer needs it.
type Endpoint interface {
	Offer(ctx context.Context, path, offer, peer string) (*rtc.Session, error)
	Session(path, id string) (*rtc.Session, error)
}

// Params configures the HTTP server.
type Params struct {
	WHIP Endpoint
	WHEP Endpoint
	Hub  *relay.Hub
	// MaxBody bounds request bodies (SDP offers, fragments) in bytes.
	MaxBody int64 `flag:"max-body" help:"largest accepted request body (SDP) in bytes"`
	// CORSOrigin is sent as Access-Control-Allow-Origin ("*" by default)
	// when tokens are required; an open gateway sends no CORS headers.
	CORSOrigin string `flag:"cors-origin" help:"Access-Control-Allow-Origin for WHIP/WHEP/API when tokens are required (an open gateway sends no CORS headers)"`
	// Policy answers every access question; nil builds one from Auth.
	Policy *auth.Policy
	Auth   AuthParams
	// Rooms, if set, serves the room API, room events, chat and the host
	// and viewer pages.
	Rooms *rooms.Manager
	// Cluster, if set, serves GET /api/v1/cluster and redirects WHEP
	// viewers to a less loaded edge when this node is full.
	Cluster ClusterAPI
	// Recordings serves the recording API and playback; nil disables them.
	Recordings RecordingsAPI
	// HLS, if set, serves live streams as LL-HLS (/hls/ROOM/NAME/FILE).
	HLS HLSServer
	// Egress, if set, serves the RTMP push API (/api/v1/egress) and lists
	// the pushes of a room's composite.
	Egress EgressAPI
	// Composite, if set, serves the room composite API.
	Composite CompositeAPI
	// Metrics serves /metrics and times requests; nil disables them.
	Metrics *metrics.Metrics
	// RelayParent, if set, tells which parent a relayed stream comes from.
	RelayParent func(path string) (parent string, ok bool)
	// Limits are per-client protections.
	Limits Limits
	// ICEServers, if set, returns the STUN/TURN servers (RFC 9725 Link
	// header values, credentials included) for a client that reached the
	// gateway at host, identified as user. They go with every 201 answer
	// and with the OPTIONS answer of an offer URL the client may use.
	ICEServers func(host, user string) []string
	// SelfTest, if set, serves the connectivity self-test page (/check).
	SelfTest SelfTest
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names
	// the client (for logs and per-address limits). Forwarding headers
	// from anyone else are ignored.
	TrustedProxies []netip.Prefix
	// OfferTimeout bounds the work of answering one offer.
	OfferTimeout time.Duration
	// DownloadTimeout bounds writing a recording segment or an HLS
	// response, plus 1 s per 256 KB (default 30 s).
	DownloadTimeout time.Duration
	// PlaybackTokenTTL is the life of the playback tokens in the
	// recordings API's playback URLs (one recording, read-only).
	PlaybackTokenTTL time.Duration `flag:"recording-playback-ttl" help:"how long the playback URL of a recording that the recordings API hands out stays valid (its token plays back that one recording, nothing else)"`
	Logger           *slog.Logger
}

// Server is the HTTP handler.
type Server struct {
	p    Params
	echo *echo.Echo
	log  *slog.Logger
	up   time.Time

	policy    *auth.Policy
	policyErr error // why policy is nil: every request is refused

	pubSessions publisherSessions // for rooms: who hung up
	limits      *clientLimits
	candidates  candidateBudget
	logs        logLimiter
	checks      checkSlots // self-test connections per address
}

const (
	mimeSDP     = "application/sdp"
	mimeSDPFrag = "application/trickle-ice-sdpfrag"
)

// DefaultParams are the settings livegate starts with, and those a zero
// Params field stands for (Limits: see DefaultLimits).
func DefaultParams() Params {
	return Params{
		MaxBody:          128 << 10,
		CORSOrigin:       "*",
		Limits:           DefaultLimits(),
		OfferTimeout:     10 * time.Second,
		PlaybackTokenTTL: time.Hour,
	}
}

// New builds the routes.
func New(p Params) *Server {
	d := DefaultParams()
	if p.MaxBody <= 0 {
		p.MaxBody = d.MaxBody
	}
	if p.CORSOrigin == "" {
		p.CORSOrigin = d.CORSOrigin
	}
	if p.OfferTimeout <= 0 {
		p.OfferTimeout = d.OfferTimeout
	}
	if p.PlaybackTokenTTL <= 0 {
		p.PlaybackTokenTTL = d.PlaybackTokenTTL
	}
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.IPExtractor = echo.ExtractIPDirect()
	if len(p.TrustedProxies) > 0 {
		opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
		for _, pr := range p.TrustedProxies {
			opts = append(opts, echo.TrustIPRange(&net.IPNet{IP: pr.Addr().AsSlice(), Mask: net.CIDRMask(pr.Bits(), pr.Addr().BitLen())}))
		}
		e.IPExtractor = echo.ExtractIPFromXFFHeader(opts...)
	}
	s := &Server{p: p, echo: e, log: p.Logger, up: time.Now(), limits: newClientLimits(p.Limits), logs: logLimiter{max: 20}}
	s.policy, s.policyErr = policyFrom(p)
	if s.policyErr != nil {
		s.log.Error("access configuration invalid: refusing every request", "err", s.policyErr)
	}
	e.HTTPErrorHandler = s.handleError
	if p.Metrics != nil {
		e.Use(p.Metrics.Middleware())
	}
	e.Use(s.cors, securityHeaders)

	for _, ep := range []struct {
		prefix string
		ep     Endpoint
		action auth.Action
		proto  auth.Protocol
	}{{"/whip", p.WHIP, auth.ActionPublish, auth.ProtoWHIP}, {"/whep", p.WHEP, auth.ActionRead, auth.ProtoWHEP}} {
		e.POST(ep.prefix+"/:room/:name", s.offer(ep.ep, ep.action, ep.proto))
		e.OPTIONS(ep.prefix+"/:room/:name", s.offerOptions(s.options("OPTIONS, POST"), ep.action, ep.proto))
		e.PATCH(ep.prefix+"/:room/:name/:id", s.patch(ep.ep))
		e.DELETE(ep.prefix+"/:room/:name/:id", s.remove(ep.ep))
		e.OPTIONS(ep.prefix+"/:room/:name/:id", s.options("OPTIONS, PATCH, DELETE"))
	}
	e.GET("/api/v1/openapi.json", s.serveOpenAPI)
	e.POST("/api/v1/tokens", s.mintToken)
	e.GET("/api/v1/streams", s.listStreams)
	e.GET("/api/v1/streams/:room/:name", s.getStream)
	e.GET("/healthz", s.health)
	if p.Rooms != nil {
		s.registerRooms()
	}
	if p.Cluster != nil {
		s.registerCluster(p.Cluster)
	}

	if p.Recordings != nil {
		s.registerRecordings(p.Recordings)
	}
	s.registerBypass(p.HLS, p.Egress)
	if p.Composite != nil {
		s.registerComposite(p.Composite, p.Egress)
	}
	if p.SelfTest != nil {
		s.registerCheck(p.SelfTest)
	}
	if p.Metrics != nil {
		// One handler: its in-flight limit holds across scrapes.
		mh := p.Metrics.Handler()
		e.GET("/metrics", func(c echo.Context) error {
			if err := s.isAdmin(c); err != nil {
				return err
			}
			mh.ServeHTTP(c.Response(), c.Request())
			return nil
		})
	}
	sub, _ := fs.Sub(static, "static")
	e.GET("/*", echo.WrapHandler(http.FileServer(http.FS(sub))))
	return s
}

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler { return s.echo }

func (s *Server) cors(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.corsAllowed() {
			h := c.Response().Header()
			h.Set("Access-Control-Allow-Origin", s.p.CORSOrigin)
			h.Set("Access-Control-Expose-Headers", "Location, ETag, Link, Accept-Patch, Accept-Post")
		}
		return next(c)
	}
}

// pageCSP lets the embedded pages load only their own scripts, styles and
// media, never be framed, and talk to this server (and, for WHEP
// redirects to other edges and configured endpoints, other http(s) ones).
const pageCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; " +
	"connect-src 'self' http: https:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// securityHeaders: no content sniffing and no Referer (URLs may carry a
// token) on every response; HTML pages also get the CSP and no framing.
func securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if c.Request().Method == http.MethodGet || c.Request().Method == http.MethodHead {
			c.Response().Before(func() {
				if strings.HasPrefix(h.Get(echo.HeaderContentType), "text/html") {
					if h.Get("Content-Security-Policy") == "" {
						h.Set("Content-Security-Policy", pageCSP)
					}
					h.Set("X-Frame-Options", "DENY")
				}
			})
		}
		return next(c)
	}
}

func (s *Server) options(methods string) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Allow", methods)
		if s.corsAllowed() {
			h.Set("Access-Control-Allow-Methods", methods)
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match")
			h.Set("Access-Control-Max-Age", "86400")
		}
		if strings.Contains(methods, "POST") {
			h.Set("Accept-Post", mimeSDP)
		} else {
			h.Set("Accept-Patch", mimeSDPFrag)
		}
		return c.NoContent(http.StatusNoContent)
	}
}

// streamPath validates ROOM and NAME.
func streamPath(c echo.Context) (string, error) {
	room, name := c.Param("room"), c.Param("name")
	if !relay.ValidName(room) || !relay.ValidName(name) {
		return "", newError(http.StatusBadRequest, "bad_path",
			"stream path must be ROOM/NAME, each 1-64 characters of A-Z a-z 0-9 _ -")
	}
	return room + "/" + name, nil
}

// body reads a request body of the given media type within the size limit.
func (s *Server) body(c echo.Context, want string) (string, error) {
	ct := c.Request().Header.Get(echo.HeaderContentType)
	if mt, _, err := mime.ParseMediaType(ct); err != nil || !strings.EqualFold(mt, want) {
		return "", newError(http.StatusUnsupportedMediaType, "unsupported_media_type",
			"Content-Type must be "+want+", got "+quoteOrNone(ct))
	}
	if c.Request().ContentLength > s.p.MaxBody {
		return "", s.tooLarge()
	}
	b, err := io.ReadAll(io.LimitReader(c.Request().Body, s.p.MaxBody+1))
	if err != nil {
		return "", newError(http.StatusBadRequest, "bad_body", "reading body: "+err.Error())
	}
	if int64(len(b)) > s.p.MaxBody {
		return "", s.tooLarge()
	}
	return string(b), nil
}

func (s *Server) tooLarge() error {
	return newError(http.StatusRequestEntityTooLarge, "body_too_large",
		"request body exceeds the limit of "+strconv.FormatInt(s.p.MaxBody, 10)+" bytes (setting max-body)")
}

func (s *Server) listStreams(c echo.Context) error {
	if err := s.isAdmin(c); err != nil {
		return err
	}
	list := []streamView{}
	for _, st := range s.p.Hub.Streams() {
		list = append(list, s.view(st.Stats()))
	}
	return c.JSON(http.StatusOK, map[string]any{"streams": list})
}

// streamView is a stream as the API shows it: where its media comes from.
type streamView struct {
	relay.StreamStats
	Origin string `json:"origin"`           // "local" or "relay"
	Parent string `json:"parent,omitempty"` // the node a relayed stream is pulled from
}

func (s *Server) view(st relay.StreamStats) streamView {
	v := streamView{StreamStats: st, Origin: "local"}
	if s.p.RelayParent != nil {
		if parent, ok := s.p.RelayParent(st.Path); ok {
			v.Origin, v.Parent = "relay", parent
		}
	}
	return v
}

func (s *Server) getStream(c echo.Context) error {
	path, err := streamPath(c)
	if err != nil {
		return err
	}
	if _, err := s.authorize(c, auth.ActionRead, auth.ProtoAPI); err != nil {
		return err
	}
	st, ok := s.p.Hub.Get(path)
	if !ok {
		return relay.ErrNotFound
	}
	return c.JSON(http.StatusOK, s.view(st.Stats()))
}

func (s *Server) health(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]any{
		"status": "ok", "uptimeSeconds": int(time.Since(s.up).Seconds()),
		"streams": len(s.p.Hub.Streams()),
	})
}

// handleError renders every error as JSON and logs it with the request
// path and the peer's address.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	ae := classify(err)
	level := slog.LevelInfo
	if ae.Status >= 500 {
		level = slog.LevelError
	}
	if ok, suppressed := s.logs.allow(); ok {
		s.log.Log(c.Request().Context(), level, "request failed", "method", c.Request().Method,
			"path", logPath(c), "peer", c.RealIP(), "status", ae.Status, "err", ae.Message,
			"suppressed_before", suppressed)
	}
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(ae.Status)
		return
	}
	_ = c.JSON(ae.Status, ae)
}

// logPath is the request path for logs, without a WHIP or WHEP session
// ID: it is the only secret needed to end or change someone's session.
func logPath(c echo.Context) string {
	p := c.Request().URL.Path
	if id := c.Param("id"); id != "" && (strings.HasPrefix(p, "/whip/") || strings.HasPrefix(p, "/whep/")) {
		return strings.TrimSuffix(p, id) + ":id"
	}
	return p
}

func quoteOrNone(s string) string {
	if s == "" {
		return "none"
	}
	return `"` + s + `"`
}

// Routes lists the registered routes, for the API description's test.
func (s *Server) Routes() []*echo.Route { return s.echo.Routes() }
