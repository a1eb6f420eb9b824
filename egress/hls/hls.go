// Package hls serves live streams as Low-Latency HLS (fMP4 / CMAF parts,
// gohlslib's muxer) at /hls/ROOM/NAME/index.m3u8. A stream's muxer starts
// with the first request for it, reads frames from the relay's shared
// frame layer, and stops after IdleTimeout without requests or when the
// stream ends.
//
// Codecs: H.264 video as the publisher sends it. Audio is AAC from the
// stream's shared Opus->AAC transcoder (relay/aac) when ffmpeg is there, so
// that Safari and iOS play sound; without it, Opus as sent (hls.js on
// Chromium and Firefox plays it, Safari does not). Streams without H.264
// video (VP8/VP9/AV1 publishers) are not served.
//
// A change of the H.264 parameters (a browser publisher's resolution step)
// does not restart anything: the playlists go on with a discontinuity and
// a new init section (see params.go). Nor does a publisher's pause: the
// gap is cut from the timeline, with a discontinuity (see write.go). The
// multivariant playlist announces the largest picture and highest level
// seen (master.go).
package hls

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/aac"
	"github.com/livegate/livegate/relay/frames"
)

// Params configures the HLS server. Zero values take the defaults.
type Params struct {
	Hub    *relay.Hub
	Frames *frames.Layer
	// AAC, when set and ffmpeg is available, gives the streams an AAC
	// audio rendition (shared with RTMP push: one transcoder per stream);
	// nil serves Opus as the publisher sent it.
	AAC *aac.Transcoders
	// IdleTimeout stops a stream's muxer this long after its last request
	// (default 60 s).
	IdleTimeout time.Duration `flag:"hls-idle" help:"stop a stream's HLS muxer after this long without requests"`
	// SegmentDuration is the minimum segment duration: a segment ends at
	// the first keyframe this long after its start. The default, 1 ms,
	// starts a segment at every keyframe, so that a resolution step (which
	// comes with a keyframe) always starts a segment, the only place where
	// the playlist can announce its new init section. Keyframes come about
	// every TargetDuration; the first segment is closed after about 1 s.
	SegmentDuration time.Duration
	// TargetDuration is the publisher's expected keyframe interval, which
	// the relay keeps at --keyframe-max-interval for publishers that take
	// keyframe requests (default 2 s). The playlists announce 1.5 times
	// it as EXT-X-TARGETDURATION (rounded to seconds), so that a segment
	// whose keyframe came a little late still fits, or the first
	// segment's length if that is more (a publisher with a long GOP); it
	// grows only if a segment is longer still. A publisher's pause does
	// not make a segment longer: it is cut from the timeline (write.go).
	TargetDuration time.Duration
	// PartDuration is the LL-HLS part duration aimed for (default 200
	// ms); parts end on frames.
	PartDuration time.Duration
	// SegmentCount is the number of segments in the playlist (default
	// 12, at least 7, the LL-HLS minimum): with a keyframe about every
	// TargetDuration, and some sooner (viewers' keyframe requests), the
	// window stays above the three target durations HLS requires.
	SegmentCount int
	// RequestTimeout bounds how long a request waits for the first
	// segment of a new muxer or for a part (default 15 s).
	RequestTimeout time.Duration
	// BlockTimeout bounds a blocking playlist reload (_HLS_msn); when it
	// passes, the current playlist is the answer (default 3 x
	// TargetDuration).
	BlockTimeout time.Duration
	// MaxBlocked bounds a stream's requests that wait for media: blocking
	// playlist reloads (_HLS_msn) and requests for a part not yet complete
	// (default 1000, about 300 hls.js players reading it directly; a CDN
	// in front sends a handful). While a publisher stalls every player's
	// requests wait; past the bound a request is answered at once with
	// ErrBusy (HTTP 503, Retry-After).
	MaxBlocked int `flag:"hls-max-blocked" help:"requests of one stream that may wait for HLS media (blocking playlist reloads, parts); more are answered 503"`
	// StartTimeout ends a muxer that got no H.264 keyframe in this time
	// (default 20 s).
	StartTimeout time.Duration
	Logger       *slog.Logger
}

