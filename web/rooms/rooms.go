// Package rooms keeps what a room is made of: its hosts and their streams,
// viewer counts and chat. It derives hosts and streams from the relay's
// lifecycle events (a stream ROOM/NAME belongs to host NAME, and
// ROOM/NAME-screen is that host's screen share), keeps the last chat
// messages, and fans room events out to bounded subscriber queues (the
// HTTP layer serves them as Server-Sent Events).
//
// Memory is bounded: the number of rooms, subscribers per room, chat
// history and rate-limit state all have limits, and a subscriber that does
// not keep up is dropped rather than waited for. Nothing here ever blocks
// the relay: its events are queued and applied by one goroutine.
package rooms

import (
	"errors"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Params configures a Manager. Zero values take the documented defaults.
type Params struct {
	// MaxRooms bounds the rooms kept at once (0: unlimited). A room with
	// streams is always kept (publishers are limited elsewhere); opening
	// the event stream of, or chatting in, a new room beyond the limit
	// first evicts the least recently active room without streams or
	// subscribers, and fails with ErrTooManyRooms if there is none.
	MaxRooms int `flag:"max-rooms" help:"rooms kept at once; rooms with live streams always are (0: unlimited)"`
	// MaxSubscribers bounds event-stream subscribers per room (0: unlimited).
	MaxSubscribers int `flag:"max-room-subscribers" help:"open room event streams (pages) per room (0: unlimited)"`
	// History is the number of chat messages kept for late joiners
	// (default 100; negative: none).
	History int `flag:"chat-history" help:"chat messages kept per room for late joiners (1-10000)"`
	// MaxText is the longest chat message in bytes (default 2048).
	MaxText int
	// ChatRate is the sustained chat rate per identity and room in
	// messages per second (0: unlimited); ChatBurst (default 5) messages
	// may be sent at once.
	ChatRate  float64 `flag:"chat-rate" help:"chat messages per second per identity and room, sustained (0: unlimited)"`
	ChatBurst int     `flag:"chat-burst" help:"chat messages an identity may send at once before chat-rate applies"`
	// SubscriberQueue is the number of events a subscriber may have
	// pending before it is dropped (default 256).
	SubscriberQueue int
	// ViewerInterval is how often changed viewer counts are announced
	// (default 1 s): thousands of viewers joining make one event, not
	// thousands.
	ViewerInterval time.Duration
	// IdleTimeout is how long a room without streams and subscribers
	// (but with chat history) is kept (default 10 min).
	IdleTimeout time.Duration
	Logger      *slog.Logger
}

// DefaultParams are the settings livegate starts with, and those a zero
// Params field stands for, except the limits MaxRooms, MaxSubscribers and
// ChatRate, whose zero means unlimited.
func DefaultParams() Params {
	return Params{
		MaxRooms:        10000,
		MaxSubscribers:  5000,
		ChatRate:        1,
		History:         100,
		MaxText:         2048,
		ChatBurst:       5,
		SubscriberQueue: 256,
		ViewerInterval:  time.Second,
		IdleTimeout:     10 * time.Minute,
	}
}

func (p *Params) defaults() {
	d := DefaultParams()
	if p.History == 0 {
		p.History = d.History
	} else if p.History < 0 {
		p.History = 0
	}
	if p.MaxText <= 0 {
		p.MaxText = d.MaxText
	}
	if p.ChatBurst <= 0 {
		p.ChatBurst = d.ChatBurst
	}
	if p.SubscriberQueue <= 0 {
		p.SubscriberQueue = d.SubscriberQueue
	}
	if p.ViewerInterval <= 0 {
		p.ViewerInterval = d.ViewerInterval
	}
	if p.IdleTimeout <= 0 {
		p.IdleTimeout = d.IdleTimeout
	}
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
}

// Errors of Subscribe and Chat.
var (
	ErrTooManyRooms       = errors.New("too many rooms")
	ErrTooManySubscribers = errors.New("too many subscribers in this room")
	ErrClosed             = errors.New("rooms are shutting down")
	ErrEmpty              = errors.New("chat message is empty")
	ErrInvalidText        = errors.New("chat message is not valid UTF-8")
	ErrTooLong            = errors.New("chat message is too long")
)

// RateLimitError is returned by Chat when the sender must wait.
type RateLimitError struct{ RetryAfter time.Duration }

func (e *RateLimitError) Error() string {
	return "too many chat messages; retry in " + e.RetryAfter.Round(100*time.Millisecond).String()
}

// Stream states.
const (
	StateLive         = "live"
	StateReconnecting = "reconnecting" // the publisher left; the relay waits for it
)

// Event types sent to subscribers.
const (
	EventSnapshot     = "snapshot"
	EventHostJoined   = "host_joined"
	EventHostLeft     = "host_left"
	EventStreamUp     = "stream_up"
	EventStreamReconn = "stream_reconnecting"
	EventStreamDown   = "stream_down"
	EventViewers      = "viewers"
	EventChat         = "chat"
)

// ScreenSuffix marks a host's screen share: ROOM/NAME-screen.
const ScreenSuffix = "-screen"

// Room is a snapshot of a room.
type Room struct {
	Room        string    `json:"room"`
	Hosts       []Host    `json:"hosts"`
	Viewers     int       `json:"viewers"`               // WHEP sessions on all of the room's streams
	Subscribers int       `json:"subscribers,omitempty"` // open event streams
	Chat        []Message `json:"chat,omitempty"`
	// LastEventID is the id of the last event that went into this
	// snapshot: events with higher ids follow it.
	LastEventID uint64 `json:"lastEventId"`
}

// Host is a participant publishing in a room.
type Host struct {
	Identity string       `json:"identity"`
	Name     string       `json:"name"` // display name from the publisher's token, else the identity
	JoinedAt time.Time    `json:"joinedAt"`
	Streams  []StreamInfo `json:"streams"`
}

// StreamInfo is one of a host's streams.
type StreamInfo struct {
	Name    string    `json:"name"` // NAME of ROOM/NAME
	Path    string    `json:"path"`
	Screen  bool      `json:"screen"`
	State   string    `json:"state"`
	Viewers int       `json:"viewers"`
	Since   time.Time `json:"since"`
}

// Message is a chat message.
type Message struct {
	ID       uint64    `json:"id"`
	Room     string    `json:"room"`
	Identity string    `json:"identity"`
	Name     string    `json:"name,omitempty"`
	Text     string    `json:"text"`
	At       time.Time `json:"at"`
	// Verified is true when the identity comes from a signed token, false
	// when it was typed in on an open (development) gateway.
	Verified bool `json:"verified"`
}

// Sender is who sends a chat message.
type Sender struct {
	Identity, Name string
	Verified       bool
}

// Manager owns every room's state.
type Manager struct {
	p   Params
	log *slog.Logger

	qmu      sync.Mutex
	queue    []op
	wake     chan struct{}
	stopping atomic.Bool // no more queueing

	mu      sync.Mutex
	rooms   map[string]*room
	pending map[string]pendingName // stream path -> display name of its next publisher
	seq     uint64                 // last event id, across rooms
	dropped int                    // subscribers dropped since the last tick
	closed  bool

	done    chan struct{}
	stopped chan struct{}
}

type pendingName struct {
	name string
	at   time.Time
}

// Bounds of auxiliary state.
const (
	maxPending  = 4096
	pendingTTL  = time.Minute
	maxLimiters = 4096 // rate-limit buckets per room
)

// New starts a manager; Close stops it.
func New(p Params) *Manager {
	p.defaults()
	m := &Manager{
		p: p, log: p.Logger,
		wake:    make(chan struct{}, 1),
		rooms:   make(map[string]*room),
		pending: make(map[string]pendingName),
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	go m.run()
	return m
}

// Close ends every subscription and stops the manager. It is idempotent.
func (m *Manager) Close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		<-m.stopped
		return
	}
	m.closed = true
	m.stopping.Store(true)
	for _, r := range m.rooms {
		for s := range r.subs {
			s.end(false)
		}
		r.subs = nil
	}
	m.mu.Unlock()
	close(m.done)
	<-m.stopped
}

