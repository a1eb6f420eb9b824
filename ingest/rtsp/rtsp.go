// Package rtsp is livegate's RTSP server on one port (8554 by default), in
// both directions: publishers ANNOUNCE/RECORD into relay paths
// (rtsp://HOST:8554/ROOM/NAME) and players DESCRIBE/SETUP/PLAY any live
// stream at the same URL.
//
// Both directions live in one package because RTSP multiplexes them over
// one listener and one gortsplib.Server whose handler sees every request:
// splitting them would need a third package owning the server and routing
// requests to the other two. The package still follows the adapter rule:
// it depends only on the relay core (relay/, relay/frames via
// ingest/internal/mediain) and never on another adapter.
//
// Publishing: H.264 is depacketised and packetised again once for RTP
// readers (any packetization mode in, mode 1 with 1200-byte packets out,
// parameter sets repeated before IDR pictures); AAC is transcoded once to
// Opus by ffmpeg for WebRTC viewers, or dropped with a warning without
// ffmpeg; Opus passes through. Publishers cannot be asked for keyframes.
//
// Reading: one gortsplib stream (the description) per relay path is shared
// by every RTSP player of that path (H.264, VP8, VP9, AV1 and Opus tracks
// as RTP); each player gets its own relay readers, like a WHEP viewer, so
// that it starts on a keyframe (from the relay's GOP cache when there is
// one) and resumes at the next keyframe after a loss. The output is closed
// when the relay stream ends or its last player has been gone for a few
// seconds. Only TCP (interleaved) transport is offered; players fall back
// to it.
package rtsp

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"

	"github.com/livegate/livegate/ingest/internal/mediain"
	"github.com/livegate/livegate/internal/addrlimit"
	"github.com/livegate/livegate/internal/ffproc"
	"github.com/livegate/livegate/relay"
)

// Params configures the RTSP server.
type Params struct {
	Hub *relay.Hub
	// Addr is the TCP listen address, e.g. ":8554".
	Addr string
	// Authorize, if set, decides whether a client may publish ROOM/NAME
	// with the token from the URL's "token" query parameter. nil allows
	// everyone.
	Authorize mediain.Authorizer
	// AuthorizeRead, if set, decides whether a client may play ROOM/NAME.
	// nil allows everyone.
	AuthorizeRead mediain.Authorizer
	// FFmpeg transcodes AAC to Opus: "" finds it in PATH, "-" disables it.
	FFmpeg string
	// AudioBitrate of transcoded Opus in bit/s (default 96000).
	AudioBitrate int
	// Linger keeps a path's RTSP output this long after its last player
	// left (default 5 s).
	Linger time.Duration
	// Timeout for reads and writes of RTSP connections (default 10 s).
	Timeout time.Duration
	// MaxConnsPerIP bounds concurrent connections from one address
	// (default 16), so that one client cannot hold every descriptor and
	// goroutine with idle connections.
	MaxConnsPerIP int
	Logger        *slog.Logger
}

// Server is the RTSP server.
type Server struct {
	p      Params
	ffmpeg string
	log    *slog.Logger
	srv    *gortsplib.Server
	addr   net.Addr

	mu   sync.Mutex
	outs map[string]*output

	perIP addrlimit.Counter // connections by address

	sessions atomic.Int64 // open RTSP sessions, for metrics
}

// New binds p.Addr and starts serving; Close stops.
func New(p Params) (*Server, error) {
	if p.Hub == nil {
		return nil, errors.New("rtsp: no hub")
	}
	if p.Linger <= 0 {
		p.Linger = 5 * time.Second
	}
	if p.Timeout <= 0 {
		p.Timeout = 10 * time.Second
	}
	if p.MaxConnsPerIP <= 0 {
		p.MaxConnsPerIP = 16
	}
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	s := &Server{p: p, ffmpeg: ffproc.Find(p.FFmpeg), log: p.Logger, outs: map[string]*output{}}
	h := &handler{s: s}
	s.srv = &gortsplib.Server{
		Handler:      h,
		RTSPAddress:  p.Addr,
		ReadTimeout:  p.Timeout,
		WriteTimeout: p.Timeout,
		Listen: func(network, address string) (net.Listener, error) {
			ln, err := net.Listen(network, address)
			if err == nil {
				s.addr = ln.Addr()
			}
			return ln, err
		},
	}
	if err := s.srv.Start(); err != nil {
		return nil, fmt.Errorf("rtsp %q: %w", p.Addr, err)
	}
	if s.ffmpeg == "" {
		s.log.Warn("rtsp: no ffmpeg; AAC audio of RTSP publishers is dropped (video-only for WebRTC viewers)")
	}
	return s, nil
}

