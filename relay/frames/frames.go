// Package frames is the relay's frame layer: readers that need whole
// frames (HLS, RTMP push, RTSP re-muxing) share one depacketiser per track.
// It starts when the first frame reader of a track attaches and stops when
// the last one leaves. Each reader has a bounded queue; a reader that falls
// behind loses frames (counted, logged once a second) and resumes at the
// next keyframe, so a slow reader never slows the publisher or the others.
package frames

import (
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/av1"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/vp9"
	"github.com/pion/rtp"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
)

// Frame is one complete unit of a track: an H.264 access unit (its NAL
// units, access unit delimiters removed), a VP9 frame, an AV1 temporal unit
// (OBUs) or one Opus packet. Frames are shared by all readers: never modify
// one.
type Frame struct {
	// PTS is the presentation time in the track's clock rate, counted from
	// the first frame the depacketiser saw and never wrapping. H.264 from
	// WebRTC has no B-frames, so it is also the decode time.
	PTS int64
	// Key: a decoder can start here (every audio frame).
	Key   bool
	Units [][]byte
}

// Params configures a Layer.
type Params struct {
	// Queue is each reader's queue in frames (default 512: about 8 s of
	// 30 fps video or 10 s of Opus).
	Queue int
	// GOPFrames bounds the per-track cache of frames since the last video
	// keyframe, served to a reader that attaches to a running track
	// (default 600; negative disables it).
	GOPFrames int
	Logger    *slog.Logger
}

// Layer owns the running depacketisers, one per track with frame readers.
type Layer struct {
	p   Params
	mu  sync.Mutex
	src map[*relay.Track]*source
}

// New returns an empty frame layer.
func New(p Params) *Layer {
	if p.Queue <= 0 {
		p.Queue = 512
	}
	if p.GOPFrames == 0 {
		p.GOPFrames = 600
	}
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	return &Layer{p: p, src: make(map[*relay.Track]*source)}
}

// Subscribe attaches a frame reader to track t of stream st. The first
// reader of a track starts its depacketiser. A video reader starts at a
// keyframe.
func (l *Layer) Subscribe(st *relay.Stream, t *relay.Track) (*Reader, error) {
	info := t.Info()
	if !codec.Framed(info.Codec.MimeType) {
		return nil, &UnsupportedError{Mime: info.Codec.MimeType}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.src[t]
	if s == nil {
		s = newSource(l, st, t)
		rd, err := st.AddReader(t, s)
		if err != nil {
			return nil, err
		}
		s.rd.Store(rd)
		l.src[t] = s
		go s.watch()
	}
	r := &Reader{src: s, ch: make(chan *Frame, l.p.Queue), done: make(chan struct{})}
	r.needKey.Store(true)
	s.add(r)
	return r, nil
}

// Active is the number of tracks with a running depacketiser.
func (l *Layer) Active() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.src)
}

func (l *Layer) remove(s *source, r *Reader) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s.removeReader(r) == 0 && l.src[s.track] == s {
		delete(l.src, s.track)
		s.stop()
	}
}

// UnsupportedError is returned for codecs without a depacketiser (VP8).
type UnsupportedError struct{ Mime string }

func (e *UnsupportedError) Error() string {
	return "frames: no depacketiser for " + e.Mime
}

// source is the shared depacketiser of one track. WriteRTP runs on the
// relay worker that serves its reader; the reader list is copy-on-write.
type source struct {
	layer *Layer
	st    *relay.Stream
	track *relay.Track
	info  relay.TrackInfo
	video bool
	h264  bool
	clock float64
	rd    atomic.Pointer[relay.Reader]

	mu          sync.Mutex // serialises WriteRTP and the reader list changes
	readers     atomic.Pointer[[]*Reader]
	dp          Depacketizer
	lastDropped uint64
	lastTS      uint32
	pts         int64
	haveTS      bool
	zeroNS      atomic.Int64 // unix ns of PTS 0, earliest estimate (see Reader.Zero)
	gop         []*Frame
	gopOK       bool

	dropped atomic.Uint64 // frames dropped for slow readers
	quit    chan struct{}
	once    sync.Once
}

func newSource(l *Layer, st *relay.Stream, t *relay.Track) *source {
	info := t.Info()
	clock := float64(info.Codec.ClockRate)
	if clock <= 0 {
		clock = 90000
	}
	s := &source{layer: l, st: st, track: t, info: info, video: info.Kind == codec.Video,
		h264: strings.EqualFold(info.Codec.MimeType, codec.MimeH264), clock: clock,
		dp: NewDepacketizer(info.Codec.MimeType), quit: make(chan struct{})}
	s.readers.Store(&[]*Reader{})
	return s
}

func (s *source) stop() {
	s.once.Do(func() {
		close(s.quit)
		if rd := s.rd.Load(); rd != nil {
			rd.Close()
		}
	})
}

// watch ends the readers when the stream ends and logs drops once a second.
func (s *source) watch() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last uint64
	for {
		select {
		case <-s.quit:
			return
		case <-s.st.Done():
			for _, r := range *s.readers.Load() {
				r.end()
			}
			return
		case <-tick.C:
			if n := s.dropped.Load(); n != last {
				s.layer.p.Logger.Warn("frame readers fell behind; frames dropped, they resume at the next keyframe",
					"stream", s.st.Path(), "kind", s.info.Kind, "dropped", n-last, "total", n)
				last = n
			}
		}
	}
}

func (s *source) add(r *Reader) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.readers.Load()
	list := append(append(make([]*Reader, 0, len(old)+1), old...), r)
	s.readers.Store(&list)
	// A reader joining a running track starts from the cached GOP rather
	// than waiting up to a GOP for the next keyframe.
	if s.video && s.gopOK && len(s.gop) > 0 {
		for _, f := range s.gop {
			s.offer(r, f)
		}
	} else if s.video && len(old) > 0 {
		s.requestKeyframe()
	}
}

