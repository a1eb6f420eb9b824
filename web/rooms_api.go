package web

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/livegate/livegate/internal/addrlimit"
	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/rtc"
	"github.com/livegate/livegate/web/auth"
	"github.com/livegate/livegate/web/rooms"
)

// Room event streams (Server-Sent Events).
const (
	ssePing         = 15 * time.Second // comment line that keeps proxies and dead-peer detection going
	sseWriteTimeout = 10 * time.Second
	sseRetry        = "retry: 2000\n\n" // EventSource reconnects after 2 s
	sseBatch        = 64                // frames written per flush at most
	maxDisplayName  = 64
)

// registerRooms adds the room API, the room event stream, chat and the
// host and viewer pages.
func (s *Server) registerRooms() {
	e := s.echo
	e.GET("/api/v1/me", s.whoami)
	e.GET("/api/v1/rooms", s.listRooms)
	e.GET("/api/v1/rooms/:room", s.getRoom)
	e.GET("/api/v1/rooms/:room/events", s.roomEvents)
	e.POST("/api/v1/rooms/:room/chat", s.roomChat)
	e.OPTIONS("/api/v1/rooms/:room/chat", s.apiOptions("OPTIONS, POST"))
	e.GET("/host", s.page("host.html"))
	e.GET("/host/:room", s.page("host.html"))
	e.GET("/watch", s.page("watch.html"))
	e.GET("/watch/:room", s.page("watch.html"))
}

// page serves an embedded page for a path with parameters (the page reads
// them from location).
func (s *Server) page(name string) echo.HandlerFunc {
	return func(c echo.Context) error {
		b, err := static.ReadFile("static/" + name)
		if err != nil {
			return err
		}
		c.Response().Header().Set("Cache-Control", "no-cache")
		return c.HTMLBlob(http.StatusOK, b)
	}
}

func (s *Server) apiOptions(methods string) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Allow", methods)
		h.Set("Access-Control-Allow-Methods", methods)
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
		h.Set("Access-Control-Max-Age", "86400")
		return c.NoContent(http.StatusNoContent)
	}
}

func roomParam(c echo.Context) (string, error) {
	room := c.Param("room")
	if !relay.ValidName(room) {
		return "", newError(http.StatusBadRequest, "bad_path", "room must be 1-64 characters of A-Z a-z 0-9 _ -")
	}
	return room, nil
}

// whoami is GET /api/v1/me: what the request's token allows, so that pages
// can check a token and adapt (it never reveals a secret).
func (s *Server) whoami(c echo.Context) error {
	d, err := s.authorize(c, auth.ActionWhoami, auth.ProtoAPI)
	switch {
	case err != nil:
		return err
	case d.Open:
		return c.JSON(http.StatusOK, map[string]any{"open": true})
	case d.Claims == nil:
		return c.JSON(http.StatusOK, map[string]any{"open": false, "admin": d.Admin, "relay": d.Relay})
	}
	cl := d.Claims
	out := map[string]any{"open": false, "room": cl.Room, "identity": cl.Identity, "name": cl.Name, "grants": cl.Grants}
	if cl.ExpiresAt != nil {
		out["expiresAt"] = cl.ExpiresAt.UTC()
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) listRooms(c echo.Context) error {
	if err := s.isAdmin(c); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"rooms": s.p.Rooms.Rooms()})
}

func (s *Server) getRoom(c echo.Context) error {
	room, err := roomParam(c)
	if err != nil {
		return err
	}
	if _, err := s.authorize(c, auth.ActionRoom, auth.ProtoAPI); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, s.p.Rooms.Get(room))
}

