//go:build linux

package lite

import (
	"encoding/binary"
	"errors"
	"net"
	"syscall"
	"unsafe"
)

// Linux's UDP generic segmentation offload (4.18+): a sendmsg whose
// control message gives a segment size is split by the kernel (or the
// NIC) into datagrams of that size, the last one possibly shorter, so a
// viewer's run of packets costs one pass through the stack instead of one
// per packet.
const (
	solUDP     = 17  // SOL_UDP
	udpSegment = 103 // UDP_SEGMENT
)

// gsoSupported reports whether the socket accepts UDP_SEGMENT: kernels
// without it fail the getsockopt with ENOPROTOOPT.
func gsoSupported(conn *net.UDPConn) bool {
	rc, err := conn.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		_, serr = syscall.GetsockoptInt(int(fd), solUDP, udpSegment)
	}); err != nil {
		return false
	}
	return serr == nil
}

// gsoOOBSize is the room one UDP_SEGMENT control message takes.
var gsoOOBSize = syscall.CmsgSpace(2)

// putGSO writes a UDP_SEGMENT control message for segments of size bytes
// into oob (gsoOOBSize long) and returns it.
func putGSO(oob []byte, size int) []byte {
	oob = oob[:gsoOOBSize]
	clear(oob)
	h := (*syscall.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level = solUDP
	h.Type = udpSegment
	h.SetLen(syscall.CmsgLen(2))
	binary.NativeEndian.PutUint16(oob[syscall.CmsgLen(0):], uint16(size))
	return oob
}

// gsoRefused tells whether a send error on a segmented message is the
// kernel refusing to segment it (net/ipv4/udp.c udp_send_skb, and the same
// in udp_v6_send_skb):
//   - EMSGSIZE (6.14+; EINVAL before): UDP header + segment size exceed the
//     route's MTU, the learned path MTU included. Depends on the
//     destination: a tunnel route, or an ICMP "fragmentation needed" for
//     that address, which anyone can send for their own.
//   - EIO: the route's device has no checksum offload, or an IPsec policy
//     covers the destination; per route, so per destination too (a VPN or
//     IPsec route to one viewer). Also a UDP-Lite socket (socketCannotSegment).
//   - EINVAL: more than UDP_MAX_SEGMENTS segments (merge never makes
//     those), or UDP checksums off on the socket (socketCannotSegment).
func gsoRefused(err error) bool {
	return errors.Is(err, syscall.EMSGSIZE) || errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EINVAL)
}

// Socket options udp_send_skb checks before segmenting, besides the route.
const (
	udpNoCheck6TX  = 101 // UDP_NO_CHECK6_TX
	ipprotoUDPLite = 136
)

// socketCannotSegment reports whether the socket itself makes the kernel
// refuse every segmented message, whatever the destination: UDP checksums
// off for IPv4 (SO_NO_CHECK) or IPv6 (UDP_NO_CHECK6_TX), or a UDP-Lite
// socket. Asked only after a refusal, so a refusal can be told apart from
// one that only that destination's route causes.
func socketCannotSegment(rc syscall.RawConn) bool {
	if rc == nil {
		return false
	}
	var off bool
	if err := rc.Control(func(fd uintptr) {
		if v, err := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_NO_CHECK); err == nil && v != 0 {
			off = true
		}
		if v, err := syscall.GetsockoptInt(int(fd), solUDP, udpNoCheck6TX); err == nil && v != 0 {
			off = true
		}
		if v, err := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_PROTOCOL); err == nil && v == ipprotoUDPLite {
			off = true
		}
	}); err != nil {
		return false
	}
	return off
}