func (s *source) removeReader(r *Reader) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.readers.Load()
	list := make([]*Reader, 0, len(old))
	for _, x := range old {
		if x != r {
			list = append(list, x)
		}
	}
	s.readers.Store(&list)
	return len(list)
}

func (s *source) requestKeyframe() {
	if rd := s.rd.Load(); rd != nil {
		rd.RequestKeyframe()
	}
}

// WriteRTP implements relay.Sink.
func (s *source) WriteRTP(h *rtp.Header, payload []byte) error {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if rd := s.rd.Load(); rd != nil {
		// The relay renumbers a reader's packets without gaps after it
		// dropped some for it: its drop counter is how the loss shows.
		if d := rd.Dropped(); d != s.lastDropped {
			s.lastDropped = d
			s.dp = NewDepacketizer(s.info.Codec.MimeType)
		}
	}
	for _, raw := range s.dp.Push(h, payload) {
		s.emit(raw, now)
	}
	return nil
}

// KeyframeCadence implements relay.CadenceSink: every frame reader muxes
// or cuts on keyframes, so the relay keeps the publisher's GOP bounded
// while a track has any (one request per track, however many readers).
func (s *source) KeyframeCadence() bool { return true }

// WriteSenderReport implements relay.Sink. Frame readers place tracks on
// one timeline by arrival (see Reader.Zero).
func (s *source) WriteSenderReport(uint64, uint32, uint32, uint32) error { return nil }

func (s *source) emit(raw RawFrame, now time.Time) {
	if !s.haveTS {
		s.haveTS, s.lastTS = true, raw.TS
	}
	s.pts += int64(int32(raw.TS - s.lastTS))
	s.lastTS = raw.TS
	// PTS 0 happened no later than arrival minus elapsed media time. The
	// minimum over all frames discounts the relay's GOP burst (old frames
	// arriving at once) and network jitter.
	zero := now.UnixNano() - int64(float64(s.pts)/s.clock*1e9)
	if cur := s.zeroNS.Load(); cur == 0 || zero < cur {
		s.zeroNS.Store(zero)
	}
	f := &Frame{PTS: s.pts, Units: raw.Units}
	switch strings.ToLower(s.info.Codec.MimeType) {
	case "video/h264":
		units := f.Units[:0:0]
		for _, n := range raw.Units {
			if len(n) > 0 && h264.NALUType(n[0]&0x1f) != h264.NALUTypeAccessUnitDelimiter {
				units = append(units, n)
			}
		}
		if len(units) == 0 {
			return
		}
		f.Units = units
		f.Key = h264.IsRandomAccess(units)
	case "video/vp9":
		f.Key = vp9.IsRandomAccess(f.Units[0])
	case "video/av1":
		f.Key = av1.IsRandomAccess2(f.Units)
	default:
		f.Key = true
	}
	if s.video {
		s.cache(f)
	}
	for _, r := range *s.readers.Load() {
		s.offer(r, f)
	}
}

func (s *source) cache(f *Frame) {
	max := s.layer.p.GOPFrames
	if max <= 0 {
		return
	}
	if f.Key {
		clear(s.gop)
		s.gop, s.gopOK = s.gop[:0], true
	}
	if !s.gopOK {
		return
	}
	if len(s.gop) >= max {
		clear(s.gop)
		s.gop, s.gopOK = s.gop[:0], false
		return
	}
	s.gop = append(s.gop, f)
}

// offer queues f for r without blocking. Caller holds s.mu.
func (s *source) offer(r *Reader, f *Frame) {
	if r.closed.Load() {
		return
	}
	if r.needKey.Load() {
		if !f.Key {
			return
		}
		r.needKey.Store(false)
	}
	select {
	case r.ch <- f:
	default:
		r.dropped.Add(1)
		s.dropped.Add(1)
		if s.video {
			r.needKey.Store(true)
			s.requestKeyframe()
		}
	}
}

// Reader is one frame consumer of one track.
type Reader struct {
	src     *source
	ch      chan *Frame
	needKey atomic.Bool
	dropped atomic.Uint64
	closed  atomic.Bool
	done    chan struct{}
	endOnce sync.Once
}

// Frames delivers the track's frames in order, starting at a keyframe.
func (r *Reader) Frames() <-chan *Frame { return r.ch }

// Done is closed when the stream ended or the reader was closed.
func (r *Reader) Done() <-chan struct{} { return r.done }

// Info is the track's codec.
func (r *Reader) Info() relay.TrackInfo { return r.src.info }

// Track is the relay track read.
func (r *Reader) Track() *relay.Track { return r.src.track }

// ClockRate is the rate of Frame.PTS.
func (r *Reader) ClockRate() int { return int(r.src.clock) }

// Zero is the wall-clock time at which PTS 0 was captured, as best known
// now (it only moves earlier as frames arrive quicker). The tracks of a
// stream are on one timeline when each frame is placed at
// Zero + PTS/ClockRate; readers fix Zero once they start writing.
func (r *Reader) Zero() time.Time { return time.Unix(0, r.src.zeroNS.Load()) }

// Dropped is the number of frames this reader lost by falling behind.
func (r *Reader) Dropped() uint64 { return r.dropped.Load() }

// RequestKeyframe asks the publisher for a keyframe (coalesced by the relay).
func (r *Reader) RequestKeyframe() { r.src.requestKeyframe() }

// Close detaches the reader; the last one stops the depacketiser.
func (r *Reader) Close() {
	if r.closed.Swap(true) {
		return
	}
	r.end()
	r.src.layer.remove(r.src, r)
}

func (r *Reader) end() { r.endOnce.Do(func() { close(r.done) }) }
