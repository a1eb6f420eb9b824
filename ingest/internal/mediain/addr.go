package mediain

import "net/netip"

// LimitKey is the address per-address connection limits count, from a
// connection's remote address (host:port): an IPv6 client by its /64,
// whose every address its host may use at will, so that a limit keyed by
// the whole address would bound nobody.
func LimitKey(remote string) string {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return remote
	}
	a := ap.Addr()
	if a.Unmap().Is4() {
		return a.Unmap().String()
	}
	return netip.PrefixFrom(a.WithZone(""), 64).Masked().String()
}
