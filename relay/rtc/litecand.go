package rtc

import (
	"fmt"
	"net"
	"strings"

	"github.com/livegate/livegate/relay/rtc/lite"
)

// Lite is the transport for WHEP viewers, or nil when viewers are pion
// PeerConnections (Config.LiteViewers off, or no UDP).
func (e *Engine) Lite() *lite.Transport { return e.lite }

// LiteCandidates are the host candidates (SDP a=candidate values, without
// "a=candidate:") a lite viewer's answer offers: the shared UDP port at each
// advertised address, as pion's sessions advertise it, and the ICE-TCP
// port (passive) when it is on.
func (e *Engine) LiteCandidates() []string {
	var ips []string
	for _, ip := range e.cfg.IPs {
		pub, _, _ := strings.Cut(ip, "/")
		ips = append(ips, pub)
	}
	if len(ips) == 0 {
		ips = e.interfaceIPs()
	}
	var out []string
	found := 1
	if ua, ok := e.LocalAddr().(*net.UDPAddr); ok {
		for _, ip := range ips {
			out = append(out, fmt.Sprintf("%d 1 udp %d %s %d typ host", found, 2130706431-found, ip, ua.Port))
			found++
		}
	}
	if ta, ok := e.TCPAddr().(*net.TCPAddr); ok && e.lite != nil && e.lite.ServesTCP() {
		for _, ip := range ips {
			out = append(out, fmt.Sprintf("%d 1 tcp %d %s %d typ host tcptype passive", found, 1671430143-found, ip, ta.Port))
			found++
		}
	}
	return out
}

// interfaceIPs are the addresses a socket bound to the media address is
// reachable on: that address if it is specific, else the interfaces'.
func (e *Engine) interfaceIPs() []string {
	if ua, ok := e.LocalAddr().(*net.UDPAddr); ok && !ua.IP.IsUnspecified() {
		return []string{ua.IP.String()}
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.IsLinkLocalUnicast() || ipn.IP.IsMulticast() {
			continue
		}
		if ipn.IP.IsLoopback() && !e.cfg.IncludeLoopback {
			continue
		}
		out = append(out, ipn.IP.String())
	}
	return out
}
