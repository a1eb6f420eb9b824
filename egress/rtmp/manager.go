// Package rtmp pushes live streams to RTMP(S) servers (CDN ingest:
// YouTube, Twitch, nginx-rtmp): jobs started over the API or by config
// rules when a matching stream goes live, each reconnecting with backoff
// when the server drops it. H.264 passes through; Opus is transcoded to AAC
// once per stream (one ffmpeg process) however many jobs push it.
package rtmp

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/aac"
	"github.com/livegate/livegate/relay/frames"
)

// Rule starts a push when a stream whose path matches Match goes live.
type Rule struct {
	// Match is a path.Match pattern over ROOM/NAME, e.g. "show/*" or "*/*".
	Match string `json:"match" yaml:"match"`
	// URL may use {room}, {name} and {path}, e.g. rtmp://a.rtmp.youtube.com/live2/KEY.
	URL       string `json:"url" yaml:"url"`
	VideoOnly bool   `json:"videoOnly" yaml:"videoOnly"`
}

// Params configures a Manager.
type Params struct {
	Hub    *relay.Hub
	Frames *frames.Layer
	Rules  []Rule
	// FFmpeg is the ffmpeg binary for Opus -> AAC ("" looks up "ffmpeg"
	// in PATH; "-" disables transcoding: only videoOnly jobs run).
	FFmpeg string
	// AudioBitrate of the AAC output in bit/s (default 128000).
	AudioBitrate int
	// AAC is a transcoder registry shared with other outputs (one ffmpeg
	// per stream for all of them); nil: the manager makes its own from
	// FFmpeg and AudioBitrate (which are then ignored).
	AAC *aac.Transcoders
	// MinBackoff and MaxBackoff bound the reconnect delay (defaults 500 ms,
	// 30 s). It doubles after each failed attempt; when a connection has
	// worked (stayed live 5 s) and drops, attempts come every MinBackoff
	// for 5 s before it doubles again, so a push is back within about
	// 1.5 s of a 1 s CDN blip.
	MinBackoff, MaxBackoff time.Duration
	// ConnectTimeout bounds connecting and the RTMP handshake (default 10 s).
	ConnectTimeout time.Duration
	// WriteTimeout ends a session whose server stops reading (default 10 s).
	WriteTimeout time.Duration
	// TLS is used for rtmps:// (nil: system roots).
	TLS *tls.Config
	// OnFailure, if set, is told when a job fails for good or drops and
	// retries. It must not block.
	OnFailure func(in Info, retrying bool)
	Logger    *slog.Logger
}

// Errors callers map to HTTP statuses.
var (
	ErrNotFound   = errors.New("rtmp: no such push job")
	ErrBadURL     = errors.New("rtmp: url must be rtmp://HOST[:PORT]/APP/KEY or rtmps://...")
	ErrNoStream   = errors.New("rtmp: stream not found")
	ErrClosed     = errors.New("rtmp: manager closed")
	ErrNoH264     = errors.New("rtmp: the stream has no H.264 video (RTMP push forwards H.264)")
	errStreamDone = errors.New("stream ended")
)

// Job states.
const (
	StateConnecting = "connecting"
	StateLive       = "live"
	StateRetrying   = "retrying"
	StateEnded      = "ended"  // the stream ended
	StateFailed     = "failed" // cannot work (no transcoder, no H.264)
	StateStopped    = "stopped"
)

// Info is a job's state as the API shows it.
type Info struct {
	ID         string `json:"id"`
	Stream     string `json:"stream"`
	URL        string `json:"url"` // stream key masked
	VideoOnly  bool   `json:"videoOnly"`
	Rule       bool   `json:"rule,omitempty"` // started by a config rule
	State      string `json:"state"`
	BytesSent  uint64 `json:"bytesSent"`
	Reconnects int    `json:"reconnects"`
	// VideoChanges counts the publisher's mid-stream SPS/PPS changes
	// (resolution steps) sent in band as new sequence headers.
	VideoChanges int       `json:"videoChanges"`
	LastError    string    `json:"lastError,omitempty"`
	Created      time.Time `json:"created"`
	ConnectedAt  time.Time `json:"connectedAt,omitzero"`
}