// roomEvents is GET /api/v1/rooms/ROOM/events: a snapshot of the room, then
// its events as they happen, as Server-Sent Events. Browsers' EventSource
// cannot set headers, so the token may come as ?access_token=.
func (s *Server) roomEvents(c echo.Context) error {
	room, err := roomParam(c)
	if err != nil {
		return err
	}
	d, err := s.authorize(c, auth.ActionRoom, auth.ProtoEvents)
	if err != nil {
		return err
	}
	// One holder may not take a room's every event stream slot. (Pages of
	// an open gateway all come from this machine: they are not counted.)
	if !d.Open {
		who := "addr " + addrlimit.Key(clientIP(c))
		if d.Claims != nil {
			who = "id " + d.Claims.Identity
		}
		done, err := s.limits.openStream(room, who)
		if err != nil {
			return err
		}
		defer done()
	}
	sub, snapshot, err := s.p.Rooms.Subscribe(room)
	if err != nil {
		return roomError(err)
	}
	defer sub.Close()

	// The stream ends when the token does: EventSource reconnects and is
	// refused, so the page can ask for a new token.
	var expired <-chan time.Time
	if cl := d.Claims; cl != nil && cl.ExpiresAt != nil {
		t := time.NewTimer(time.Until(cl.ExpiresAt.Time))
		defer t.Stop()
		expired = t.C
	}

	w := c.Response()
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set(echo.HeaderContentType, "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer
	w.WriteHeader(http.StatusOK)
	write := func(frames ...[]byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
		for _, f := range frames {
			if _, err := w.Write(f); err != nil {
				return false
			}
		}
		return rc.Flush() == nil
	}
	if !write([]byte(sseRetry), snapshot) {
		return nil
	}
	ping := time.NewTicker(ssePing)
	defer ping.Stop()
	frames := make([][]byte, 0, sseBatch)
	for {
		select {
		case <-c.Request().Context().Done():
			return nil
		case f, ok := <-sub.C():
			if !ok {
				if sub.Dropped() {
					s.log.Debug("room event stream dropped: the client fell behind", "room", room, "peer", c.RealIP())
				}
				return nil
			}
			frames = append(frames[:0], f)
			for len(frames) < sseBatch && len(sub.C()) > 0 {
				if f, ok := <-sub.C(); ok {
					frames = append(frames, f)
				}
			}
			if !write(frames...) {
				return nil
			}
		case <-ping.C:
			if !write([]byte(": ping\n\n")) {
				return nil
			}
		case <-expired:
			write([]byte("event: token_expired\ndata: {}\n\n"))
			return nil
		}
	}
}

type chatRequest struct {
	Text string `json:"text"`
	// Identity and Name are read only from open (development) gateways,
	// where there is no token: the message is marked unverified.
	Identity string `json:"identity,omitempty"`
	Name     string `json:"name,omitempty"`
}

// roomChat is POST /api/v1/rooms/ROOM/chat {"text": "..."}: the sender is
// the token's identity and needs the chat grant for the room.
func (s *Server) roomChat(c echo.Context) error {
	room, err := roomParam(c)
	if err != nil {
		return err
	}
	d, err := s.authorize(c, auth.ActionChat, auth.ProtoAPI)
	if err != nil {
		return err
	}
	cl := d.Claims
	var req chatRequest
	// Room for the text with JSON escapes (\u00XX is 6 bytes) and the names.
	if err := decodeJSON(c, int64(s.p.Rooms.MaxText())*6+1024, &req); err != nil {
		return err
	}
	from := rooms.Sender{Identity: "guest", Verified: false}
	if cl != nil {
		from = rooms.Sender{Identity: cl.Identity, Name: cl.Name, Verified: true}
	} else {
		if req.Identity != "" {
			if !relay.ValidName(req.Identity) {
				return newError(http.StatusBadRequest, "bad_request", "identity must be 1-64 characters of A-Z a-z 0-9 _ -")
			}
			from.Identity = req.Identity
		}
		from.Name = displayName(req.Name)
	}
	msg, err := s.p.Rooms.Chat(room, from, req.Text)
	if err != nil {
		var rl *rooms.RateLimitError
		if errors.As(err, &rl) {
			secs := int(rl.RetryAfter/time.Second) + 1
			c.Response().Header().Set("Retry-After", strconv.Itoa(secs))
		}
		return roomError(err)
	}
	return c.JSON(http.StatusCreated, msg)
}

func roomError(err error) error {
	var rl *rooms.RateLimitError
	switch {
	case errors.As(err, &rl):
		return newError(http.StatusTooManyRequests, "rate_limited", err.Error()+" (settings chat-rate, chat-burst)")
	case errors.Is(err, rooms.ErrTooLong):
		return newError(http.StatusRequestEntityTooLarge, "chat_too_long", err.Error()+" (at most 2 KB)")
	case errors.Is(err, rooms.ErrEmpty), errors.Is(err, rooms.ErrInvalidText):
		return newError(http.StatusBadRequest, "bad_chat", err.Error())
	case errors.Is(err, rooms.ErrTooManyRooms):
		return newError(http.StatusServiceUnavailable, "too_many_rooms", err.Error()+" (setting max-rooms)")
	case errors.Is(err, rooms.ErrTooManySubscribers):
		return newError(http.StatusServiceUnavailable, "too_many_subscribers", err.Error()+" (setting max-room-subscribers)")
	case errors.Is(err, rooms.ErrClosed):
		return newError(http.StatusServiceUnavailable, "shutting_down", err.Error())
	}
	return err
}

// displayName cleans a display name typed in on an open gateway.
func displayName(s string) string {
	if !utf8.ValidString(s) {
		return ""
	}
	s = strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, s))
	for len(s) > maxDisplayName {
		_, n := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-n]
	}
	return s
}

