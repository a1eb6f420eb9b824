// Package relay is livegate's fan-out core: streams by path, their tracks,
// and readers fed by a fixed pool of workers. Protocol adapters publish into
// it and read from it; they never talk to each other.
package relay

import (
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"sort"
	"sync"
	"time"
)

// Params configures a Hub. Zero values take the documented defaults.
type Params struct {
	// Grace is how long a stream waits for its publisher to come back
	// before its readers are ended (default 10 s; negative: no grace).
	Grace time.Duration `flag:"grace" help:"how long viewers wait for a dropped publisher to come back"`
	// KeyframeInterval is the minimum time between keyframe requests sent
	// to a publisher per track (default 500 ms).
	KeyframeInterval time.Duration `flag:"keyframe-interval" help:"minimum time between keyframe requests to a publisher, per track"`
	// Workers is the number of fan-out workers (default GOMAXPROCS).
	Workers int `flag:"workers" help:"fan-out workers (0: one per core)"`
	// WorkerQueue is the number of jobs a worker may have pending before
	// packets are dropped for its readers (default 2048).
	WorkerQueue int
	// MaxQueueDelay drops packets that waited longer than this for a busy
	// worker; their readers resume at the next keyframe (default 500 ms;
	// negative: never).
	MaxQueueDelay time.Duration
	// KeyframeWait is how long a new video reader waits for a fresh
	// keyframe before it is started from the GOP cache (default 600 ms:
	// longer than KeyframeInterval, so a deferred request can be answered;
	// negative: always start from the cache at once).
	KeyframeWait time.Duration `flag:"keyframe-wait" help:"how long a new viewer waits for a fresh keyframe before starting from the cached GOP (negative: start from the cache at once)"`
	// KeyframeMaxInterval bounds the GOP while a track has readers that cut
	// or mux on keyframes (see CadenceSink): the publisher is asked for a
	// keyframe when the current GOP reaches it (0: never; DefaultParams:
	// 2 s). Tracks with only RTP viewers are not affected.
	KeyframeMaxInterval time.Duration `flag:"keyframe-max-interval" help:"while HLS, RTMP push, RTSP out or a recording reads a stream, ask its publisher for a keyframe when the GOP reaches this (0: keep the publisher's GOP)"`
	// HistoryPackets is the per-track packet history for NACKs (default 1024).
	HistoryPackets int
	// GOPCachePackets bounds the per-track keyframe cache (default 2048;
	// negative disables it).
	GOPCachePackets int
	// MaxViewersPerStream limits viewers (Join) per stream; 0 is unlimited.
	MaxViewersPerStream int `flag:"max-viewers-per-stream" help:"viewers per stream (0: unlimited)"`
	// TakeoverAfter is how long a publisher must have sent nothing before
	// a new session of its owner takes its stream over (see PublishAs;
	// default 1 s; negative: never, ErrAlreadyLive until it leaves).
	TakeoverAfter time.Duration `flag:"publisher-takeover-after" help:"a publisher (WHIP, RTMP, RTSP) silent (no media) this long is replaced by a new session of the same identity for its stream, viewers continuing (instead of refused until its ICE or read times out); negative: never"`
	Logger        *slog.Logger
}

// DefaultParams are the settings livegate starts with, and those a zero
// Params field stands for (Workers: one per core, GOMAXPROCS), except
// KeyframeMaxInterval, whose zero turns the cadence off.
func DefaultParams() Params {
	return Params{
		Grace:               10 * time.Second,
		KeyframeInterval:    500 * time.Millisecond,
		WorkerQueue:         2048,
		MaxQueueDelay:       500 * time.Millisecond,
		KeyframeWait:        600 * time.Millisecond,
		KeyframeMaxInterval: 2 * time.Second,
		HistoryPackets:      1024,
		GOPCachePackets:     2048,
		TakeoverAfter:       DefaultTakeoverAfter,
	}
}

func (p *Params) defaults() {
	d := DefaultParams()
	if p.Grace == 0 {
		p.Grace = d.Grace
	}
	if p.KeyframeInterval <= 0 {
		p.KeyframeInterval = d.KeyframeInterval
	}
	if p.Workers <= 0 {
		p.Workers = runtime.GOMAXPROCS(0)
	}
	if p.WorkerQueue <= 0 {
		p.WorkerQueue = d.WorkerQueue
	}
	if p.MaxQueueDelay == 0 {
		p.MaxQueueDelay = d.MaxQueueDelay
	}
	if p.KeyframeWait == 0 {
		p.KeyframeWait = d.KeyframeWait
	}
	if p.HistoryPackets <= 0 {
		p.HistoryPackets = d.HistoryPackets
	}
	if p.GOPCachePackets == 0 {
		p.GOPCachePackets = d.GOPCachePackets
	}
	if p.TakeoverAfter == 0 {
		p.TakeoverAfter = d.TakeoverAfter
	}
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
}

// EventType names a lifecycle event.
type EventType string

// Lifecycle events.
const (
	StreamStarted EventType = "stream_started" // first publisher of a path
	PublisherBack EventType = "publisher_back" // a publisher continued a stream in grace
	PublisherLeft EventType = "publisher_left" // grace period starts
	StreamEnded   EventType = "stream_ended"   // readers are released
	ReaderJoined  EventType = "reader_joined"
	ReaderLeft    EventType = "reader_left"
)

// Event is a stream lifecycle event.
type Event struct {
	Type EventType
	Path string
}

