package rtc

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
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

	mu      sync.Mutex
	per     map[string]int
	logged  time.Time // last refusal logged: at most one line a second
	refused int       // refusals not logged since
}

func limitPerAddr(ln net.Listener, max int, log *slog.Logger) net.Listener {
	if max <= 0 {
		return ln
	}
	return &perAddrListener{Listener: ln, max: max, log: log, per: map[string]int{}}
}

func (l *perAddrListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := addrKey(c.RemoteAddr())
		l.mu.Lock()
		if l.per[key] >= l.max {
			l.refusedLocked(key)
			l.mu.Unlock()
			_ = c.Close()
			continue
		}
		l.per[key]++
		l.mu.Unlock()
		return &countedConn{Conn: c, release: func() { l.release(key) }}, nil
	}
}

func (l *perAddrListener) refusedLocked(key string) {
	l.refused++
	if now := time.Now(); now.Sub(l.logged) >= time.Second {
		l.log.Warn("ICE-TCP connection refused: too many from this address", "addr", key,
			"limit", l.max, "refused", l.refused)
		l.logged, l.refused = now, 0
	}
}

func (l *perAddrListener) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.per[key]--; l.per[key] <= 0 {
		delete(l.per, key)
	}
}

// countedConn gives its address's slot back when closed (once, however
// often Close is called).
type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	if errors.Is(err, net.ErrClosed) {
		return nil // closed by the other mux layer first
	}
	return err
}

// addrKey is the address a per-address limit counts: IPv4 as is, IPv6
// by its /64.
func addrKey(a net.Addr) string {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return a.String()
	}
	ip := ap.Addr().Unmap()
	if ip.Is4() {
		return ip.String()
	}
	return netip.PrefixFrom(ip.WithZone(""), 64).Masked().String()
}
