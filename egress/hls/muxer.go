package hls

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gohlslib/v2"
	"github.com/bluenviron/gohlslib/v2/pkg/codecs"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/aac"
	"github.com/livegate/livegate/relay/codec"
	"github.com/livegate/livegate/relay/frames"
)

// muxer is the HLS rendition of one stream.
type muxer struct {
	s     *Server
	path  string
	st    *relay.Stream
	video *relay.Track
	audio *relay.Track
	token string // names this muxer's own init sections

	hls     *gohlslib.Muxer
	ready   chan struct{} // closed once hls is started
	quit    chan struct{}
	done    chan struct{} // closed when run returned
	once    sync.Once
	err     atomic.Pointer[error]
	lastReq atomic.Int64
	active  atomic.Int64
	blocked atomic.Int64 // requests waiting for media (Params.MaxBlocked)
	content atomic.Bool  // the first segment is complete: playlists answer at once

	mu         sync.Mutex
	vs         versions
	partTarget time.Duration // pinned at the first playlist
	target     int           // EXT-X-TARGETDURATION; only grows
	warnedStep bool

	parts partWatch

	// A simulcast layer's muxer (ladder.go) puts its timeline on the top
	// muxer's, so that players switching renditions find the same time at
	// the same media time.
	top  *muxer
	base time.Time // of the timeline; set before ready is closed
}

func newMuxer(s *Server, path string, st *relay.Stream, video, audio *relay.Track) *muxer {
	var b [6]byte
	_, _ = rand.Read(b[:])
	m := &muxer{s: s, path: path, st: st, video: video, audio: audio, token: hex.EncodeToString(b[:]),
		ready: make(chan struct{}), quit: make(chan struct{}), done: make(chan struct{})}
	m.parts.init()
	m.lastReq.Store(time.Now().UnixNano())
	return m
}

func (m *muxer) stop() {
	m.once.Do(func() { close(m.quit) })
	<-m.done
}

func (m *muxer) failure() error {
	if e := m.err.Load(); e != nil {
		return *e
	}
	return ErrStreamEnded
}

func (m *muxer) run() {
	defer close(m.done)
	defer m.s.forget(m)
	err := m.mux()
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, ErrStreamEnded) {
		m.s.log.Info("hls: muxer ended", "stream", m.path, "reason", err)
	}
	if err == nil || errors.Is(err, context.Canceled) {
		err = ErrStreamEnded
	}
	m.err.Store(&err)
}

type input struct {
	clock int64
	zero  time.Time // fixed at start
	track *gohlslib.Track
}

// at is the wall-clock time of a PTS.
func (in *input) at(pts int64) time.Time {
	return in.zero.Add(ticksToDuration(pts, in.clock))
}

// startAudio picks the audio rendition: AAC from the shared transcoder when
// there is one (Safari and iOS play it; everyone else too), else Opus as
// the publisher sent it.
func (m *muxer) startAudio() (ar *frames.Reader, aacR *aac.Reader, err error) {
	if m.audio == nil {
		return nil, nil, nil
	}
	if t := m.s.p.AAC; t != nil && t.Available() {
		r, err := t.Acquire(m.st, m.audio)
		if err == nil {
			return nil, r, nil
		}
		m.s.log.Warn("hls: no AAC rendition, serving Opus (Safari plays it without sound)", "stream", m.path, "err", err)
	}
	ar, err = m.s.p.Frames.Subscribe(m.st, m.audio)
	return ar, nil, err
}