// DefaultParams are the settings livegate starts with, and those a zero
// Params field stands for (BlockTimeout: 3 x TargetDuration).
func DefaultParams() Params {
	return Params{
		IdleTimeout:     60 * time.Second,
		SegmentDuration: time.Millisecond,
		TargetDuration:  2 * time.Second,
		PartDuration:    200 * time.Millisecond,
		SegmentCount:    12,
		RequestTimeout:  15 * time.Second,
		MaxBlocked:      1000,
		StartTimeout:    20 * time.Second,
	}
}

func (p *Params) defaults() {
	d := DefaultParams()
	if p.IdleTimeout <= 0 {
		p.IdleTimeout = d.IdleTimeout
	}
	if p.SegmentDuration <= 0 {
		p.SegmentDuration = d.SegmentDuration
	}
	if p.PartDuration <= 0 {
		p.PartDuration = d.PartDuration
	}
	if p.TargetDuration <= 0 {
		p.TargetDuration = d.TargetDuration
	}
	if p.BlockTimeout <= 0 {
		p.BlockTimeout = 3 * p.TargetDuration
	}
	if p.SegmentCount <= 0 {
		p.SegmentCount = d.SegmentCount
	}
	if p.SegmentCount < 7 {
		p.SegmentCount = 7
	}
	if p.RequestTimeout <= 0 {
		p.RequestTimeout = d.RequestTimeout
	}
	if p.MaxBlocked <= 0 {
		p.MaxBlocked = d.MaxBlocked
	}
	if p.StartTimeout <= 0 {
		p.StartTimeout = d.StartTimeout
	}
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
}

// Errors the HTTP layer maps to status codes.
var (
	ErrNoStream    = errors.New("hls: stream not found")
	ErrNoH264      = errors.New("hls: the stream has no H.264 video; HLS serves H.264 (+ AAC or Opus)")
	ErrNotReady    = errors.New("hls: the stream has not produced a segment in time")
	ErrClosed      = errors.New("hls: server closed")
	ErrStreamEnded = errors.New("hls: the stream ended")
	// ErrBadRequest: LL-HLS query parameters that are malformed or ask for
	// a part too far ahead.
	ErrBadRequest = errors.New("hls: bad _HLS_msn/_HLS_part, or too far ahead of the live edge")
	// ErrGap: a request for a gap segment of the playlist, which has no
	// media (EXT-X-GAP): players should not ask, some do.
	ErrGap = errors.New("hls: gap segment (EXT-X-GAP) has no media")
	// ErrBusy: the stream has MaxBlocked requests waiting for media
	// already (a stalled publisher and many players); try again shortly.
	ErrBusy = errors.New("hls: too many requests waiting for this stream's next part; retry")
)

// Server holds the running muxers.
type Server struct {
	p      Params
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	muxers map[string]*muxer
	closed bool
}

// New starts the idle reaper; Close stops everything.
func New(p Params) *Server {
	p.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{p: p, log: p.Logger, ctx: ctx, cancel: cancel, muxers: make(map[string]*muxer)}
	s.wg.Add(1)
	go s.reap()
	return s
}

// Close stops every muxer and waits for their goroutines.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	list := make([]*muxer, 0, len(s.muxers))
	for _, m := range s.muxers {
		list = append(list, m)
	}
	s.mu.Unlock()
	s.cancel()
	for _, m := range list {
		m.stop()
	}
	s.wg.Wait()
}

// Muxers is the number of running muxers.
func (s *Server) Muxers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.muxers)
}

func (s *Server) reap() {
	defer s.wg.Done()
	every := s.p.IdleTimeout / 4
	if every > 5*time.Second {
		every = 5 * time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now().UnixNano()
		s.mu.Lock()
		for _, m := range s.muxers {
			if m.active.Load() == 0 && time.Duration(now-m.lastReq.Load()) > s.p.IdleTimeout {
				s.log.Info("hls: muxer idle, stopping", "stream", m.path)
				go m.stop()
			}
		}
		s.mu.Unlock()
	}
}

