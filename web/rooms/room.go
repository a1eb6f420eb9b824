package rooms

import (
	"encoding/json"
	"sort"
	"strconv"
	"time"
)

// room is one room's state. Every field is guarded by Manager.mu.
type room struct {
	name    string
	hosts   map[string]*host   // by identity
	streams map[string]*stream // by NAME
	viewers map[string]int     // WHEP sessions by NAME, counted from relay events
	chat    []Message          // ring of the last History messages, oldest first
	subs    map[*Subscriber]struct{}
	limits  map[string]*bucket // chat rate limits by identity
	active  time.Time          // last change, for idle expiry and eviction

	lastID       uint64 // id of the room's last event
	viewersDirty bool
	snap         []byte // cached snapshot frame, valid until the room changes
	snapValid    bool
}

type host struct {
	identity, name string
	joined         time.Time
}

type stream struct {
	name, identity string
	screen         bool
	state          string
	since          time.Time
}

func newRoom(name string, now time.Time, lastID uint64) *room {
	return &room{
		name: name, hosts: map[string]*host{}, streams: map[string]*stream{},
		viewers: map[string]int{}, subs: map[*Subscriber]struct{}{}, limits: map[string]*bucket{},
		active: now, lastID: lastID,
	}
}

// idle reports whether nothing but chat history keeps the room.
func (r *room) idle() bool {
	return len(r.streams) == 0 && len(r.subs) == 0 && len(r.viewers) == 0
}

func (r *room) touch(now time.Time) {
	r.active = now
	r.snapValid = false
}

func (r *room) streamInfo(s *stream) StreamInfo {
	return StreamInfo{Name: s.name, Path: r.name + "/" + s.name, Screen: s.screen, State: s.state,
		Viewers: r.viewers[s.name], Since: s.since}
}

func (r *room) hostInfo(h *host) Host {
	out := Host{Identity: h.identity, Name: h.name, JoinedAt: h.joined, Streams: []StreamInfo{}}
	for _, s := range r.streams {
		if s.identity == h.identity {
			out.Streams = append(out.Streams, r.streamInfo(s))
		}
	}
	// The main stream first, then the screen share.
	sort.Slice(out.Streams, func(i, j int) bool {
		a, b := out.Streams[i], out.Streams[j]
		if a.Screen != b.Screen {
			return !a.Screen
		}
		return a.Name < b.Name
	})
	return out
}

func (r *room) snapshot(chat bool) Room {
	out := Room{Room: r.name, Hosts: make([]Host, 0, len(r.hosts)), Subscribers: len(r.subs), LastEventID: r.lastID}
	for _, h := range r.hosts {
		out.Hosts = append(out.Hosts, r.hostInfo(h))
	}
	sort.Slice(out.Hosts, func(i, j int) bool {
		a, b := out.Hosts[i], out.Hosts[j]
		if !a.JoinedAt.Equal(b.JoinedAt) {
			return a.JoinedAt.Before(b.JoinedAt)
		}
		return a.Identity < b.Identity
	})
	for _, n := range r.viewers {
		out.Viewers += n
	}
	if chat {
		out.Chat = append([]Message{}, r.chat...)
	}
	return out
}

// snapshotFrame is the SSE frame of the room's snapshot, cached until the
// room changes. Caller holds Manager.mu.
func (r *room) snapshotFrame() []byte {
	if !r.snapValid {
		snap := r.snapshot(true)
		snap.Subscribers = 0 // changes with every subscriber; not worth a new frame each time
		r.snap = frame(r.lastID, EventSnapshot, snap)
		r.snapValid = true
	}
	return r.snap
}

type viewerEvent struct {
	Room    string         `json:"room"`
	Viewers int            `json:"viewers"`
	Streams map[string]int `json:"streams"`
}

func (r *room) viewerEvent() viewerEvent {
	ev := viewerEvent{Room: r.name, Streams: map[string]int{}}
	for name := range r.streams {
		ev.Streams[name] = r.viewers[name]
	}
	for _, n := range r.viewers {
		ev.Viewers += n
	}
	return ev
}

// broadcast sends an event to every subscriber; one that cannot take it
// at once is dropped. Caller holds Manager.mu.
func (r *room) broadcast(m *Manager, typ string, data any) {
	r.touch(time.Now())
	id := m.next()
	r.lastID = id
	if len(r.subs) == 0 {
		return
	}
	f := frame(id, typ, data)
	for s := range r.subs {
		select {
		case s.c <- f:
		default:
			delete(r.subs, s)
			s.end(true)
			m.dropped++ // logged once a second
		}
	}
}

// frame encodes one Server-Sent Events frame.
func frame(id uint64, typ string, data any) []byte {
	b, err := json.Marshal(data)
	if err != nil { // our own types: cannot happen
		b = []byte(`{}`)
	}
	out := make([]byte, 0, len(b)+len(typ)+32)
	out = append(out, "id: "...)
	out = strconv.AppendUint(out, id, 10)
	out = append(out, "\nevent: "...)
	out = append(out, typ...)
	out = append(out, "\ndata: "...)
	out = append(out, b...)
	return append(out, '\n', '\n')
}