// Manager owns the push jobs.
type Manager struct {
	p     Params
	log   *slog.Logger
	aac   *aac.Transcoders
	unsub func()

	mu     sync.Mutex
	jobs   map[string]*job
	closed bool
	wg     sync.WaitGroup
}

// New returns a manager; with rules it watches the hub for streams.
func New(p Params) *Manager {
	if p.AudioBitrate <= 0 {
		p.AudioBitrate = 128000
	}
	if p.MinBackoff <= 0 {
		p.MinBackoff = 500 * time.Millisecond
	}
	if p.MaxBackoff < p.MinBackoff {
		p.MaxBackoff = 30 * time.Second
	}
	if p.ConnectTimeout <= 0 {
		p.ConnectTimeout = 10 * time.Second
	}
	if p.WriteTimeout <= 0 {
		p.WriteTimeout = 10 * time.Second
	}
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	if p.AAC == nil {
		p.AAC = aac.New(aac.Params{Frames: p.Frames, FFmpeg: p.FFmpeg, Bitrate: p.AudioBitrate, Logger: p.Logger})
	} else {
		p.AudioBitrate = p.AAC.Bitrate()
	}
	m := &Manager{p: p, log: p.Logger, aac: p.AAC, jobs: make(map[string]*job)}
	if !m.aac.Available() {
		m.log.Warn("rtmp push: ffmpeg not found; only videoOnly pushes can run (Opus needs transcoding to AAC)")
	}
	if len(p.Rules) > 0 {
		m.unsub = p.Hub.Subscribe(m.onEvent)
	}
	return m
}

// ValidateRules checks rules before they are used (for config loading).
func ValidateRules(rules []Rule) error {
	for i, r := range rules {
		if _, err := path.Match(r.Match, "a/b"); err != nil || r.Match == "" {
			return fmt.Errorf("rtmp rule %d: bad match %q", i, r.Match)
		}
		if _, err := parseURL(expand(r.URL, "room/name")); err != nil {
			return fmt.Errorf("rtmp rule %d: %w", i, err)
		}
	}
	return nil
}

func (m *Manager) onEvent(e relay.Event) {
	if e.Type != relay.StreamStarted {
		return
	}
	for _, r := range m.p.Rules {
		if ok, _ := path.Match(r.Match, e.Path); ok {
			// Events run on the hub's goroutine with its lock held: start
			// the job elsewhere.
			go func() {
				if _, err := m.start(e.Path, expand(r.URL, e.Path), r.VideoOnly, true); err != nil {
					m.log.Warn("rtmp rule: push not started", "stream", e.Path, "match", r.Match, "err", err)
				}
			}()
		}
	}
}

func expand(u, streamPath string) string {
	room, name, _ := strings.Cut(streamPath, "/")
	return strings.NewReplacer("{room}", room, "{name}", name, "{path}", streamPath).Replace(u)
}

func parseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "rtmp" && u.Scheme != "rtmps") || u.Host == "" || strings.Trim(u.Path, "/") == "" {
		return nil, ErrBadURL
	}
	if u.Port() == "" {
		port := "1935"
		if u.Scheme == "rtmps" {
			port = "443"
		}
		u.Host += ":" + port
	}
	return u, nil
}

// Start begins pushing stream (ROOM/NAME, live now) to url.
func (m *Manager) Start(stream, rawURL string, videoOnly bool) (Info, error) {
	return m.start(stream, rawURL, videoOnly, false)
}

