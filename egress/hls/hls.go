// Package hls serves live streams as Low-Latency HLS (fMP4 / CMAF parts,
// gohlslib's muxer) at /hls/ROOM/NAME/index.m3u8. A stream's muxer starts
// with the first request for it, reads frames from the relay's shared
// frame layer, and stops after IdleTimeout without requests or when the
// stream ends.
//
// Codecs: H.264 video and Opus audio, as WebRTC publishers send them (no
// transcoding). Opus in fMP4 plays in hls.js on Chromium and Firefox;
// Safari's native HLS player does not reliably play Opus in fMP4, so Safari
// may play such a stream without sound. Streams without H.264 video
// (VP8/VP9/AV1 publishers) are not served.
package hls

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gohlslib/v2"
	"github.com/bluenviron/gohlslib/v2/pkg/codecs"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
	"github.com/livegate/livegate/relay/frames"
)

// Params configures the HLS server. Zero values take the defaults.
type Params struct {
	Hub    *relay.Hub
	Frames *frames.Layer
	// IdleTimeout stops a stream's muxer this long after its last request
	// (default 60 s).
	IdleTimeout time.Duration
	// SegmentDuration is the minimum segment duration; segments are cut at
	// keyframes (default 1 s).
	SegmentDuration time.Duration
	// PartDuration is the minimum LL-HLS part duration (default 200 ms).
	PartDuration time.Duration
	// SegmentCount is the number of segments in the playlist (default 7,
	// the LL-HLS minimum).
	SegmentCount int
	// RequestTimeout bounds how long a request waits: for the first
	// segment of a new muxer, or a blocking playlist reload (default 15 s).
	RequestTimeout time.Duration
	// StartTimeout ends a muxer that got no H.264 keyframe in this time
	// (default 20 s).
	StartTimeout time.Duration
	Logger       *slog.Logger
}

func (p *Params) defaults() {
	if p.IdleTimeout <= 0 {
		p.IdleTimeout = 60 * time.Second
	}
	if p.SegmentDuration <= 0 {
		p.SegmentDuration = time.Second
	}
	if p.PartDuration <= 0 {
		p.PartDuration = 200 * time.Millisecond
	}
	if p.SegmentCount < 7 {
		p.SegmentCount = 7
	}
	if p.RequestTimeout <= 0 {
		p.RequestTimeout = 15 * time.Second
	}
	if p.StartTimeout <= 0 {
		p.StartTimeout = 20 * time.Second
	}
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
}