// get returns the running muxer of path or starts one.
func (s *Server) get(path string) (*muxer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if m := s.muxers[path]; m != nil {
		return m, nil
	}
	st, ok := s.p.Hub.Get(path)
	if !ok {
		return nil, ErrNoStream
	}
	video, audio := frames.H264AndOpus(st)
	if video == nil {
		return nil, ErrNoH264
	}
	m := newMuxer(s, path, st, video, audio)
	s.muxers[path] = m
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		m.run()
	}()
	s.log.Info("hls: muxer started", "stream", path)
	return m, nil
}

func (s *Server) forget(m *muxer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.muxers[m.path] == m {
		delete(s.muxers, m.path)
	}
}

// Serve answers a request for file (index.m3u8, a media playlist, init,
// segment or part) of stream path. The request's query (LL-HLS
// _HLS_msn/_HLS_part, access_token) is passed on. A client that goes away
// gets context.Canceled (nothing is written).
func (s *Server) Serve(w http.ResponseWriter, r *http.Request, path, file string) error {
	// A lower simulcast layer's rendition (ladder.go).
	prefix := ""
	rid, inner, isLayer := layerFile(file)
	if isLayer {
		prefix, file = layerPrefix+rid+".", inner
	}
	if file == "gap.mp4" {
		return ErrGap
	}
	var m *muxer
	var err error
	if isLayer {
		m, err = s.getLayer(path, rid)
	} else {
		m, err = s.get(path)
	}
	if err != nil {
		return err
	}
	m.active.Add(1)
	defer func() {
		m.lastReq.Store(time.Now().UnixNano())
		m.active.Add(-1)
	}()
	ctx, cancel := context.WithTimeout(r.Context(), s.p.RequestTimeout)
	defer cancel()
	select {
	case <-m.ready:
	case <-m.done:
		return m.failure()
	case <-ctx.Done():
		return timeoutOr(r, ErrNotReady)
	}
	if init, ok := m.initFile(file); ok {
		h := w.Header()
		h.Set("Content-Type", "video/mp4")
		h.Set("Cache-Control", cacheControl(file, r, ""))
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(init)
		}
		return nil
	}
	q := r.URL.Query()
	if n, ok := partNumber(`URI="` + file + `"`); ok {
		if !m.block() {
			return ErrBusy
		}
		found, err := m.parts.wait(ctx, m, n)
		m.blocked.Add(-1)
		switch {
		case err != nil && ctx.Err() != nil:
			return timeoutOr(r, ErrNotReady)
		case err != nil:
			return err
		case !found:
			return errNotFound{file}
		}
	}
	// Delta playlists (_HLS_skip) are not offered (see mediaRewrite).
	q.Del("_HLS_skip")
	blocking := q.Get("_HLS_msn") != ""
	if q.Get("_HLS_part") != "" && !blocking {
		return ErrBadRequest
	}
	if blocking {
		// The reload waits here, not in gohlslib, which would keep a
		// goroutine per request until the part comes, whether or not
		// its client is still there.
		msn, part, err := parseMSN(q)
		if err != nil {
			return err
		}
		if !m.block() {
			return ErrBusy
		}
		wait, c := context.WithTimeout(ctx, s.p.BlockTimeout)
		err = m.parts.waitPlaylist(wait, m, msn, part)
		c()
		m.blocked.Add(-1)
		switch {
		case r.Context().Err() != nil:
			return context.Canceled
		case err != nil && wait.Err() == nil:
			return err // the stream ended
		case err != nil:
			// The part asked for did not come in time (a publisher that
			// stalls): the current playlist tells the player where
			// things are.
			q.Del("_HLS_msn")
			q.Del("_HLS_part")
		}
	}
	rec, err := m.handle(ctx, r, file, q)
	if err != nil {
		return timeoutOr(r, err)
	}
	switch {
	case rec.code == http.StatusNotFound || (rec.code == http.StatusOK && rec.body.Len() == 0 && !rec.wrote):
		return errNotFound{file}
	case rec.code == http.StatusBadRequest:
		return ErrBadRequest
	case rec.code != http.StatusOK:
		// gohlslib answers 500 when its muxer closed under a request.
		select {
		case <-m.done:
			return m.failure()
		case <-time.After(100 * time.Millisecond):
		}
		return ErrStreamEnded
	}
	body := rec.body.Bytes()
	if strings.HasSuffix(file, "_stream.m3u8") {
		body = m.rewrite(file, body, filterHLSParams(q))
	}
	switch {
	case isLayer && strings.HasSuffix(file, ".m3u8"):
		body = prefixURIs(body, prefix)
	case !isLayer && file == "index.m3u8":
		body = ladder(m.master(body), m.video)
	}
	if !isLayer && strings.HasSuffix(file, ".m3u8") {
		s.warmLayers(path, m)
	}
	h := w.Header()
	for k, v := range rec.header {
		h[k] = v
	}
	h.Set("Cache-Control", cacheControl(file, r, rec.header.Get("Cache-Control")))
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
	return nil
}