func (m *Manager) start(stream, rawURL string, videoOnly, rule bool) (Info, error) {
	u, err := parseURL(rawURL)
	if err != nil {
		return Info{}, err
	}
	if !videoOnly && !m.aac.Available() {
		return Info{}, ErrNoTranscoder
	}
	st, ok := m.p.Hub.Get(stream)
	if !ok {
		return Info{}, fmt.Errorf("%w: %s", ErrNoStream, stream)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	ctx, cancel := context.WithCancel(context.Background())
	j := &job{m: m, id: hex.EncodeToString(b[:]), st: st, url: u, cancel: cancel, done: make(chan struct{})}
	j.info = Info{ID: j.id, Stream: stream, URL: maskURL(u), VideoOnly: videoOnly, Rule: rule,
		State: StateConnecting, Created: time.Now().UTC()}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		cancel()
		return Info{}, ErrClosed
	}
	m.jobs[j.id] = j
	m.wg.Add(1)
	m.mu.Unlock()
	go func() {
		defer m.wg.Done()
		j.run(ctx)
	}()
	m.log.Info("rtmp push started", "job", j.id, "stream", stream, "url", j.info.URL, "videoOnly", videoOnly)
	return j.snapshot(), nil
}

// maskURL hides the stream key (the last path element), credentials and
// the query: the key reads "****", none of it shows however long it is.
func maskURL(u *url.URL) string {
	c := *u
	c.User = nil
	c.RawQuery, c.Fragment = "", ""
	if p := c.EscapedPath(); strings.LastIndex(p, "/") < len(p)-1 {
		// Set as the raw path: String would escape the stars of Path.
		p = p[:strings.LastIndex(p, "/")+1] + "****"
		c.Path, c.RawPath = "", ""
		return c.String() + p
	}
	return c.String()
}

// List returns every job, oldest first.
func (m *Manager) List() []Info {
	m.mu.Lock()
	list := make([]Info, 0, len(m.jobs))
	for _, j := range m.jobs {
		list = append(list, j.snapshot())
	}
	m.mu.Unlock()
	sort.Slice(list, func(i, k int) bool { return list[i].Created.Before(list[k].Created) })
	return list
}

// Get returns one job.
func (m *Manager) Get(id string) (Info, error) {
	m.mu.Lock()
	j := m.jobs[id]
	m.mu.Unlock()
	if j == nil {
		return Info{}, ErrNotFound
	}
	return j.snapshot(), nil
}

// Stop ends a job and forgets it.
func (m *Manager) Stop(id string) (Info, error) {
	m.mu.Lock()
	j := m.jobs[id]
	delete(m.jobs, id)
	m.mu.Unlock()
	if j == nil {
		return Info{}, ErrNotFound
	}
	j.cancel()
	<-j.done
	j.setState(StateStopped, nil)
	return j.snapshot(), nil
}

// Transcodes is the number of Opus -> AAC transcoders started so far (by
// every output sharing the manager's registry).
func (m *Manager) Transcodes() int64 { return m.aac.Started() }

// Close stops every job.
func (m *Manager) Close() {
	if m.unsub != nil {
		m.unsub()
	}
	m.mu.Lock()
	m.closed = true
	for _, j := range m.jobs {
		j.cancel()
	}
	m.mu.Unlock()
	m.wg.Wait()
}

// ParseRule reads a rule in its flag form: PATTERN=URL, with "|video-only"
// appended for pushes without audio, e.g.
// "show/*=rtmps://live.example.com/app/{name}|video-only".
func ParseRule(s string) (Rule, error) {
	match, u, ok := strings.Cut(strings.TrimSpace(s), "=")
	if !ok {
		return Rule{}, fmt.Errorf("rtmp rule %q: want PATTERN=URL[|video-only]", s)
	}
	r := Rule{Match: match, URL: u}
	if base, opt, found := strings.Cut(u, "|"); found {
		if opt != "video-only" {
			return Rule{}, fmt.Errorf("rtmp rule %q: unknown option %q (video-only)", s, opt)
		}
		r.URL, r.VideoOnly = base, true
	}
	return r, ValidateRules([]Rule{r})
}