// Addr is the bound address (useful with port 0).
func (s *Server) Addr() net.Addr { return s.addr }

// Sessions is the number of open RTSP sessions (publishers and players).
func (s *Server) Sessions() int { return int(s.sessions.Load()) }

// Close ends every session and output and waits for them.
func (s *Server) Close() {
	s.mu.Lock()
	outs := slices.Collect(maps.Values(s.outs))
	s.mu.Unlock()
	for _, o := range outs {
		o.close()
	}
	s.srv.Close()
	_ = s.srv.Wait()
}

// handler implements gortsplib's server handler interfaces.
type handler struct{ s *Server }

// session is what a gortsplib session carries: a publication or the
// output it reads.
type session struct {
	pub  *publisher
	out  *output
	play *player       // the player's relay readers, from its first PLAY
	join *relay.Stream // counted viewer, left on close
}

func sessionOf(ss *gortsplib.ServerSession) *session {
	if d, ok := ss.UserData().(*session); ok {
		return d
	}
	d := &session{}
	ss.SetUserData(d)
	return d
}

func status(code base.StatusCode) *base.Response { return &base.Response{StatusCode: code} }

// authorize parses path and query and runs the check: the stream's path
// and who the client is (see mediain.Authorizer).
func authorize(check mediain.Authorizer, path, query string, conn *gortsplib.ServerConn) (stream, owner string, err error) {
	room, name, err := relay.SplitPath(path)
	if err != nil {
		return "", "", err
	}
	if check != nil {
		q, _ := url.ParseQuery(query)
		ip := ""
		if conn != nil {
			ip, _, _ = net.SplitHostPort(conn.NetConn().RemoteAddr().String())
		}
		if owner, err = check(room, name, q.Get("token"), ip); err != nil {
			return "", "", &authError{err}
		}
	}
	return room + "/" + name, owner, nil
}

type authError struct{ error }

func (e *authError) Unwrap() error { return e.error }

func refusal(err error) *base.Response {
	var ae *authError
	if errors.As(err, &ae) {
		return status(base.StatusUnauthorized)
	}
	return status(base.StatusBadRequest)
}

// connSlot gives back a connection's place in its address's limit.
type connSlot struct{ release func() }

// OnConnOpen implements gortsplib.ServerHandlerOnConnOpen: a connection
// beyond its address's limit is closed at once.
func (h *handler) OnConnOpen(ctx *gortsplib.ServerHandlerOnConnOpenCtx) {
	release, ok := h.s.perIP.Acquire(addrlimit.Key(ctx.Conn.NetConn().RemoteAddr().String()), h.s.p.MaxConnsPerIP)
	if !ok {
		ctx.Conn.Close()
		return
	}
	ctx.Conn.SetUserData(connSlot{release})
}

// OnConnClose implements gortsplib.ServerHandlerOnConnClose.
func (h *handler) OnConnClose(ctx *gortsplib.ServerHandlerOnConnCloseCtx) {
	if slot, ok := ctx.Conn.UserData().(connSlot); ok {
		slot.release()
	}
}

// OnSessionOpen implements gortsplib.ServerHandlerOnSessionOpen.
func (h *handler) OnSessionOpen(*gortsplib.ServerHandlerOnSessionOpenCtx) { h.s.sessions.Add(1) }

// OnSessionClose implements gortsplib.ServerHandlerOnSessionClose.
func (h *handler) OnSessionClose(ctx *gortsplib.ServerHandlerOnSessionCloseCtx) {
	h.s.sessions.Add(-1)
	d, ok := ctx.Session.UserData().(*session)
	if !ok {
		return
	}
	if d.pub != nil {
		d.pub.close()
	}
	if d.play != nil {
		d.play.close()
	}
	if d.join != nil {
		d.join.Leave()
	}
	if d.out != nil {
		d.out.release()
	}
}

