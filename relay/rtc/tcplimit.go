package rtc

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/livegate/livegate/internal/addrlimit"
)

// DefaultTCPConnsPerIP bounds the ICE-TCP connections one address holds
// at once. A session normally uses one, so this matches the default
// sessions-per-address limit of the HTTP layer (max-sessions-per-ip): an
// office behind one NAT address whose network drops UDP still fits.
const DefaultTCPConnsPerIP = 200

// perAddrListener accepts at most max concurrent connections per client
// address (IPv6: per /64, whose every address a host may use at will);
// beyond, a connection is closed at once. It sits under both the lite
// transport's and pion's ICE-TCP muxes, so every ICE-TCP connection
// counts, including those that never send a STUN request.
type perAddrListener struct {
	net.Listener
	max int
	log *slog.Logger

	per      addrlimit.Counter
	mu       sync.Mutex
	logged   time.Time // last refusal logged: at most one line a second
	nrefused int       // refusals not logged since
}

func limitPerAddr(ln net.Listener, max int, log *slog.Logger) net.Listener {
	if max <= 0 {
		return ln
	}
	return &perAddrListener{Listener: ln, max: max, log: log}
}

func (l *perAddrListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := addrlimit.Key(c.RemoteAddr().String())
		release, ok := l.per.Acquire(key, l.max)
		if !ok {
			l.refused(key)
			_ = c.Close()
			continue
		}
		return &countedConn{Conn: c, release: release}, nil
	}
}

func (l *perAddrListener) refused(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.nrefused++
	if now := time.Now(); now.Sub(l.logged) >= time.Second {
		l.log.Warn("ICE-TCP connection refused: too many from this address", "addr", key,
			"limit", l.max, "refused", l.nrefused)
		l.logged, l.nrefused = now, 0
	}
}

// countedConn gives its address's slot back when closed.
type countedConn struct {
	net.Conn
	release func() // once, however often it is called
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.release()
	if errors.Is(err, net.ErrClosed) {
		return nil // closed by the other mux layer first
	}
	return err
}
