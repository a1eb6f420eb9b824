// Package composite mixes the hosts of a room into one stream, ROOM/composite
// (H.264 + Opus), published back into the relay like any ingest: WHEP
// viewers, LL-HLS, RTMP push jobs and rules and recordings take it with no
// code of their own. Operators push a co-hosted show to a CDN or record it
// as the audience sees it.
//
// Per host, an ffmpeg decodes the video (from the relay's frame readers) to
// raw pictures of its tile's size and another decodes the Opus to PCM. Go
// places the pictures on a canvas at the output frame rate and sums the
// audio; one ffmpeg per room encodes the canvas and the mix. Layouts are
// therefore only a matter of where pictures go: a host joining or leaving
// changes the next frame, and the encoder, and every output reading the
// composite, never restarts. Every ffmpeg is supervised and restarted with
// backoff.
package composite

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/livegate/livegate/internal/ffproc"
	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/frames"
)

// Errors of the API.
var (
	ErrNotFound = errors.New("composite: no composite for this room")
	ErrBadInput = errors.New("composite: bad settings")
	// ErrRunning: only the layout and speaker of a running composite can
	// change; other settings need a DELETE and a new POST.
	ErrRunning = errors.New("composite: a composite with other settings runs for this room; only layout and speaker change live (DELETE it first)")
	ErrClosed  = errors.New("composite: shutting down")
)

// Options are one composite's settings. Zero values take the defaults.
type Options struct {
	Layout       Layout `json:"layout"`
	Width        int    `json:"width"`
	Height       int    `json:"height"`
	FPS          int    `json:"fps"`
	VideoBitrate int    `json:"videoBitrate"` // bit/s
	AudioBitrate int    `json:"audioBitrate"` // bit/s
	// Speaker is the host (stream name) shown large in the speaker layout
	// when no screen share is on.
	Speaker string `json:"speaker,omitempty"`
	// Name of the output stream in the room (default "composite").
	Name string `json:"name"`
}

// Defaults measured to fit this project's 2-core machines (see
// docs/performance.md).
const (
	DefaultWidth        = 1280
	DefaultHeight       = 720
	DefaultFPS          = 30
	DefaultVideoBitrate = 2_500_000
	DefaultAudioBitrate = 96_000
	DefaultName         = "composite"
	DefaultPreset       = "veryfast"
)

func (o Options) withDefaults(d Options) Options {
	if o.Layout == "" {
		o.Layout = d.Layout
	}
	if o.Width == 0 && o.Height == 0 {
		o.Width, o.Height = d.Width, d.Height
	}
	if o.FPS == 0 {
		o.FPS = d.FPS
	}
	if o.VideoBitrate == 0 {
		o.VideoBitrate = d.VideoBitrate
	}
	if o.AudioBitrate == 0 {
		o.AudioBitrate = d.AudioBitrate
	}
	if o.Name == "" {
		o.Name = d.Name
	}
	return o
}

func builtinDefaults() Options {
	return Options{Layout: Grid, Width: DefaultWidth, Height: DefaultHeight, FPS: DefaultFPS,
		VideoBitrate: DefaultVideoBitrate, AudioBitrate: DefaultAudioBitrate, Name: DefaultName}
}

// validate checks settings after defaults.
func (o *Options) validate() error {
	l, err := ParseLayout(string(o.Layout))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadInput, err)
	}
	o.Layout = l
	switch {
	case o.Width < 160 || o.Width > 1920 || o.Width%2 != 0 || o.Height < 90 || o.Height > 1080 || o.Height%2 != 0:
		return fmt.Errorf("%w: size %dx%d: width 160-1920 and height 90-1080, both even", ErrBadInput, o.Width, o.Height)
	case o.FPS < 1 || o.FPS > 60:
		return fmt.Errorf("%w: fps %d: 1-60", ErrBadInput, o.FPS)
	case o.VideoBitrate < 100_000 || o.VideoBitrate > 20_000_000:
		return fmt.Errorf("%w: videoBitrate %d: 100000-20000000 bit/s", ErrBadInput, o.VideoBitrate)
	case o.AudioBitrate < 16_000 || o.AudioBitrate > 510_000:
		return fmt.Errorf("%w: audioBitrate %d: 16000-510000 bit/s", ErrBadInput, o.AudioBitrate)
	case !relay.ValidName(o.Name):
		return fmt.Errorf("%w: name %q: 1-64 characters of A-Z a-z 0-9 _ -", ErrBadInput, o.Name)
	case o.Speaker != "" && !relay.ValidName(o.Speaker):
		return fmt.Errorf("%w: speaker %q is not a stream name", ErrBadInput, o.Speaker)
	}
	return nil
}

// Rule composites the rooms matching Pattern (path.Match syntax, e.g.
// "show-*") while they have hosts.
type Rule struct {
	Pattern string
	Options Options
}