// OnAnnounce implements gortsplib.ServerHandlerOnAnnounce.
func (h *handler) OnAnnounce(ctx *gortsplib.ServerHandlerOnAnnounceCtx) (*base.Response, error) {
	path, owner, err := authorize(h.s.p.Authorize, ctx.Path, ctx.Query, ctx.Conn)
	if err != nil {
		h.s.log.Warn("rtsp publish refused", "path", ctx.Path, "err", err)
		return refusal(err), err
	}
	p, err := h.s.newPublisher(path, owner, ctx.Description)
	if err != nil {
		h.s.log.Warn("rtsp publish refused", "stream", path, "err", err)
		return status(base.StatusUnsupportedMediaType), err
	}
	sessionOf(ctx.Session).pub = p
	return status(base.StatusOK), nil
}

// OnRecord implements gortsplib.ServerHandlerOnRecord.
func (h *handler) OnRecord(ctx *gortsplib.ServerHandlerOnRecordCtx) (*base.Response, error) {
	d := sessionOf(ctx.Session)
	if d.pub == nil {
		return status(base.StatusBadRequest), errors.New("RECORD without ANNOUNCE")
	}
	if err := d.pub.start(ctx.Session); err != nil {
		h.s.log.Warn("rtsp publish refused", "stream", d.pub.path, "err", err)
		return status(base.StatusForbidden), err
	}
	return status(base.StatusOK), nil
}

// OnDescribe implements gortsplib.ServerHandlerOnDescribe.
func (h *handler) OnDescribe(ctx *gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	path, _, err := authorize(h.s.p.AuthorizeRead, ctx.Path, ctx.Query, ctx.Conn)
	if err != nil {
		return refusal(err), nil, err
	}
	o, err := h.s.acquire(path, false)
	if err != nil {
		return status(base.StatusNotFound), nil, err
	}
	return status(base.StatusOK), o.stream, nil
}

// OnSetup implements gortsplib.ServerHandlerOnSetup.
func (h *handler) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	if ctx.Session.State() == gortsplib.ServerSessionStatePreRecord {
		return status(base.StatusOK), nil, nil
	}
	d := sessionOf(ctx.Session)
	if d.out != nil {
		return status(base.StatusOK), d.out.stream, nil
	}
	path, _, err := authorize(h.s.p.AuthorizeRead, ctx.Path, ctx.Query, ctx.Conn)
	if err != nil {
		return refusal(err), nil, err
	}
	if ctx.Transport != nil && ctx.Transport.Protocol != gortsplib.ProtocolTCP {
		return status(base.StatusUnsupportedTransport), nil, nil
	}
	o, err := h.s.acquire(path, true)
	if err != nil {
		return status(base.StatusNotFound), nil, err
	}
	d.out = o
	return status(base.StatusOK), o.stream, nil
}

// OnPause implements gortsplib.ServerHandlerOnPause.
func (h *handler) OnPause(ctx *gortsplib.ServerHandlerOnPauseCtx) (*base.Response, error) {
	if d := sessionOf(ctx.Session); d.play != nil {
		d.play.pause()
	}
	return status(base.StatusOK), nil
}

// OnPlay implements gortsplib.ServerHandlerOnPlay.
func (h *handler) OnPlay(ctx *gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	d := sessionOf(ctx.Session)
	if d.out == nil {
		return status(base.StatusBadRequest), errors.New("PLAY without SETUP")
	}
	if d.join == nil {
		if err := d.out.st.Join(); err != nil {
			return status(base.StatusServiceUnavailable), err
		}
		d.join = d.out.st
	}
	if d.play != nil {
		d.play.resume() // after a PAUSE
		return status(base.StatusOK), nil
	}
	p, err := d.out.play(ctx.Session)
	if err != nil {
		return status(base.StatusServiceUnavailable), err
	}
	d.play = p
	return status(base.StatusOK), nil
}
