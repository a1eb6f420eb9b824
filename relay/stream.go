package relay

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
)

// Errors callers map to protocol status codes.
var (
	ErrNotFound       = errors.New("stream not found")
	ErrAlreadyLive    = errors.New("stream is already being published")
	ErrNoTracks       = errors.New("no tracks")
	ErrHubClosed      = errors.New("hub is closed")
	ErrTooManyReaders = errors.New("too many readers")
)

// Stream is one published path (ROOM/NAME). It owns its lifecycle: the
// current publication, the grace period after the publisher leaves, and the
// takeover by a reconnecting publisher. Its tracks outlive publications so
// that readers continue on the new media without renegotiating.
type Stream struct {
	path    string
	hub     *Hub
	created time.Time

	mu     sync.Mutex
	tracks []*Track
	pub    *Publication
	gen    uint64
	grace  *time.Timer
	ended  bool
	done   chan struct{}
	since  time.Time // of the current or last publication

	rateMu   sync.Mutex
	rateAt   time.Time
	rateIn   uint64
	rateOut  uint64
	lastRate [2]float64
	viewers  atomic.Int64
}

// Path is the stream's ROOM/NAME.
func (s *Stream) Path() string { return s.path }

// Done is closed when the stream has ended for good (the grace period
// passed without a new publisher, or the hub closed).
func (s *Stream) Done() <-chan struct{} { return s.done }

// Tracks returns the stream's tracks.
func (s *Stream) Tracks() []*Track {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Track(nil), s.tracks...)
}

// Join counts a viewer (a session with one reader per track) against the
// stream's limit. Every successful Join is paired with one Leave.
func (s *Stream) Join() error {
	s.mu.Lock()
	ended := s.ended
	s.mu.Unlock()
	if ended {
		return ErrNotFound
	}
	if max := s.hub.params.MaxViewersPerStream; max > 0 && s.viewers.Add(1) > int64(max) {
		s.viewers.Add(-1)
		return ErrTooManyReaders
	} else if max <= 0 {
		s.viewers.Add(1)
	}
	s.hub.emit(Event{Type: ReaderJoined, Path: s.path})
	return nil
}

// Viewers is the number of viewers counted by Join.
func (s *Stream) Viewers() int64 { return s.viewers.Load() }

// Full reports whether the stream has reached its viewer limit.
func (s *Stream) Full() bool {
	max := s.hub.params.MaxViewersPerStream
	return max > 0 && s.viewers.Load() >= int64(max)
}

// Leave ends a viewer counted by Join.
func (s *Stream) Leave() {
	s.viewers.Add(-1)
	s.hub.emit(Event{Type: ReaderLeft, Path: s.path})
}

// AddReader attaches a sink to a track of this stream.
func (s *Stream) AddReader(t *Track, sink Sink) (*Reader, error) {
	s.mu.Lock()
	ended := s.ended
	s.mu.Unlock()
	if ended {
		return nil, ErrNotFound
	}
	return t.addReader(sink), nil
}

// Live reports whether a publisher is currently sending (not in grace).
func (s *Stream) Live() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pub != nil
}

// Busy reports whether a publisher is live and reachable, so that Publish
// would refuse another one with ErrAlreadyLive (a publisher whose ICE is
// disconnected may be taken over). Ingests that must answer a client
// before they know its tracks ask this first.
func (s *Stream) Busy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pub != nil && !s.pub.stalled.Load()
}

// compatible reports whether new tracks can continue this stream's tracks:
// every kind the stream has must come back with the same codec.
func (s *Stream) compatible(infos []TrackInfo) bool {
	for _, t := range s.tracks {
		found, sameKind := false, false
		for _, in := range infos {
			if in.Kind == t.info.Kind {
				sameKind = true
				if strings.EqualFold(in.Codec.MimeType, t.info.Codec.MimeType) {
					found = true
				}
			}
		}
		if sameKind && !found {
			return false
		}
	}
	return true
}

