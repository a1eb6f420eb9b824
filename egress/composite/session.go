package composite

import (
	"context"
	"encoding/binary"
	"errors"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/livegate/livegate/internal/ffproc"
	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
)

// States of a composite.
const (
	StateStarting   = "starting"   // encoder starting, nothing published yet
	StateLive       = "live"       // ROOM/NAME is published
	StateRestarting = "restarting" // the encoder failed; waiting to restart it
	// StateBlocked: the encoder runs but ROOM/NAME is held by another
	// publisher; LastError says so. Published once it is free.
	StateBlocked = "blocked"
	StateStopped = "stopped"
)

// Info is a composite's state, as the API shows it.
type Info struct {
	Room   string  `json:"room"`
	Stream string  `json:"stream"` // ROOM/NAME of the output
	Opts   Options `json:"options"`
	// StartedBy is "api" or "rule".
	StartedBy string    `json:"startedBy"`
	State     string    `json:"state"`
	Since     time.Time `json:"since"` // of the current state
	Created   time.Time `json:"created"`
	Tiles     []Tile    `json:"tiles"`
	// LayoutChanges counts layout changes; LayoutChangedAt is the last.
	LayoutChanges   int       `json:"layoutChanges"`
	LayoutChangedAt time.Time `json:"layoutChangedAt"`
	// EncoderStarts counts encoder processes started (1 in a healthy
	// composite however often the layout changed).
	EncoderStarts int    `json:"encoderStarts"`
	LastError     string `json:"lastError,omitempty"`
	// FramesSkipped counts frames not composed because the machine fell
	// more than a second behind real time (whole seconds are skipped).
	FramesSkipped int64 `json:"framesSkipped"`
}

// Tile is one host's place on the canvas (an empty rect: heard, not
// seen). Video is false for a host shown as a placeholder.
type Tile struct {
	Host  string `json:"host"`
	Rect  Rect   `json:"rect"`
	Video bool   `json:"video"`
	Audio bool   `json:"audio"`
}

// tile is a copy of a host's place for the video and audio loops.
type tile struct {
	name  string
	rect  Rect
	video *videoIn
	audio *audioIn
}

type host struct {
	name    string
	st      *relay.Stream
	rect    Rect
	video   *videoIn
	audio   *audioIn
	vt      *relay.Track // decodable video track, nil: placeholder tile
	started bool
}

type session struct {
	m       *Manager
	room    string
	outName string // immutable: read without locks (IsOutput)
	by      string
	created time.Time
	out     *output

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	kickC  chan struct{}

	hosts []*host // in join order; only the run goroutine touches them

	mu            sync.Mutex
	o             Options
	view          []tile // what compose, mix and info use
	viewGen       uint64
	state         string
	since         time.Time
	lastErr       string
	encStarts     int
	layoutChanges int
	layoutAt      time.Time
	noHostsSince  time.Time
	skipped       int64
}

func newSession(m *Manager, room string, o Options, by string) *session {
	ctx, cancel := context.WithCancel(context.Background())
	now := time.Now()
	return &session{m: m, room: room, outName: o.Name, by: by, created: now, o: o, ctx: ctx, cancel: cancel,
		done: make(chan struct{}), kickC: make(chan struct{}, 1), state: StateStarting, since: now,
		noHostsSince: now, out: newOutput(m.p.Hub, room+"/"+o.Name, m.p.Logger)}
}

func (s *session) options() Options {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.o
}

func (s *session) setLayout(l Layout, speaker, by string) {
	s.mu.Lock()
	s.o.Layout, s.o.Speaker = l, speaker
	if by == "api" {
		s.by = by // an operator's composite is no longer stopped by its rule
	}
	s.mu.Unlock()
	s.kick()
}

func (s *session) kick() {
	select {
	case s.kickC <- struct{}{}:
	default:
	}
}

func (s *session) stop() {
	s.cancel()
	<-s.done
}

// idleFor is how long the room has had no host.
func (s *session) idleFor() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.view) > 0 {
		return 0
	}
	return time.Since(s.noHostsSince)
}

func (s *session) setState(state, errText string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != state {
		s.state, s.since = state, time.Now()
	}
	if errText != "" {
		s.lastErr = errText
	}
}

func (s *session) info() Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := Info{Room: s.room, Stream: s.room + "/" + s.o.Name, Opts: s.o, StartedBy: s.by, State: s.state, Since: s.since,
		Created: s.created, LayoutChanges: s.layoutChanges, LayoutChangedAt: s.layoutAt, EncoderStarts: s.encStarts,
		LastError: s.lastErr, FramesSkipped: s.skipped, Tiles: []Tile{}}
	if in.State == StateStarting && s.out.live() {
		in.State = StateLive
	}
	if in.State == StateStarting {
		if why := s.out.takenBy(); why != "" {
			in.State, in.LastError = StateBlocked, why
		}
	}
	for _, h := range s.view {
		in.Tiles = append(in.Tiles, Tile{Host: h.name, Rect: h.rect, Audio: h.audio != nil, Video: h.video != nil})
	}
	return in
}

