// Package addrlimit is the per-client accounting the gateway's listeners
// and API share: the key a client address counts under, and a counter of
// the slots each key holds up to a limit.
package addrlimit

import (
	"net/netip"
	"sync"
)

// Key is the key per-address limits count addr under (an address with or
// without a port): IPv4, also written IPv4-mapped, one address at a time;
// IPv6 by its /64, the smallest network a site gets, whose every address
// its host may use at will (privacy addresses), so a limit keyed by the
// whole address would bound nobody. Anything else is its own key.
func Key(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		ap, perr := netip.ParseAddrPort(addr)
		if perr != nil {
			return addr
		}
		a = ap.Addr()
	}
	if a = a.Unmap(); a.Is4() {
		return a.String()
	}
	return netip.PrefixFrom(a.WithZone(""), 64).Masked().String()
}

// Counter counts the slots each key holds. Keys holding none are
// forgotten, so it stays as large as the keys holding slots. The zero
// Counter is ready to use.
type Counter struct {
	mu sync.Mutex
	n  map[string]int
}

// Acquire takes one of key's slots unless it holds max already (max <= 0:
// no limit). On success release gives the slot back; calling it again does
// nothing.
func (c *Counter) Acquire(key string, max int) (release func(), ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if max > 0 && c.n[key] >= max {
		return nil, false
	}
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[key]++
	return sync.OnceFunc(func() { c.release(key) }), true
}

func (c *Counter) release(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[key]--; c.n[key] <= 0 {
		delete(c.n, key)
	}
}

// Held is the number of slots key holds.
func (c *Counter) Held(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[key]
}

// Keys is the number of keys holding a slot.
func (c *Counter) Keys() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.n)
}