// Hub maps paths to streams.
type Hub struct {
	params Params
	log    *slog.Logger
	pool   *pool

	mu      sync.Mutex
	streams map[string]*Stream
	closed  bool

	stop    chan struct{}
	stopped chan struct{}

	subMu   sync.RWMutex
	subs    map[int]func(Event)
	nextSub int
}

// NewHub starts a hub and its workers; Close stops them.
func NewHub(params Params) *Hub {
	params.defaults()
	h := &Hub{
		params:  params,
		log:     params.Logger,
		pool:    newPool(params.Workers, params.WorkerQueue, params.MaxQueueDelay),
		streams: make(map[string]*Stream),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	go h.tick()
	return h
}

// tick runs once a second: it measures each stream's bitrates (so that
// Stats only reads them) and logs, per stream, how many packets were
// dropped for readers that fell behind: visible, but never a log line per
// packet.
func (h *Hub) tick() {
	defer close(h.stopped)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := map[*Track]uint64{}
	for {
		var now time.Time
		select {
		case <-h.stop:
			return
		case now = <-tick.C:
		}
		seen := map[*Track]bool{}
		for _, s := range h.Streams() {
			s.measureRates(now)
			for _, t := range s.Tracks() {
				seen[t] = true
				n := t.dropped.Load()
				if d := n - last[t]; d > 0 {
					h.log.Warn("viewers fell behind; packets dropped, they resume at the next keyframe",
						"stream", s.path, "kind", t.info.Kind, "dropped", d, "total", n)
				}
				last[t] = n
			}
		}
		for t := range last {
			if !seen[t] {
				delete(last, t)
			}
		}
	}
}

// Subscribe registers f for lifecycle events until the returned function
// is called. f runs synchronously on the goroutine that caused the event
// (sometimes with the hub's lock held): it must be quick, must not block
// and must not call back into the hub; hand work to a goroutine instead.
func (h *Hub) Subscribe(f func(Event)) (unsubscribe func()) {
	h.subMu.Lock()
	defer h.subMu.Unlock()
	if h.subs == nil {
		h.subs = make(map[int]func(Event))
	}
	id := h.nextSub
	h.nextSub++
	h.subs[id] = f
	return func() {
		h.subMu.Lock()
		defer h.subMu.Unlock()
		delete(h.subs, id)
	}
}

func (h *Hub) emit(e Event) {
	h.subMu.RLock()
	defer h.subMu.RUnlock()
	for _, f := range h.subs {
		f(e)
	}
}

// Publish claims path for a publisher with the given tracks. A stream in
// its grace period, or whose publisher is stalled, is continued; a stream
// with a live publisher returns ErrAlreadyLive.
func (h *Hub) Publish(path string, tracks []TrackInfo, src Source) (*Publication, error) {
	return h.publish(path, tracks, src, nil)
}

// publish is Publish, or PublishAs for owner (non-nil).
func (h *Hub) publish(path string, tracks []TrackInfo, src Source, owner *string) (*Publication, error) {
	if len(tracks) == 0 {
		return nil, ErrNoTracks
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrHubClosed
	}
	if s := h.streams[path]; s != nil {
		s.mu.Lock()
		if s.pub != nil && !s.pub.stalled.Load() {
			silent, ok := h.mayTakeOver(s.pub, owner)
			if !ok {
				s.mu.Unlock()
				return nil, fmt.Errorf("%w: %s", ErrAlreadyLive, path)
			}
			h.log.Info("publisher silent; its owner's new session takes the stream over", "stream", path,
				"publication", s.pub.gen, "silent", silent.Round(time.Millisecond))
		}
		if s.compatible(tracks) {
			p := s.attach(tracks, src, owner)
			s.mu.Unlock()
			h.log.Info("publisher continues stream", "stream", path, "publication", p.gen)
			h.emit(Event{Type: PublisherBack, Path: path})
			return p, nil
		}
		// Readers negotiated codecs the new publisher does not send: they
		// cannot continue, so the old stream ends and a new one starts.
		h.log.Info("publisher changed codecs; ending previous stream", "stream", path)
		s.end()
		s.mu.Unlock()
		delete(h.streams, path)
		h.emit(Event{Type: StreamEnded, Path: path})
	}
	s := &Stream{path: path, hub: h, created: time.Now(), done: make(chan struct{})}
	s.mu.Lock()
	p := s.attach(tracks, src, owner)
	s.mu.Unlock()
	h.streams[path] = s
	h.emit(Event{Type: StreamStarted, Path: path})
	return p, nil
}

// expire ends s if generation gen is still the last one and nobody came back.
func (h *Hub) expire(s *Stream, gen uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s.mu.Lock()
	if s.gen != gen || s.pub != nil || s.ended {
		s.mu.Unlock()
		return
	}
	s.end()
	s.mu.Unlock()
	if h.streams[s.path] == s {
		delete(h.streams, s.path)
	}
	h.log.Info("stream ended", "stream", s.path)
	h.emit(Event{Type: StreamEnded, Path: s.path})
}

// Get returns the stream at path, live or in its grace period.
func (h *Hub) Get(path string) (*Stream, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.streams[path]
	return s, ok
}

// Streams returns all streams ordered by path.
func (h *Hub) Streams() []*Stream {
	h.mu.Lock()
	list := slices.Collect(maps.Values(h.streams))
	h.mu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].path < list[j].path })
	return list
}

// Close ends every stream and stops the workers. Sessions watching
// Stream.Done or Publication.Superseded close themselves.
func (h *Hub) Close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	for path, s := range h.streams {
		s.mu.Lock()
		s.end()
		s.mu.Unlock()
		delete(h.streams, path)
	}
	h.mu.Unlock()
	close(h.stop)
	<-h.stopped
	h.pool.close()
}