// Errors the HTTP layer maps to status codes.
var (
	ErrNoStream   = errors.New("hls: stream not found")
	ErrNoH264     = errors.New("hls: the stream has no H.264 video; HLS serves H.264 (+ Opus)")
	ErrNotReady   = errors.New("hls: the stream has not produced a segment in time")
	ErrClosed     = errors.New("hls: server closed")
	errSPSChanged = errors.New("hls: video parameters changed")
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
	var video, audio *relay.Track
	for _, t := range st.Tracks() {
		mime := t.Info().Codec.MimeType
		switch {
		case video == nil && strings.EqualFold(mime, codec.MimeH264):
			video = t
		case audio == nil && strings.EqualFold(mime, codec.MimeOpus):
			audio = t
		}
	}
	if video == nil {
		return nil, ErrNoH264
	}
	m := &muxer{s: s, path: path, st: st, video: video, audio: audio,
		ready: make(chan struct{}), quit: make(chan struct{}), done: make(chan struct{})}
	m.lastReq.Store(time.Now().UnixNano())
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
// _HLS_msn/_HLS_part, access_token) is passed on.
func (s *Server) Serve(w http.ResponseWriter, r *http.Request, path, file string) error {
	m, err := s.get(path)
	if err != nil {
		return err
	}
	m.active.Add(1)
	defer func() {
		m.lastReq.Store(time.Now().UnixNano())
		m.active.Add(-1)
	}()
	timer := time.NewTimer(s.p.RequestTimeout)
	defer timer.Stop()
	select {
	case <-m.ready:
	case <-m.done:
		return m.failure()
	case <-timer.C:
		return ErrNotReady
	case <-r.Context().Done():
		return r.Context().Err()
	}
	// gohlslib blocks a playlist request until the muxer has what it asks
	// for (without a deadline of its own): answer into a buffer on another
	// goroutine, which ends at the latest when the muxer stops.
	rec := &recorder{header: http.Header{}, code: http.StatusOK}
	finished := make(chan struct{})
	req := r.Clone(context.WithoutCancel(r.Context()))
	req.URL.Path = "/" + file
	go func() {
		defer close(finished)
		m.hls.Handle(rec, req)
	}()
	select {
	case <-finished:
	case <-timer.C:
		return ErrNotReady
	case <-r.Context().Done():
		return r.Context().Err()
	}
	if rec.code == http.StatusNotFound || (rec.code == http.StatusOK && rec.body.Len() == 0 && !rec.wrote) {
		return errNotFound{file}
	}
	h := w.Header()
	for k, v := range rec.header {
		h[k] = v
	}
	h.Set("Cache-Control", cacheControl(file, r, rec.header.Get("Cache-Control")))
	w.WriteHeader(rec.code)
	if r.Method != http.MethodHead {
		_, _ = w.Write(rec.body.Bytes())
	}
	return nil
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
	return errors.As(err, &nf) || errors.Is(err, ErrNoStream)
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

// muxer is the HLS rendition of one stream.
type muxer struct {
	s     *Server
	path  string
	st    *relay.Stream
	video *relay.Track
	audio *relay.Track

	hls     *gohlslib.Muxer
	ready   chan struct{} // closed once hls is started
	quit    chan struct{}
	done    chan struct{} // closed when run returned
	once    sync.Once
	err     atomic.Pointer[error]
	lastReq atomic.Int64
	active  atomic.Int64
}

func (m *muxer) stop() {
	m.once.Do(func() { close(m.quit) })
	<-m.done
}

func (m *muxer) failure() error {
	if e := m.err.Load(); e != nil {
		return *e
	}
	return ErrNoStream
}

func (m *muxer) run() {
	defer close(m.done)
	defer m.s.forget(m)
	err := m.mux()
	if err != nil && !errors.Is(err, context.Canceled) {
		m.s.log.Info("hls: muxer ended", "stream", m.path, "reason", err)
	}
	if err == nil {
		err = ErrNoStream
	}
	m.err.Store(&err)
}

type input struct {
	r     *frames.Reader
	track *gohlslib.Track
	zero  time.Time // fixed at start
	clock int64
}

func (m *muxer) mux() error {
	fl := m.s.p.Frames
	vr, err := fl.Subscribe(m.st, m.video)
	if err != nil {
		return err
	}
	defer vr.Close()
	var ar *frames.Reader
	if m.audio != nil {
		if ar, err = fl.Subscribe(m.st, m.audio); err != nil {
			return err
		}
		defer ar.Close()
	}
	var audioFrames <-chan *frames.Frame
	if ar != nil {
		audioFrames = ar.Frames()
	}

	// Wait for a keyframe with parameter sets, then a short settling time
	// so that both tracks' clocks are known, keeping what arrives.
	start := time.NewTimer(m.s.p.StartTimeout)
	defer start.Stop()
	sps, pps := frames.SpropParameterSets(m.video.Info().Codec.Fmtp)
	var vbuf, abuf []*frames.Frame
	var settle <-chan time.Time
	for settle == nil || len(vbuf) == 0 {
		select {
		case <-m.quit:
			return context.Canceled
		case <-m.st.Done():
			return ErrNoStream
		case <-start.C:
			return fmt.Errorf("no H.264 keyframe with SPS/PPS within %v", m.s.p.StartTimeout)
		case f := <-vr.Frames():
			if len(vbuf) == 0 {
				s, p := frames.H264ParamSets(f.Units)
				if s != nil {
					sps = s
				}
				if p != nil {
					pps = p
				}
				if !f.Key || sps == nil || pps == nil {
					continue
				}
				settle = time.After(300 * time.Millisecond)
			}
			vbuf = append(vbuf, f)
		case f := <-audioFrames:
			abuf = append(abuf, f)
		}
	}
	for waiting := true; waiting; {
		select {
		case <-m.quit:
			return context.Canceled
		case <-settle:
			waiting = false
		case f := <-vr.Frames():
			vbuf = append(vbuf, f)
		case f := <-audioFrames:
			abuf = append(abuf, f)
		}
	}

	vin := &input{r: vr, clock: int64(vr.ClockRate()), zero: vr.Zero(),
		track: &gohlslib.Track{Codec: &codecs.H264{SPS: sps, PPS: pps}, ClockRate: vr.ClockRate()}}
	tracks := []*gohlslib.Track{vin.track}
	var ain *input
	if ar != nil {
		ch := int(m.audio.Info().Codec.Channels)
		if ch <= 0 {
			ch = 2
		}
		ain = &input{r: ar, clock: int64(ar.ClockRate()), zero: ar.Zero(),
			track: &gohlslib.Track{Codec: &codecs.Opus{ChannelCount: ch}, ClockRate: ar.ClockRate(), IsDefault: true, Name: "audio"}}
		tracks = append(tracks, ain.track)
	}
	// The timeline starts at the first keyframe.
	base := vin.at(vbuf[0].PTS)
	m.hls = &gohlslib.Muxer{
		Tracks:             tracks,
		Variant:            gohlslib.MuxerVariantLowLatency,
		SegmentCount:       m.s.p.SegmentCount,
		SegmentMinDuration: m.s.p.SegmentDuration,
		PartMinDuration:    m.s.p.PartDuration,
		OnEncodeError: func(err error) {
			m.s.log.Warn("hls: muxer", "stream", m.path, "err", err)
		},
	}
	if err := m.hls.Start(); err != nil {
		return err
	}
	defer m.hls.Close()
	close(m.ready)

	w := &writer{m: m, base: base, sps: sps, vin: vin, ain: ain}
	for _, f := range vbuf {
		if err := w.video(f); err != nil {
			return err
		}
	}
	for _, f := range abuf {
		w.audio(f)
	}
	for {
		select {
		case <-m.quit:
			return context.Canceled
		case <-m.st.Done():
			return ErrNoStream
		case f := <-vr.Frames():
			if err := w.video(f); err != nil {
				return err
			}
		case f := <-audioFrames:
			w.audio(f)
		}
	}
}

// at is the wall-clock time of a PTS.
func (in *input) at(pts int64) time.Time {
	return in.zero.Add(time.Duration(pts * int64(time.Second) / in.clock))
}

// writer places frames on the muxer's timeline: ticks of each track's
// clock since base.
type writer struct {
	m        *muxer
	base     time.Time
	sps      []byte
	vin, ain *input
	lastV    int64
	lastA    int64
	haveV    bool
	haveA    bool
}

func (w *writer) pts(in *input, f *frames.Frame) (int64, time.Time) {
	at := in.at(f.PTS)
	return int64(at.Sub(w.base)) * in.clock / int64(time.Second), at
}

func (w *writer) video(f *frames.Frame) error {
	if s, _ := frames.H264ParamSets(f.Units); s != nil && !bytes.Equal(s, w.sps) {
		// fMP4 fixes the parameters in the init segment: a new muxer
		// (new segment names) starts with the next request.
		return errSPSChanged
	}
	pts, at := w.pts(w.vin, f)
	if pts < 0 || (w.haveV && pts <= w.lastV) {
		return nil
	}
	w.lastV, w.haveV = pts, true
	if err := w.m.hls.WriteH264(w.vin.track, at, pts, f.Units); err != nil {
		w.m.s.log.Debug("hls: write video", "stream", w.m.path, "err", err)
	}
	return nil
}

func (w *writer) audio(f *frames.Frame) {
	if w.ain == nil {
		return
	}
	pts, at := w.pts(w.ain, f)
	if pts < 0 || (w.haveA && pts <= w.lastA) {
		return
	}
	w.lastA, w.haveA = pts, true
	if err := w.m.hls.WriteOpus(w.ain.track, at, pts, f.Units); err != nil {
		w.m.s.log.Debug("hls: write audio", "stream", w.m.path, "err", err)
	}
}
