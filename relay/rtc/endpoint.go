package rtc

import (
	"log/slog"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

// SessionParams are the settings WHIP and WHEP servers share; each embeds
// them in its Params. The gateway sets one max-tracks and one
// connect-timeout for both, so these fields carry no setting tags.
type SessionParams struct {
	Engine *Engine
	// MaxTracks bounds media sections per offer (default 4).
	MaxTracks int
	// ConnectTimeout ends sessions whose peer never connects (default 15 s).
	ConnectTimeout time.Duration
	Logger         *slog.Logger
}

// DefaultSessionParams are the settings livegate starts with.
func DefaultSessionParams() SessionParams {
	return SessionParams{MaxTracks: DefaultMaxTracks, ConnectTimeout: DefaultConnectTimeout}
}

// WithDefaults is p with its zero (or negative) fields replaced by the
// defaults, as a server's New takes them.
func (p SessionParams) WithDefaults() SessionParams {
	d := DefaultSessionParams()
	if p.MaxTracks <= 0 {
		p.MaxTracks = d.MaxTracks
	}
	if p.ConnectTimeout <= 0 {
		p.ConnectTimeout = d.ConnectTimeout
	}
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	return p
}

// Endpoint is the server side WHIP and WHEP servers share: the registry
// of their live sessions, the count of media sections their answers
// refused, and the goroutines their sessions run, which Close waits for.
// A server embeds it, which gives it Session, Sessions, RefusedSections
// and Close.
type Endpoint struct {
	sessions *Registry
	rejects  RejectCounter
	wg       sync.WaitGroup
}

// NewEndpoint returns an Endpoint allowing at most maxSessions live
// sessions (0: no limit).
func NewEndpoint(maxSessions int) *Endpoint {
	return &Endpoint{sessions: NewRegistry(maxSessions)}
}

// Session returns a live session of path by id.
func (e *Endpoint) Session(path, id string) (*Session, error) { return e.sessions.Get(path, id) }

// Sessions is the number of live sessions.
func (e *Endpoint) Sessions() int { return e.sessions.Len() }

// RefusedSections reports the media sections refused in answers so far, by
// kind and reason.
func (e *Endpoint) RefusedSections(f func(kind, reason string, n uint64)) { e.rejects.Each(f) }

// Close ends every session and waits for their goroutines.
func (e *Endpoint) Close() {
	e.sessions.CloseAll()
	e.wg.Wait()
}

// AddSession registers s once its answer is set, or fails with
// ErrTooManySessions.
func (e *Endpoint) AddSession(s *Session) error { return e.sessions.Add(s) }

// Refused counts an answer's refused sections and logs each as refused to
// who ("publisher", "viewer").
func (e *Endpoint) Refused(log *slog.Logger, who string, rs []Rejection) {
	e.rejects.Refused(log, who, rs)
}

// Go runs f on a goroutine that Close waits for.
func (e *Endpoint) Go(f func()) { e.wg.Go(f) }

// WatchConnection follows the state of the session's PeerConnection (a
// Transport session has none): it logs each state as who's ("publisher",
// "viewer"), ends the session when the connection fails or closes, and
// returns a channel closed once the connection is up.
func (s *Session) WatchConnection(log *slog.Logger, who string) <-chan struct{} {
	connected := make(chan struct{})
	var once sync.Once
	s.PC.OnConnectionStateChange(func(state webrtc.PeerConnectionState) {
		log.Debug(who+" connection state", "state", state.String())
		switch state {
		case webrtc.PeerConnectionStateConnected:
			once.Do(func() { close(connected) })
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			go s.Close()
		}
	})
	return connected
}

// AwaitConnect waits until connected is closed and reports true. It ends
// the session and reports false when the peer does not connect within
// timeout or gone is closed first (nil: never), and reports false when
// the session ends meanwhile.
func (s *Session) AwaitConnect(connected, gone <-chan struct{}, timeout time.Duration, log *slog.Logger, who string) bool {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-connected:
		return true
	case <-timer.C:
		log.Warn(who+" did not connect in time; ending session", "timeout", timeout)
		s.Close()
	case <-s.Done():
	case <-gone:
		s.Close()
	}
	return false
}