// block counts a request that waits for media, unless the stream has
// MaxBlocked already.
func (m *muxer) block() bool {
	if m.blocked.Add(1) > int64(m.s.p.MaxBlocked) {
		m.blocked.Add(-1)
		return false
	}
	return true
}

// parseMSN reads _HLS_msn and _HLS_part (-1 part: none, which gohlslib
// reads as part 0).
func parseMSN(q url.Values) (msn, part uint64, err error) {
	msn, err = strconv.ParseUint(q.Get("_HLS_msn"), 10, 64)
	if err != nil {
		return 0, 0, ErrBadRequest
	}
	if v := q.Get("_HLS_part"); v != "" {
		if part, err = strconv.ParseUint(v, 10, 64); err != nil {
			return 0, 0, ErrBadRequest
		}
	}
	return msn, part, nil
}

// timeoutOr is context.Canceled when the client went away, else err.
func timeoutOr(r *http.Request, err error) error {
	if r.Context().Err() != nil {
		return context.Canceled
	}
	return err
}

// filterHLSParams is the query gohlslib appends to the URIs it lists.
func filterHLSParams(q url.Values) string {
	c := url.Values{}
	for k, v := range q {
		if !strings.HasPrefix(k, "_HLS_") {
			c[k] = v
		}
	}
	return c.Encode()
}

// handle asks gohlslib. It blocks a playlist request until the muxer has
// what it asks for, without a deadline of its own: the answer goes into a
// buffer on another goroutine, which ends at the latest when the muxer
// stops.
func (m *muxer) handle(ctx context.Context, r *http.Request, file string, q url.Values) (*recorder, error) {
	rec := &recorder{header: http.Header{}, code: http.StatusOK}
	req := r.Clone(context.WithoutCancel(r.Context()))
	req.URL.Path = "/" + file
	req.URL.RawQuery = q.Encode()
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		m.hls.Handle(rec, req)
	}()
	select {
	case <-finished:
		return rec, nil
	case <-m.done:
		return nil, m.failure()
	case <-ctx.Done():
		return nil, ErrNotReady
	}
}

// cacheControl gives a CDN what it may keep: segments, parts and init
// segments have names unique to one muxer run and never change; playlists
// change with every part, so they are cached for a second at most, and
// blocking LL-HLS reloads (which name the part they wait for) not at all.
func cacheControl(file string, r *http.Request, muxerValue string) string {
	switch {
	case strings.HasSuffix(file, ".mp4"):
		return "public, max-age=31536000, immutable"
	case file == "index.m3u8":
		return "public, max-age=1"
	case r.URL.Query().Get("_HLS_msn") != "":
		return "no-cache"
	case strings.HasSuffix(file, ".m3u8"):
		return "public, max-age=1"
	}
	return muxerValue
}

type errNotFound struct{ file string }

func (e errNotFound) Error() string { return "hls: no such file: " + e.file }

// IsNotFound reports whether err means the file or stream does not exist.
func IsNotFound(err error) bool {
	var nf errNotFound
	return errors.As(err, &nf) || errors.Is(err, ErrNoStream) || errors.Is(err, ErrGap)
}

// recorder buffers one gohlslib answer.
type recorder struct {
	mu     sync.Mutex
	header http.Header
	code   int
	wrote  bool
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.code, r.wrote = code, true
}
func (r *recorder) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.wrote = true
	return r.body.Write(b)
}