// attach makes p the stream's publication, mapping its tracks onto the
// stream's by kind and codec (adding tracks the stream did not have).
// Caller holds s.mu.
func (s *Stream) attach(infos []TrackInfo, src Source, owner *string) *Publication {
	if s.grace != nil {
		s.grace.Stop()
		s.grace = nil
	}
	s.gen++
	p := &Publication{stream: s, gen: s.gen, src: src, superseded: make(chan struct{}), owner: owner, start: time.Now()}
	used := make(map[*Track]bool)
	for i, in := range infos {
		var match *Track
		for _, t := range s.tracks {
			if !used[t] && t.info.Kind == in.Kind && strings.EqualFold(t.info.Codec.MimeType, in.Codec.MimeType) {
				match = t
				break
			}
		}
		if match == nil {
			match = newTrack(s, len(s.tracks), in, s.hub.pool, &s.hub.params)
			s.tracks = append(s.tracks, match)
		}
		used[match] = true
		idx := i
		match.newPublisher(func() { src.RequestKeyframe(idx) })
		p.tracks = append(p.tracks, match)
	}
	if s.pub != nil {
		s.pub.active.Store(false)
		close(s.pub.superseded)
	}
	p.active.Store(true)
	s.pub = p
	s.since = time.Now()
	return p
}

// detach ends publication p if it is still current and starts the grace
// period during which a new publisher may continue the stream.
func (s *Stream) detach(p *Publication, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pub != p || s.ended {
		return
	}
	s.pub = nil
	p.active.Store(false)
	for _, t := range s.tracks {
		t.keyframe.Store(nil)
	}
	grace := s.hub.params.Grace
	s.hub.log.Info("publisher left", "stream", s.path, "reason", reason, "grace", grace)
	s.hub.emit(Event{Type: PublisherLeft, Path: s.path})
	if grace <= 0 {
		go s.hub.expire(s, s.gen)
		return
	}
	gen := s.gen
	s.grace = time.AfterFunc(grace, func() { s.hub.expire(s, gen) })
}

// end marks the stream over and releases everyone waiting on it. Caller
// holds s.mu.
func (s *Stream) end() {
	if s.ended {
		return
	}
	s.ended = true
	if s.grace != nil {
		s.grace.Stop()
	}
	if s.pub != nil {
		s.pub.active.Store(false)
		close(s.pub.superseded)
		s.pub = nil
	}
	close(s.done)
}

// Publication is one publisher's hold on a stream.
type Publication struct {
	stream     *Stream
	gen        uint64
	src        Source
	tracks     []*Track
	stalled    atomic.Bool
	active     atomic.Bool // false once ended or superseded: late packets are dropped
	superseded chan struct{}
	// owner is who published with PublishAs (nil: Publish, never taken
	// over by another session); start and lastIn (time since start of
	// the last packet) measure its silence.
	owner  *string
	start  time.Time
	lastIn atomic.Int64
}

// Source is the publisher side of a publication.
type Source interface {
	// RequestKeyframe asks the publisher for a keyframe on its i-th track.
	RequestKeyframe(i int)
}

// Stream is the published stream.
func (p *Publication) Stream() *Stream { return p.stream }

// WriteRTP hands the publisher's i-th track's packet to the stream.
// The payload must not be modified afterwards.
func (p *Publication) WriteRTP(i int, h *rtp.Header, payload []byte) {
	if i < 0 || i >= len(p.tracks) || !p.active.Load() {
		return
	}
	p.noteIn()
	p.tracks[i].write(h, payload)
}

// WriteSenderReport hands the publisher's RTCP sender report for its i-th
// track to the stream.
func (p *Publication) WriteSenderReport(i int, ntp uint64, rtpTime uint32) {
	if i < 0 || i >= len(p.tracks) || !p.active.Load() {
		return
	}
	p.tracks[i].senderReport(ntp, rtpTime)
}

// SetStalled marks the publisher as unreachable for now (ICE disconnected):
// a new publisher for the same path may then take over.
func (p *Publication) SetStalled(stalled bool) { p.stalled.Store(stalled) }

// Superseded is closed when another publisher took over the stream or the
// stream ended: the publisher's session should close.
func (p *Publication) Superseded() <-chan struct{} { return p.superseded }

// End ends the publication; the stream waits the grace period for a new one.
func (p *Publication) End(reason string) { p.stream.detach(p, reason) }

func (p *Publication) String() string { return fmt.Sprintf("%s#%d", p.stream.path, p.gen) }
