package web

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"

	"github.com/livegate/livegate/internal/addrlimit"
)

// Limits are per-client protections, all explicit settings.
type Limits struct {
	// SessionsPerIP bounds concurrent WHIP+WHEP sessions from one address
	// (0: unlimited).
	SessionsPerIP int `flag:"max-sessions-per-ip" help:"concurrent WHIP+WHEP sessions from one address (0: unlimited)"`
	// PublishesPerMinute bounds WHIP offers per address (0: unlimited).
	PublishesPerMinute int `flag:"publishes-per-minute" help:"WHIP offers accepted per minute from one address (0: unlimited)"`
	// ViewsPerMinute bounds WHEP offers per address (0: unlimited): each
	// may make an edge ask its parent for the stream.
	ViewsPerMinute int `flag:"views-per-minute" help:"WHEP offers accepted per minute from one address (0: unlimited)"`
	// EventStreamsPerIdentity bounds the room event streams one token
	// identity (or, without a token, one address) holds open in a room
	// (0: unlimited).
	EventStreamsPerIdentity int `flag:"max-event-streams-per-identity" help:"room event streams one token identity (or, without a token, one address) keeps open per room (0: unlimited)"`
	// CandidatesPerSession bounds the ICE candidates one session accepts
	// in its offer and all its trickle PATCHes (0: 50).
	CandidatesPerSession int `flag:"max-ice-candidates" help:"ICE candidates a session accepts in its offer and trickle PATCHes together"`
	// RefusePrivateCandidates drops candidates with private (RFC 1918,
	// RFC 4193, CGNAT), link-local and loopback addresses: for a gateway
	// whose clients are all on the internet, so that none can aim its
	// connectivity checks at the gateway's own network.
	RefusePrivateCandidates bool `flag:"refuse-private-candidates" help:"ignore ICE candidates with private, CGNAT, link-local or loopback addresses (when every client is on the internet)"`
}

// clientLimits tracks the state behind Limits. Entries for addresses
// without sessions and with a full bucket are removed periodically, so the
// maps stay bounded by the active clients.
type clientLimits struct {
	Limits
	sessions addrlimit.Counter
	streams  addrlimit.Counter // room event streams by room and identity
	mu       sync.Mutex
	buckets  map[string]*rate.Limiter // key: "p "+ip for publishes, "v "+ip for views
	swept    time.Time
}

// DefaultLimits are the limits livegate starts with. A zero
// CandidatesPerSession stands for the value here; the other limits are
// off when zero.
func DefaultLimits() Limits {
	return Limits{SessionsPerIP: 200, PublishesPerMinute: 30, ViewsPerMinute: 600, EventStreamsPerIdentity: 20,
		CandidatesPerSession: 50}
}

func newClientLimits(l Limits) *clientLimits {
	if l.CandidatesPerSession <= 0 {
		l.CandidatesPerSession = DefaultLimits().CandidatesPerSession
	}
	return &clientLimits{Limits: l, buckets: map[string]*rate.Limiter{}}
}

// clientIP is the address limits apply to and logs show: the TCP peer, or
// with trusted proxies configured, the client they forwarded for. Never
// a forwarding header from anyone else, which a client could forge to
// escape its limit.
func clientIP(c echo.Context) string { return c.RealIP() }

// admit checks an offer from ip before any work is done and reserves one
// of its session slots: counting only after the offer was answered let a
// burst of concurrent offers past the limit. The returned func releases
// the slot; call it once the session ends or the offer failed.
func (l *clientLimits) admit(c echo.Context, ip string, publish bool) (func(), error) {
	ip = addrlimit.Key(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweepLocked()
	release, ok := l.sessions.Acquire(ip, l.SessionsPerIP)
	if !ok {
		return nil, newError(http.StatusTooManyRequests, "too_many_sessions_from_address",
			"this address already has "+strconv.Itoa(l.SessionsPerIP)+" sessions (setting max-sessions-per-ip)")
	}
	perMinute, key, setting := l.ViewsPerMinute, "v "+ip, "views-per-minute"
	if publish {
		perMinute, key, setting = l.PublishesPerMinute, "p "+ip, "publishes-per-minute"
	}
	if perMinute > 0 {
		b := l.buckets[key]
		if b == nil {
			b = rate.NewLimiter(rate.Limit(float64(perMinute)/60), perMinute)
			l.buckets[key] = b
		}
		if !b.Allow() {
			release()
			c.Response().Header().Set("Retry-After", "10")
			return nil, newError(http.StatusTooManyRequests, "rate_limited",
				"too many offers from this address (setting "+setting+")")
		}
	}
	return release, nil
}

// openStream counts a room event stream of who in room; the returned func
// uncounts it.
func (l *clientLimits) openStream(room, who string) (func(), error) {
	release, ok := l.streams.Acquire(room+"\x00"+who, l.EventStreamsPerIdentity)
	if !ok {
		return nil, newError(http.StatusTooManyRequests, "too_many_event_streams",
			"this identity already has "+strconv.Itoa(l.EventStreamsPerIdentity)+" event streams open in the room (setting max-event-streams-per-identity)")
	}
	return release, nil
}

func (l *clientLimits) sweepLocked() {
	if time.Since(l.swept) < time.Minute {
		return
	}
	l.swept = time.Now()
	for ip, b := range l.buckets {
		if b.Tokens() >= float64(b.Burst()) {
			delete(l.buckets, ip)
		}
	}
}

// logLimiter keeps error logging at a bounded rate: a flood of bad
// requests must not become a flood of log lines.
type logLimiter struct {
	mu         sync.Mutex
	window     time.Time
	n          int
	max        int
	suppressed atomic.Int64
}

// allow reports whether a line may be logged now, and how many were
// suppressed since the last allowed one.
func (l *logLimiter) allow() (bool, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if now.Sub(l.window) >= time.Second {
		l.window, l.n = now, 0
	}
	if l.n >= l.max {
		l.suppressed.Add(1)
		return false, 0
	}
	l.n++
	return true, l.suppressed.Swap(0)
}