func (m *muxer) mux() error {
	if m.top != nil {
		// The layer's first frame must come after the top's timeline began.
		select {
		case <-m.top.ready:
		case <-m.top.done:
			return ErrNotReady
		case <-m.quit:
			return context.Canceled
		}
	}
	fl := m.s.p.Frames
	vr, err := fl.Subscribe(m.st, m.video)
	if err != nil {
		return err
	}
	defer vr.Close()
	ar, aacR, err := m.startAudio()
	if err != nil {
		return err
	}
	var audioFrames <-chan *frames.Frame
	if ar != nil {
		defer ar.Close()
		audioFrames = ar.Frames()
	}
	var aacFrames <-chan aac.Frame
	if aacR != nil {
		defer aacR.Close()
		aacFrames = aacR.Frames()
	}

	// Wait for a keyframe with parameter sets, then a short settling time
	// so that both tracks' clocks are known, keeping what arrives.
	start := time.NewTimer(m.s.p.StartTimeout)
	defer start.Stop()
	sps, pps := codec.H264SpropParameterSets(m.video.Info().Codec.Fmtp)
	var vbuf, abuf []*frames.Frame
	var cbuf []aac.Frame
	var settle <-chan time.Time
	for settle == nil || len(vbuf) == 0 {
		select {
		case <-m.quit:
			return context.Canceled
		case <-m.st.Done():
			return ErrStreamEnded
		case <-start.C:
			return fmt.Errorf("%w: no H.264 keyframe with SPS/PPS within %v", ErrNotReady, m.s.p.StartTimeout)
		case f := <-vr.Frames():
			if len(vbuf) == 0 {
				s, p := codec.H264ParamSets(f.Units)
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
		case f := <-aacFrames:
			cbuf = append(cbuf, f)
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
		case f := <-aacFrames:
			cbuf = append(cbuf, f)
		}
	}

	vin := &input{clock: int64(vr.ClockRate()), zero: vr.Zero(),
		track: &gohlslib.Track{Codec: &codecs.H264{SPS: sps, PPS: pps}, ClockRate: vr.ClockRate()}}
	tracks := []*gohlslib.Track{vin.track}
	var ain *input
	switch {
	case aacR != nil:
		// ffmpeg knows the AAC configuration with its first output, a few
		// tens of ms after the first Opus frame.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		go func() {
			select {
			case <-m.quit:
			case <-ctx.Done():
			}
			cancel()
		}()
		cfg, err := aacR.Config(ctx)
		cancel()
		if err != nil {
			m.s.log.Warn("hls: AAC transcoder gave no output; serving video only", "stream", m.path, "err", err)
			aacFrames = nil
			break
		}
		ain = &input{clock: int64(cfg.SampleRate),
			track: &gohlslib.Track{Codec: &codecs.MPEG4Audio{Config: *cfg}, ClockRate: cfg.SampleRate, IsDefault: true, Name: "audio"}}
		tracks = append(tracks, ain.track)
	case ar != nil:
		ch := int(m.audio.Info().Codec.Channels)
		if ch <= 0 {
			ch = 2
		}
		ain = &input{clock: int64(ar.ClockRate()), zero: ar.Zero(),
			track: &gohlslib.Track{Codec: &codecs.Opus{ChannelCount: ch}, ClockRate: ar.ClockRate(), IsDefault: true, Name: "audio"}}
		tracks = append(tracks, ain.track)
	}
	// The timeline starts at the first keyframe.
	base := vin.at(vbuf[0].PTS)
	if m.top != nil {
		base = m.top.base
	}
	m.base = base
	m.hls = &gohlslib.Muxer{
		Tracks:             tracks,
		Variant:            gohlslib.MuxerVariantLowLatency,
		SegmentCount:       m.s.p.SegmentCount,
		SegmentMinDuration: m.s.p.SegmentDuration,
		// A part ends at the first frame this long after its start: 7/8 of
		// the aim puts the threshold between frames for 10 to 30 fps, so a
		// millisecond of jitter does not add a frame to some parts.
		PartMinDuration: m.s.p.PartDuration * 7 / 8,
		OnEncodeError:   m.encodeError,
	}
	if err := m.hls.Start(); err != nil {
		return err
	}
	defer m.hls.Close()
	close(m.ready)

	w := &writer{m: m, vr: vr, base: base, vin: vin, ain: ain,
		seg: segmenter{min: m.s.p.SegmentDuration, clock: vin.clock}}
	for _, f := range vbuf {
		w.video(f)
	}
	for _, f := range abuf {
		w.opus(f)
	}
	for _, f := range cbuf {
		w.aac(f)
	}
	// Without its audio the rendition would stall players at the end of
	// the audio they have: end it, and the next request starts over with a
	// new transcoder.
	var aacDone <-chan struct{}
	if aacFrames != nil {
		aacDone = aacR.Done()
	}
	for {
		select {
		case <-m.quit:
			return context.Canceled
		case <-m.st.Done():
			return ErrStreamEnded
		case <-aacDone:
			if err := aacR.Err(); err != nil {
				return fmt.Errorf("audio transcoder failed: %w", err)
			}
			return ErrStreamEnded
		case f := <-vr.Frames():
			w.video(f)
		case f := <-audioFrames:
			w.opus(f)
		case f := <-aacFrames:
			w.aac(f)
		}
	}
}

