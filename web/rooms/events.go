package rooms

import (
	"time"

	"github.com/livegate/livegate/relay"
)

// op is a queued change: a relay event, or a note from the HTTP layer that
// must be ordered with them.
type op struct {
	kind opKind
	ev   relay.Event
	path string
	name string
	done chan struct{} // opSync
}

type opKind int

const (
	opEvent  opKind = iota
	opExpect        // the next publisher of path is called name
	opHangup        // the publisher of path hung up (WHIP DELETE)
	opSync          // tests: everything queued before has been applied
)

// HandleEvent takes a relay lifecycle event; pass it to relay.Hub.Subscribe.
// It only queues the event (the relay may hold its locks while calling),
// and the manager's goroutine applies it.
func (m *Manager) HandleEvent(e relay.Event) { m.enqueue(op{kind: opEvent, ev: e}) }

// Expect records the display name of whoever is about to publish path,
// taken from their token: the host's name once the stream starts.
func (m *Manager) Expect(path, name string) {
	if name != "" {
		m.enqueue(op{kind: opExpect, path: path, name: name})
	}
}

// Hangup reports that the publisher of path ended its session on purpose
// (WHIP DELETE). The relay still keeps the stream for its grace period in
// case a publisher comes back, but for the room the stream is gone now:
// a host who clicks "leave" disappears at once, not after the grace period.
// Call it after the session is closed.
func (m *Manager) Hangup(path string) { m.enqueue(op{kind: opHangup, path: path}) }

func (m *Manager) enqueue(o op) {
	if m.stopping.Load() {
		if o.done != nil {
			close(o.done)
		}
		return
	}
	m.qmu.Lock()
	m.queue = append(m.queue, o)
	m.qmu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// sync waits until every change queued before it has been applied.
func (m *Manager) sync() {
	done := make(chan struct{})
	m.enqueue(op{kind: opSync, done: done})
	select {
	case <-done:
	case <-m.stopped:
	}
}

func (m *Manager) drain() {
	for {
		m.qmu.Lock()
		q := m.queue
		m.queue = nil
		m.qmu.Unlock()
		if len(q) == 0 {
			return
		}
		now := time.Now()
		m.mu.Lock()
		for _, o := range q {
			if !m.closed {
				m.apply(o, now)
			}
			if o.done != nil {
				close(o.done)
			}
		}
		m.mu.Unlock()
	}
}

// apply changes the state for one op. Caller holds m.mu.
func (m *Manager) apply(o op, now time.Time) {
	switch o.kind {
	case opExpect:
		if _, ok := m.pending[o.path]; ok || len(m.pending) < maxPending {
			m.pending[o.path] = pendingName{name: o.name, at: now}
		}
		return
	case opHangup:
		roomName, name, ok := splitPath(o.path)
		if r := m.rooms[roomName]; ok && r != nil {
			// Only a stream whose publisher just left: if another
			// publisher took over, the stream is live and stays.
			if s := r.streams[name]; s != nil && s.state == StateReconnecting {
				m.streamDown(r, s, "left")
			}
		}
		return
	case opSync:
		return
	}
	roomName, name, ok := splitPath(o.ev.Path)
	if !ok {
		return
	}
	switch o.ev.Type {
	case relay.StreamStarted, relay.PublisherBack:
		r, _ := m.room(roomName, false, now)
		m.streamUp(r, name, o.ev.Type == relay.PublisherBack, now)
	case relay.PublisherLeft:
		if r := m.rooms[roomName]; r != nil {
			if s := r.streams[name]; s != nil && s.state == StateLive {
				s.state = StateReconnecting
				r.broadcast(m, EventStreamReconn, streamEvent{Room: r.name, Identity: s.identity, Stream: r.streamInfo(s)})
			}
		}
	case relay.StreamEnded:
		if r := m.rooms[roomName]; r != nil {
			if s := r.streams[name]; s != nil {
				m.streamDown(r, s, "ended")
			}
		}
	case relay.ReaderJoined:
		r, _ := m.room(roomName, false, now)
		r.viewers[name]++
		r.viewersDirty = true
		r.snapValid = false
	case relay.ReaderLeft:
		if r := m.rooms[roomName]; r != nil && r.viewers[name] > 0 {
			if r.viewers[name]--; r.viewers[name] == 0 {
				delete(r.viewers, name)
			}
			r.viewersDirty = true
			r.snapValid = false
		}
	}
}

type hostEvent struct {
	Room     string `json:"room"`
	Identity string `json:"identity"`
	Name     string `json:"name,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

type streamEvent struct {
	Room     string     `json:"room"`
	Identity string     `json:"identity"`
	Stream   StreamInfo `json:"stream"`
	Resumed  bool       `json:"resumed,omitempty"` // the same stream continues after its publisher reconnected
	Reason   string     `json:"reason,omitempty"`  // of stream_down: "ended" (grace period over) or "left" (hung up)
}

// streamUp marks ROOM/name live, adding its host first if needed.
func (m *Manager) streamUp(r *room, name string, back bool, now time.Time) {
	identity, screen := identityOf(name)
	display := ""
	if pn, ok := m.pending[r.name+"/"+name]; ok {
		display = pn.name
		delete(m.pending, r.name+"/"+name)
	}
	h := r.hosts[identity]
	if h == nil {
		if display == "" {
			display = identity
		}
		h = &host{identity: identity, name: display, joined: now}
		r.hosts[identity] = h
		r.broadcast(m, EventHostJoined, hostEvent{Room: r.name, Identity: identity, Name: display})
	} else if display != "" && display != h.name {
		h.name = display
		r.snapValid = false
	}
	s := r.streams[name]
	resumed := back && s != nil
	if s == nil {
		s = &stream{name: name, identity: identity, screen: screen, since: now}
		r.streams[name] = s
	} else if s.state == StateLive && !back {
		return
	}
	s.state = StateLive
	r.broadcast(m, EventStreamUp, streamEvent{Room: r.name, Identity: identity, Stream: r.streamInfo(s), Resumed: resumed})
}

// streamDown removes a stream, and its host when it was the last one.
func (m *Manager) streamDown(r *room, s *stream, reason string) {
	delete(r.streams, s.name)
	info := r.streamInfo(s)
	r.broadcast(m, EventStreamDown, streamEvent{Room: r.name, Identity: s.identity, Stream: info, Reason: reason})
	for _, other := range r.streams {
		if other.identity == s.identity {
			return
		}
	}
	delete(r.hosts, s.identity)
	r.broadcast(m, EventHostLeft, hostEvent{Room: r.name, Identity: s.identity, Reason: reason})
}