// ParseRule reads "PATTERN" or "PATTERN?layout=speaker&size=1280x720&fps=30&videoBitrate=2500000&audioBitrate=96000&name=composite".
func ParseRule(s string) (Rule, error) {
	pat, query, _ := strings.Cut(strings.TrimSpace(s), "?")
	if pat == "" {
		return Rule{}, fmt.Errorf("composite rule %q: empty room pattern", s)
	}
	if _, err := path.Match(pat, "x"); err != nil || strings.Contains(pat, "/") {
		return Rule{}, fmt.Errorf("composite rule %q: bad room pattern", s)
	}
	r := Rule{Pattern: pat}
	q, err := url.ParseQuery(query)
	if err != nil {
		return Rule{}, fmt.Errorf("composite rule %q: %v", s, err)
	}
	num := func(k string, dst *int) error {
		if v := q.Get(k); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("composite rule %q: %s=%q is not a number", s, k, v)
			}
			*dst = n
		}
		return nil
	}
	for k := range q {
		switch k {
		case "layout":
			r.Options.Layout = Layout(q.Get(k))
		case "size":
			w, h, ok := strings.Cut(q.Get(k), "x")
			var err1, err2 error
			r.Options.Width, err1 = strconv.Atoi(w)
			r.Options.Height, err2 = strconv.Atoi(h)
			if !ok || err1 != nil || err2 != nil {
				return Rule{}, fmt.Errorf("composite rule %q: size wants WIDTHxHEIGHT", s)
			}
		case "fps":
			err = num(k, &r.Options.FPS)
		case "videoBitrate":
			err = num(k, &r.Options.VideoBitrate)
		case "audioBitrate":
			err = num(k, &r.Options.AudioBitrate)
		case "name":
			r.Options.Name = q.Get(k)
		case "speaker":
			r.Options.Speaker = q.Get(k)
		default:
			return Rule{}, fmt.Errorf("composite rule %q: unknown setting %q", s, k)
		}
		if err != nil {
			return Rule{}, err
		}
	}
	o := r.Options.withDefaults(builtinDefaults())
	if err := o.validate(); err != nil {
		return Rule{}, fmt.Errorf("composite rule %q: %w", s, err)
	}
	return r, nil
}

// Params configures a Manager.
type Params struct {
	Hub    *relay.Hub
	Frames *frames.Layer
	// FFmpeg binary ("" looks up "ffmpeg" in PATH; "-": none, every start
	// fails with ErrNoFFmpeg).
	FFmpeg string
	// Defaults for settings a request or rule leaves out (zero fields:
	// 1280x720, 30 fps, 2.5 Mb/s, 96 kb/s, grid, "composite").
	Defaults Options
	Rules    []Rule
	// Preset is x264's speed preset (default DefaultPreset).
	Preset string
	// KeyframeInterval is the output's GOP (default 2 s): viewers that
	// join start from the relay's GOP cache.
	KeyframeInterval time.Duration
	// Linger: a composite started by a rule stops after its room has had
	// no host this long (default 10 s).
	Linger time.Duration
	Logger *slog.Logger
}

// Manager runs the composites, one per room at most.
type Manager struct {
	p      Params
	ffmpeg string

	mu       sync.Mutex
	sessions map[string]*session
	closed   bool

	// tap, set by tests before any start, sees the encoder's output with
	// its MPEG-TS timestamps (90 kHz).
	tap func(video bool, pts int64, units [][]byte)

	events         chan string
	overrun        chan struct{}
	warnedNoFFmpeg atomic.Bool
	unsub          func()
	quit           chan struct{}
	done           chan struct{}
}

// New starts a manager; Close stops it and every composite.
func New(p Params) *Manager {
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	p.Defaults = p.Defaults.withDefaults(builtinDefaults())
	if p.Preset == "" {
		p.Preset = DefaultPreset
	}
	if p.KeyframeInterval <= 0 {
		p.KeyframeInterval = 2 * time.Second
	}
	if p.Linger <= 0 {
		p.Linger = 10 * time.Second
	}
	m := &Manager{p: p, ffmpeg: ffproc.Find(p.FFmpeg), sessions: map[string]*session{},
		events: make(chan string, 256), overrun: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	// Hub callbacks must not block or call the hub: hand the room over.
	m.unsub = p.Hub.Subscribe(func(e relay.Event) {
		switch e.Type {
		case relay.StreamStarted, relay.PublisherBack, relay.PublisherLeft, relay.StreamEnded:
		default:
			return
		}
		room, _, _ := strings.Cut(e.Path, "/")
		select {
		case m.events <- room:
		default:
			select {
			case m.overrun <- struct{}{}:
			default:
			}
		}
	})
	go m.run()
	return m
}

// Available reports whether ffmpeg was found.
func (m *Manager) Available() bool { return m.ffmpeg != "" }

// Start composites room with o, or changes the layout and speaker of its
// running composite (created is then false).
func (m *Manager) Start(room string, o Options) (in Info, created bool, err error) {
	if !relay.ValidName(room) {
		return Info{}, false, fmt.Errorf("%w: room %q: 1-64 characters of A-Z a-z 0-9 _ -", ErrBadInput, room)
	}
	return m.start(room, o, "api")
}

func (m *Manager) start(room string, o Options, by string) (Info, bool, error) {
	o = o.withDefaults(m.p.Defaults)
	if err := o.validate(); err != nil {
		return Info{}, false, err
	}
	if m.ffmpeg == "" {
		return Info{}, false, ErrNoFFmpeg
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Info{}, false, ErrClosed
	}
	if s := m.sessions[room]; s != nil {
		cur := s.options()
		if cur.Width != o.Width || cur.Height != o.Height || cur.FPS != o.FPS || cur.VideoBitrate != o.VideoBitrate ||
			cur.AudioBitrate != o.AudioBitrate || cur.Name != o.Name {
			return s.info(), false, ErrRunning
		}
		s.setLayout(o.Layout, o.Speaker, by)
		return s.info(), false, nil
	}
	s := newSession(m, room, o, by)
	m.sessions[room] = s
	go s.run()
	return s.info(), true, nil
}

// Stop ends room's composite; its stream ends like a publisher leaving.
func (m *Manager) Stop(room string) (Info, error) {
	m.mu.Lock()
	s := m.sessions[room]
	delete(m.sessions, room)
	m.mu.Unlock()
	if s == nil {
		return Info{}, ErrNotFound
	}
	s.stop()
	in := s.info()
	in.State = StateStopped
	return in, nil
}

// Get is room's composite.
func (m *Manager) Get(room string) (Info, error) {
	m.mu.Lock()
	s := m.sessions[room]
	m.mu.Unlock()
	if s == nil {
		return Info{}, ErrNotFound
	}
	return s.info(), nil
}

// List is every composite, by room.
func (m *Manager) List() []Info {
	m.mu.Lock()
	list := slices.Collect(maps.Values(m.sessions))
	m.mu.Unlock()
	out := make([]Info, 0, len(list))
	for _, s := range list {
		out = append(out, s.info())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Room < out[j].Room })
	return out
}