// relayout follows the room: hosts that left lose their tile, new hosts
// get one, and tiles move. Only pictures change: the encoder runs on.
func (s *session) relayout() {
	o := s.options()
	streams := liveHosts(s.m.p.Hub, s.room, o.Name)
	byPath := map[string]*relay.Stream{}
	for _, st := range streams {
		byPath[st.Path()] = st
	}
	d := deps{frames: s.m.p.Frames, ffmpeg: s.m.ffmpeg, log: s.m.p.Logger}
	old := s.hosts
	var kept, gone []*host
	changed := false
	for _, h := range old {
		if st := byPath[h.st.Path()]; st == h.st {
			kept = append(kept, h)
			delete(byPath, h.st.Path())
			continue
		}
		changed = true
		gone = append(gone, h)
	}
	var added []*host
	for p, st := range byPath {
		_, name, _ := strings.Cut(p, "/")
		added = append(added, &host{name: name, st: st})
	}
	sort.Slice(added, func(i, j int) bool { return added[i].name < added[j].name })
	hosts := append(kept, added...)
	names := make([]string, len(hosts))
	for i, h := range hosts {
		names[i] = h.name
	}
	rects := arrange(o.Layout, names, o.Speaker, o.Width, o.Height)
	for i, h := range hosts {
		if h.rect != rects[i] {
			changed = true
		}
		h.rect = rects[i]
		if !h.started {
			h.start(d)
		}
		switch {
		case h.rect.empty():
		case h.video != nil:
			h.video.setSize(h.rect.W, h.rect.H)
		case h.vt != nil:
			h.video = startVideoIn(d, h.st, h.vt, h.rect.W, h.rect.H)
		}
	}
	if len(added) > 0 {
		changed = true
	}
	now := time.Now()
	view := make([]tile, len(hosts))
	for i, h := range hosts {
		view[i] = tile{name: h.name, rect: h.rect, video: h.video, audio: h.audio}
	}
	s.hosts = hosts
	s.mu.Lock()
	s.view = view
	if changed {
		s.viewGen++
	}
	if len(hosts) == 0 && len(old) > 0 {
		s.noHostsSince = now
	}
	if changed {
		s.layoutChanges++
		s.layoutAt = now
	}
	s.mu.Unlock()
	for _, h := range gone {
		h.close()
	}
	if changed {
		s.m.p.Logger.Info("composite: layout", "room", s.room, "layout", o.Layout, "hosts", names)
	}
}

// start finds the host's tracks and starts decoding its audio; its video
// decoder starts once it has a tile.
func (h *host) start(d deps) {
	h.started = true
	var at *relay.Track
	for _, t := range h.st.Tracks() {
		info := t.Info()
		switch {
		case info.Kind == codec.Video && h.vt == nil && videoSupported(info.Codec.MimeType):
			h.vt = t
		case info.Kind == codec.Audio && at == nil && strings.EqualFold(info.Codec.MimeType, codec.MimeOpus):
			at = t
		}
	}
	if at != nil {
		h.audio = startAudioIn(d, h.st, at)
	}
}

func (h *host) close() {
	if h.video != nil {
		h.video.close()
	}
	if h.audio != nil {
		h.audio.close()
	}
}

// pacer is the shared timeline of one encoder run: video and audio are
// each written in real time from its start, by their own goroutines (so
// that ffmpeg waiting on one input never blocks the other).
type pacer struct {
	mu    sync.Mutex
	start time.Time
}

func (p *pacer) since() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return time.Since(p.start)
}

// skip drops whole seconds of wall time (the machine could not keep up):
// both loops then owe that much less, so video and audio stay in step.
func (p *pacer) skip(secs int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.start = p.start.Add(time.Duration(secs) * time.Second)
}

// paced calls write for unit n = 0, 1, ... at start + n*step until ctx
// ends or write fails. behind is called with the whole seconds the loop
// fell behind by.
func paced(ctx context.Context, p *pacer, step time.Duration, behind func(secs int64), write func() error) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	perSec := int64(time.Second / step)
	for n := int64(0); ; {
		due := int64(p.since()/step) + 1
		if late := due - n; late > perSec {
			behind(late / perSec)
			due -= (late / perSec) * perSec
		}
		for ; n < due; n++ {
			if err := write(); err != nil {
				return err
			}
		}
		timer.Reset(time.Duration(due)*step - p.since())
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
	}
}

