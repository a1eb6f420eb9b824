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

// gsoRefused tells whether a send error means the kernel or the device
// cannot segment (EIO: no checksum offload on the route's device; EINVAL:
// segment size or count out of its limits, or no UDP_SEGMENT at all).
func gsoRefused(err error) bool {
	return errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EINVAL)
}
