package rtc

import (
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/livegate/livegate/internal/testenv"
)

// Found: nothing bounded the ICE-TCP connections of one address, so one
// client could hold as many as it liked (each a goroutine and a buffer
// until its first-request timeout). With webrtc-tcp-conns-per-ip N, the
// N+1th connection from an address is closed at once, naming the address
// in the log, while other addresses still connect; a closed connection
// gives its slot back. Both the lite transport's listener and pion's mux
// sit on the capped listener.
func TestICETCPConnsPerAddress(t *testing.T) {
	for _, lite := range []bool{true, false} {
		name := "pion"
		if lite {
			name = "lite"
		}
		t.Run(name, func(t *testing.T) {
			const limit = 3
			var logs testenv.Buffer
			e, err := NewEngine(Config{UDPAddr: "127.0.0.1:0", TCPAddr: "127.0.0.1:0", IPs: []string{"127.0.0.1"},
				LiteViewers: lite, TCPConnsPerIP: limit, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = e.Close() }) // after the connections (cleanups run last first)
			addr := e.TCPAddr().String()
			dial := func(from string) net.Conn {
				t.Helper()
				d := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
				c, err := d.Dial("tcp", addr)
				if err != nil {
					t.Fatalf("dial from %s: %v", from, err)
				}
				t.Cleanup(func() { c.Close() })
				return c
			}
			// open reports whether the gateway keeps c open (a refused
			// connection is closed at once: EOF or reset).
			open := func(c net.Conn) bool {
				_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
				_, err := c.Read(make([]byte, 1))
				var ne net.Error
				return errors.As(err, &ne) && ne.Timeout()
			}
			var first []net.Conn
			for i := range limit {
				c := dial("127.0.0.1")
				if !open(c) {
					t.Fatalf("connection %d of %d from 127.0.0.1 closed", i+1, limit)
				}
				first = append(first, c)
			}
			if extra := dial("127.0.0.1"); open(extra) {
				t.Fatalf("connection %d from 127.0.0.1 kept open; limit %d", limit+1, limit)
			}
			if other := dial("127.0.0.2"); !open(other) {
				t.Fatal("a connection from another address (127.0.0.2) was closed")
			}
			if !strings.Contains(logs.String(), "too many from this address") || !strings.Contains(logs.String(), "addr=127.0.0.1 ") {
				t.Errorf("no log line naming the address:\n%s", logs.String())
			}
			// A closed connection frees its slot.
			first[0].Close()
			time.Sleep(100 * time.Millisecond)
			if again := dial("127.0.0.1"); !open(again) {
				t.Fatal("after one connection closed, a new one from 127.0.0.1 was refused")
			}
		})
	}
}
