//go:build linux

package main

import (
	"encoding/binary"
	"net"
	"syscall"
	"time"
)

// rxOOBSize is the control-message room per datagram: one
// SCM_TIMESTAMPNS (a 16-byte header and a 16-byte timespec).
const rxOOBSize = 64

// enableRxTimestamps asks the kernel to stamp every datagram with the time
// it reached the socket (SO_TIMESTAMPNS, CLOCK_REALTIME): latency samples
// then do not include the tool's own scheduling delay. Only the 64-bit
// control-message layout is parsed; elsewhere it reports false.
func enableRxTimestamps(c *net.UDPConn) bool {
	if syscall.SizeofCmsghdr != 16 {
		return false
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
	}); err != nil {
		return false
	}
	return serr == nil
}

// rxTimestamp finds the SCM_TIMESTAMPNS in a datagram's control messages
// (64-bit layout: len uint64, level int32, type int32, then the data
// aligned to 8 bytes). It allocates nothing and never trusts a length.
func rxTimestamp(oob []byte) (time.Time, bool) {
	const hdr = 16
	for len(oob) >= hdr {
		l := binary.NativeEndian.Uint64(oob)
		level := int32(binary.NativeEndian.Uint32(oob[8:]))
		typ := int32(binary.NativeEndian.Uint32(oob[12:]))
		if l < hdr || l > uint64(len(oob)) {
			return time.Time{}, false
		}
		if level == syscall.SOL_SOCKET && typ == syscall.SCM_TIMESTAMPNS && l >= hdr+16 {
			sec := int64(binary.NativeEndian.Uint64(oob[hdr:]))
			nsec := int64(binary.NativeEndian.Uint64(oob[hdr+8:]))
			if sec <= 0 || nsec < 0 || nsec >= 1e9 {
				return time.Time{}, false
			}
			return time.Unix(sec, nsec), true
		}
		next := (l + 7) &^ 7
		if next >= uint64(len(oob)) {
			break
		}
		oob = oob[next:]
	}
	return time.Time{}, false
}