// notePublisher tells the rooms who is about to publish path: the display
// name from the token (or, on an open gateway, from ?name=).
func (s *Server) notePublisher(c echo.Context, path string, d auth.Decision) {
	if s.p.Rooms == nil {
		return
	}
	name := ""
	if d.Claims != nil {
		name = d.Claims.Name
	} else if d.Open {
		name = displayName(c.QueryParam("name"))
	}
	s.p.Rooms.Expect(path, name)
}

// publisherSessions remembers WHIP sessions (by their unguessable id) until
// a while after they end, so that a DELETE that arrives after the
// publisher's connection already closed (browsers close the peer
// connection and send the DELETE at the same time) still counts as
// hanging up.
type publisherSessions struct {
	mu   sync.Mutex
	byID map[string]*pubSession
}

type pubSession struct {
	path   string
	closed time.Time // zero while open
}

// hangupWindow is how long after a publisher's session ended its DELETE
// is still taken as a hangup.
const hangupWindow = 30 * time.Second

// notePublished remembers a new WHIP session.
func (s *Server) notePublished(sess *rtc.Session) {
	if s.p.Rooms == nil {
		return
	}
	ps := &s.pubSessions
	now := time.Now()
	ps.mu.Lock()
	if ps.byID == nil {
		ps.byID = map[string]*pubSession{}
	}
	for id, e := range ps.byID {
		if !e.closed.IsZero() && now.Sub(e.closed) > hangupWindow {
			delete(ps.byID, id)
		}
	}
	ps.byID[sess.ID] = &pubSession{path: sess.Path}
	ps.mu.Unlock()
	closed := func() {
		ps.mu.Lock()
		if e := ps.byID[sess.ID]; e != nil && e.closed.IsZero() {
			e.closed = time.Now()
		}
		ps.mu.Unlock()
	}
	sess.OnClose(closed)
	select {
	case <-sess.Done(): // closed before OnClose was registered
		closed()
	default:
	}
}

// noteHangup tells the rooms that the publisher of WHIP session id ended
// it, and reports whether the session was known (open or recently ended).
func (s *Server) noteHangup(path, id string) bool {
	if s.p.Rooms == nil {
		return false
	}
	ps := &s.pubSessions
	ps.mu.Lock()
	e := ps.byID[id]
	known := e != nil && e.path == path && (e.closed.IsZero() || time.Since(e.closed) <= hangupWindow)
	if known {
		delete(ps.byID, id)
	}
	ps.mu.Unlock()
	if known {
		s.p.Rooms.Hangup(path)
	}
	return known
}
