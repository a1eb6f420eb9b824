//go:build !linux

package lite

import "net"

func gsoSupported(*net.UDPConn) bool { return false }

var gsoOOBSize = 0

func putGSO(oob []byte, _ int) []byte { return oob[:0] }

func gsoRefused(error) bool { return false }