// run starts the encoder (again, with backoff, when it dies) and follows
// the room while the video and audio loops feed it.
func (s *session) run() {
	defer close(s.done)
	o := s.options()
	gop := max(1, int(s.m.p.KeyframeInterval.Seconds()*float64(o.FPS)+0.5))
	bo := ffproc.Backoff{Min: time.Second, Max: 30 * time.Second}
	defer func() {
		s.mu.Lock()
		s.view = nil
		s.mu.Unlock()
		for _, h := range s.hosts {
			h.close()
		}
		s.hosts = nil
		s.out.close()
	}()
	s.relayout()
	rescan := time.NewTicker(time.Second)
	defer rescan.Stop()
	var retry <-chan time.Time
	for {
		if retry != nil {
			select {
			case <-s.ctx.Done():
				return
			case <-s.kickC:
				s.relayout()
				continue
			case <-rescan.C:
				s.relayout()
				continue
			case <-retry:
				retry = nil
			}
		}
		onVideo, onAudio := s.out.video, s.out.audio
		if tap := s.m.tap; tap != nil { // tests: the encoder's own timestamps
			onVideo = func(pts int64, au [][]byte) { tap(true, pts, au); s.out.video(pts, au) }
			onAudio = func(pts int64, pkts [][]byte) { tap(false, pts, pkts); s.out.audio(pts, pkts) }
		}
		enc, err := startEncoder(s.ctx, s.m.ffmpeg, o, s.m.p.Preset, gop, onVideo, onAudio)
		s.mu.Lock()
		s.encStarts++
		s.mu.Unlock()
		if err != nil {
			wait := bo.Next(0)
			s.setState(StateRestarting, err.Error())
			retry = time.After(wait)
			continue
		}
		s.out.newRun()
		s.setState(StateStarting, "")
		err = s.feed(enc, o, rescan.C)
		ran := time.Since(enc.started)
		if s.ctx.Err() != nil {
			return
		}
		if enc.err != nil {
			err = enc.err
		}
		wait := bo.Next(ran)
		s.m.p.Logger.Warn("composite: encoder failed; restarting", "room", s.room, "err", err, "in", wait)
		s.setState(StateRestarting, err.Error())
		retry = time.After(wait)
	}
}

// feed runs one encoder until it fails or the composite stops.
func (s *session) feed(enc *encoder, o Options, rescan <-chan time.Time) error {
	ctx, cancel := context.WithCancel(s.ctx)
	p := &pacer{start: time.Now()}
	errc := make(chan error, 2)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		k := &composer{c: newCanvas(o.Width, o.Height)}
		errc <- paced(ctx, p, time.Second/time.Duration(o.FPS), func(secs int64) {
			p.skip(secs)
			s.mu.Lock()
			s.skipped += secs * int64(o.FPS)
			s.mu.Unlock()
		}, func() error {
			s.compose(k)
			return enc.writeVideo(k.c.buf)
		})
	}()
	go func() {
		defer wg.Done()
		mix := make([]int32, chunkValues)
		pcm := make([]byte, chunkValues*2)
		// The video loop decides about skipping; audio follows the pacer.
		errc <- paced(ctx, p, 20*time.Millisecond, func(int64) {}, func() error {
			s.mixAudio(mix, pcm)
			return enc.writeAudio(pcm)
		})
	}()
	defer func() {
		cancel()
		enc.stop() // unblocks writes in progress
		wg.Wait()
	}()
	for {
		select {
		case <-s.ctx.Done():
			return nil
		case <-s.kickC:
			s.relayout()
		case <-rescan:
			s.relayout()
		case err := <-errc:
			if err == nil {
				err = errors.New("feeding stopped")
			}
			return err
		case <-enc.done:
			return errors.New("encoder ended")
		}
	}
}

// composer draws the canvas, touching only tiles whose picture changed.
type composer struct {
	c     *canvas
	gen   uint64   // layout drawn
	drawn []uint64 // per tile: picture number drawn, 0: placeholder, ^0: nothing
}

func (s *session) compose(k *composer) {
	s.mu.Lock()
	hosts, gen := s.view, s.viewGen
	s.mu.Unlock()
	c := k.c
	if gen != k.gen || len(k.drawn) != len(hosts) {
		k.gen = gen
		c.fill(Rect{0, 0, c.w, c.h}, 16, 128, 128)
		k.drawn = make([]uint64, len(hosts))
		for i := range k.drawn {
			k.drawn[i] = ^uint64(0)
		}
	}
	for i, h := range hosts {
		if h.rect.empty() {
			continue
		}
		var seq uint64
		if h.video != nil {
			seq = h.video.drawNew(c, h.rect, k.drawn[i])
		}
		if seq == k.drawn[i] {
			continue
		}
		if seq == 0 {
			c.placeholder(h.rect)
		}
		c.caption(h.rect, h.name)
		k.drawn[i] = seq
	}
}

func (s *session) mixAudio(mix []int32, pcm []byte) {
	s.mu.Lock()
	hosts := s.view
	s.mu.Unlock()
	clear(mix)
	for _, h := range hosts {
		if h.audio != nil {
			h.audio.mixInto(mix)
		}
	}
	for i, v := range mix {
		binary.LittleEndian.PutUint16(pcm[2*i:], uint16(int16(max(-32768, min(32767, v)))))
	}
}