func (m *Manager) run() {
	defer close(m.stopped)
	tick := time.NewTicker(m.p.ViewerInterval)
	defer tick.Stop()
	for {
		select {
		case <-m.done:
			return
		case <-m.wake:
			m.drain()
		case now := <-tick.C:
			m.tick(now)
		}
	}
}

// Rooms returns every room, ordered by name, without chat history.
func (m *Manager) Rooms() []Room {
	m.mu.Lock()
	defer m.mu.Unlock()
	list := make([]Room, 0, len(m.rooms))
	for _, r := range m.rooms {
		list = append(list, r.snapshot(false))
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Room < list[j].Room })
	return list
}

// Get returns a room with its chat history. A room nobody has used is
// empty, not missing: rooms exist implicitly.
func (m *Manager) Get(name string) Room {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.rooms[name]; r != nil {
		return r.snapshot(true)
	}
	return Room{Room: name, Hosts: []Host{}, LastEventID: m.seq}
}

// room returns the named room, creating it. Rooms created for streams are
// never refused; others (limited) may evict an idle room or fail.
// Caller holds m.mu.
func (m *Manager) room(name string, limited bool, now time.Time) (*room, error) {
	if r := m.rooms[name]; r != nil {
		return r, nil
	}
	if limited && m.p.MaxRooms > 0 && len(m.rooms) >= m.p.MaxRooms && !m.evictIdle() {
		return nil, ErrTooManyRooms
	}
	r := newRoom(name, now, m.seq)
	m.rooms[name] = r
	return r, nil
}

// evictIdle drops the least recently active idle room. Caller holds m.mu.
func (m *Manager) evictIdle() bool {
	var victim *room
	for _, r := range m.rooms {
		if r.idle() && (victim == nil || r.active.Before(victim.active)) {
			victim = r
		}
	}
	if victim == nil {
		return false
	}
	delete(m.rooms, victim.name)
	return true
}

// next returns the next event id. Caller holds m.mu.
func (m *Manager) next() uint64 {
	m.seq++
	return m.seq
}

// tick announces changed viewer counts and sweeps expired state.
func (m *Manager) tick(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.dropped > 0 {
		m.log.Warn("room event subscribers fell behind and were dropped; their pages reconnect",
			"dropped", m.dropped, "queue", m.p.SubscriberQueue)
		m.dropped = 0
	}
	for name, r := range m.rooms {
		if r.viewersDirty {
			r.viewersDirty = false
			r.broadcast(m, EventViewers, r.viewerEvent())
		}
		if r.idle() && now.Sub(r.active) > m.p.IdleTimeout {
			delete(m.rooms, name)
			continue
		}
		r.sweepLimiters(now, m.p.ChatRate, m.p.ChatBurst)
	}
	for path, pn := range m.pending {
		if now.Sub(pn.at) > pendingTTL {
			delete(m.pending, path)
		}
	}
}

// splitPath returns ROOM and NAME of a stream path.
func splitPath(path string) (room, name string, ok bool) {
	room, name, ok = strings.Cut(path, "/")
	return room, name, ok && room != "" && name != ""
}

// identityOf maps a stream NAME to its host: NAME-screen belongs to NAME.
func identityOf(name string) (identity string, screen bool) {
	if id, ok := strings.CutSuffix(name, ScreenSuffix); ok && id != "" {
		return id, true
	}
	return name, false
}
