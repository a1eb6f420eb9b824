//go:build !linux

package main

import (
	"net"
	"time"
)

const rxOOBSize = 0

// enableRxTimestamps: kernel receive timestamps are only read on Linux;
// elsewhere samples use the time the tool read the datagram.
func enableRxTimestamps(*net.UDPConn) bool { return false }

func rxTimestamp([]byte) (time.Time, bool) { return time.Time{}, false }