// encodeError keeps gohlslib's target-duration notices out of the log:
// the playlists announce pinned targets (see mediaRewrite).
func (m *muxer) encodeError(err error) {
	if strings.Contains(err.Error(), "duration changed") {
		m.s.log.Debug("hls: muxer", "stream", m.path, "err", err)
		return
	}
	m.s.log.Warn("hls: muxer", "stream", m.path, "err", err)
}

// pin fixes PART-TARGET once, from the typical part of the first
// segment, and lets the target duration only grow (see mediaRewrite).
//
// Parts end at the first frame at least gohlslib's part duration after
// their start, so with a steady frame rate nearly all have one length,
// give or take a millisecond of timestamp jitter; the first segment's
// longest part is often an outlier (Chromium's first frames come
// unevenly). The median plus 10 ms keeps the typical part within
// 85-100 % of the target, as iOS requires.
func (m *muxer) pin(parts []time.Duration, target int) (time.Duration, int) {
	if m.partTarget == 0 {
		slices.Sort(parts)
		typical := m.s.p.PartDuration
		if len(parts) > 0 {
			typical = parts[len(parts)/2]
		}
		m.partTarget = (typical + 10*time.Millisecond + 9*time.Millisecond) / (10 * time.Millisecond) * (10 * time.Millisecond)
		// Keyframes come about every TargetDuration, a little later when
		// the publisher is slow to answer a request: announce 1.5 times it
		// so that such segments fit.
		m.target = max(target, int((m.s.p.TargetDuration*3/2+time.Second/2)/time.Second), 1)
	}
	if target > m.target {
		m.s.log.Info("hls: a segment is longer than the target duration; the target grows (the publisher's keyframes are further apart)",
			"stream", m.path, "from", m.target, "to", target)
		m.target = target
	}
	return m.partTarget, m.target
}

// outOfStep reports, once per muxer, that gohlslib cut a segment where
// the writer did not expect it (see params.go).
func (m *muxer) outOfStep(seg uint64, want, got time.Time) {
	if m.warnedStep {
		return
	}
	m.warnedStep = true
	m.s.log.Warn("hls: segments are not where expected; players may get the wrong init section after a resolution change",
		"stream", m.path, "segment", seg, "expected", want, "got", got)
}

// initName is the file name of parameter version n's init section.
func (m *muxer) initName(n int) string {
	return m.token + "_init_v" + strconv.Itoa(n) + ".mp4"
}

// initFile returns one of this muxer's init sections by name.
func (m *muxer) initFile(file string) ([]byte, bool) {
	rest, ok := strings.CutPrefix(file, m.token+"_init_v")
	if !ok {
		return nil, false
	}
	n, err := strconv.Atoi(strings.TrimSuffix(rest, ".mp4"))
	if err != nil || !strings.HasSuffix(rest, ".mp4") {
		return nil, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if v := m.vs.get(n); v != nil {
		return v.init, true
	}
	return nil, false
}

// rewrite makes a gohlslib media playlist the one players get; query is
// what gohlslib appends to its URIs (the request's, without _HLS_ keys).
func (m *muxer) rewrite(file string, pl []byte, query string) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	mr := mediaRewrite{vs: &m.vs, pin: m.pin, outOfStep: m.outOfStep}
	if strings.HasPrefix(file, "video") {
		mr.initURI = func(n int) string {
			if query != "" {
				return m.initName(n) + "?" + query
			}
			return m.initName(n)
		}
	}
	return mr.rewrite(pl)
}

// firstSegment is when the first segment is closed by a keyframe request.
const firstSegment = time.Second