// IsOutput reports whether path (ROOM/NAME) is, or may be, a composite's
// output: the name of the room's composite, the default name or a rule's.
// The gateway keeps these out of the rooms' host lists (a composite is not
// a host).
func (m *Manager) IsOutput(path string) bool {
	room, name, _ := strings.Cut(path, "/")
	if name == m.p.Defaults.Name {
		return true
	}
	m.mu.Lock()
	s := m.sessions[room]
	m.mu.Unlock()
	if s != nil && s.outName == name {
		return true
	}
	for _, r := range m.p.Rules {
		if r.Options.Name == name {
			return true
		}
	}
	return false
}

// Close stops every composite.
func (m *Manager) Close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		<-m.done
		return
	}
	m.closed = true
	list := m.sessions
	m.sessions = map[string]*session{}
	m.mu.Unlock()
	m.unsub()
	close(m.quit)
	<-m.done
	var wg sync.WaitGroup
	for _, s := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.stop()
		}()
	}
	wg.Wait()
}

// run follows room events: the room's composite re-lays out, and rules
// start and stop composites.
func (m *Manager) run() {
	defer close(m.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-m.quit:
			return
		case room := <-m.events:
			m.roomChanged(room)
		case <-m.overrun:
			m.sweep()
		case <-tick.C:
			m.sweep()
		}
	}
}

func (m *Manager) sweep() {
	rooms := map[string]bool{}
	for _, st := range m.p.Hub.Streams() {
		room, _, _ := strings.Cut(st.Path(), "/")
		rooms[room] = true
	}
	m.mu.Lock()
	for room := range m.sessions {
		rooms[room] = true
	}
	m.mu.Unlock()
	for room := range rooms {
		m.roomChanged(room)
	}
}

func (m *Manager) roomChanged(room string) {
	m.mu.Lock()
	s := m.sessions[room]
	m.mu.Unlock()
	if s != nil {
		s.kick()
		if s.by == "rule" && s.idleFor() > m.p.Linger {
			m.mu.Lock()
			if m.sessions[room] == s {
				delete(m.sessions, room)
			}
			m.mu.Unlock()
			m.p.Logger.Info("composite: room has had no host; stopping its composite", "room", room)
			go s.stop()
		}
		return
	}
	for _, r := range m.p.Rules {
		if ok, _ := path.Match(r.Pattern, room); !ok {
			continue
		}
		o := r.Options.withDefaults(m.p.Defaults)
		if len(liveHosts(m.p.Hub, room, o.Name)) == 0 {
			return
		}
		_, _, err := m.start(room, r.Options, "rule")
		switch {
		case err == nil, errors.Is(err, ErrClosed):
		case errors.Is(err, ErrNoFFmpeg):
			if !m.warnedNoFFmpeg.Swap(true) { // said once, not every second
				m.p.Logger.Warn("composite: rule could not start", "room", room, "rule", r.Pattern, "err", err)
			}
		default:
			m.p.Logger.Warn("composite: rule could not start", "room", room, "rule", r.Pattern, "err", err)
		}
		return
	}
}

// liveHosts are the room's streams with a publisher, except the
// composite's own output.
func liveHosts(hub *relay.Hub, room, output string) []*relay.Stream {
	var out []*relay.Stream
	for _, st := range hub.Streams() {
		r, name, _ := strings.Cut(st.Path(), "/")
		if r != room || name == output || !st.Live() {
			continue
		}
		out = append(out, st)
	}
	return out
}
