//go:build !linux

package lite

import (
	"net"
	"syscall"
)

func gsoSupported(*net.UDPConn) bool { return false }

var gsoOOBSize = 0

func putGSO(oob []byte, _ int) []byte { return oob[:0] }

func gsoRefused(error) bool { return false }

func socketCannotSegment(syscall.RawConn) bool { return false }
