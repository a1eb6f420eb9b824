package rtmp

import (
	"net"
	"testing"
	"time"

	"github.com/livegate/livegate/relay"
)

// Found: HandshakeTimeout was documented (and defaulted) but never
// applied; a connection that never got to publishing held one of its
// address's slots for the whole ReadTimeout.
func TestHandshakeTimeoutClosesSilentConnection(t *testing.T) {
	hub := relay.NewHub(relay.Params{})
	defer hub.Close()
	s, err := New(Params{Hub: hub, Addr: "127.0.0.1:0", ReadTimeout: 10 * time.Second, HandshakeTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("the server sent something to a client that sent nothing")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("a silent connection was still open after 5 s (handshake timeout 200 ms)")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("closed after %v, handshake timeout 200 ms", d)
	}
}
