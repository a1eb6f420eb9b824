package web

import (
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"
)

// Limits are per-client protections, all explicit settings.
type Limits struct {
	// SessionsPerIP bounds concurrent WHIP+WHEP sessions from one address
	// (0: unlimited).
	SessionsPerIP int
	// PublishesPerMinute bounds WHIP offers per address (0: unlimited).
	PublishesPerMinute int
}

// clientLimits tracks the state behind Limits. Entries for addresses
// without sessions and with a full bucket are removed periodically, so the
// maps stay bounded by the active clients.
type clientLimits struct {
	Limits
	mu       sync.Mutex
	sessions map[string]int
	buckets  map[string]*rate.Limiter
	swept    time.Time
}

func newClientLimits(l Limits) *clientLimits {
	return &clientLimits{Limits: l, sessions: map[string]int{}, buckets: map[string]*rate.Limiter{}}
}

// clientIP is the address limits apply to: the TCP peer, not forwarding
// headers, which a client could forge to escape its limit.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// admit checks an offer from ip before any work is done.
func (l *clientLimits) admit(c echo.Context, ip string, publish bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweepLocked()
	if l.SessionsPerIP > 0 && l.sessions[ip] >= l.SessionsPerIP {
		return newError(http.StatusTooManyRequests, "too_many_sessions_from_address",
			"this address already has "+strconv.Itoa(l.SessionsPerIP)+" sessions (setting max-sessions-per-ip)")
	}
	if publish && l.PublishesPerMinute > 0 {
		b := l.buckets[ip]
		if b == nil {
			b = rate.NewLimiter(rate.Limit(float64(l.PublishesPerMinute)/60), l.PublishesPerMinute)
			l.buckets[ip] = b
		}
		if !b.Allow() {
			c.Response().Header().Set("Retry-After", "10")
			return newError(http.StatusTooManyRequests, "rate_limited",
				"too many publish attempts from this address (setting publishes-per-minute)")
		}
	}
	return nil
}

// opened counts a session of ip; the returned func uncounts it.
func (l *clientLimits) opened(ip string) func() {
	l.mu.Lock()
	l.sessions[ip]++
	l.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.sessions[ip]--; l.sessions[ip] <= 0 {
				delete(l.sessions, ip)
			}
		})
	}
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
