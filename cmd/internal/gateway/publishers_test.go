package gateway

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/livegate/livegate/relay/rtcclient"
)

// Test publishers: the clip played until a test says otherwise, a WHIP
// offer's status, and idle TCP clients.

// player is a WHIP publisher of the clip, playing it in real time.
type player struct {
	*rtcclient.Publisher
	cancel context.CancelFunc
	done   chan struct{}
	end    sync.Once
}

// playing publishes path on g and plays the clip, looping, until the
// player stops, leaves or drops; at the test's end it leaves.
func (g *testGateway) playing(t *testing.T, path string) *player {
	t.Helper()
	c := loadClip(t)
	p := &player{Publisher: g.publish(t, path), done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go func() {
		defer close(p.done)
		play(ctx, p.Publisher, c, 0)
	}()
	t.Cleanup(p.leave)
	return p
}

// stop ends the playing and waits for it; the session stays.
func (p *player) stop() {
	p.cancel()
	<-p.done
}

// leave stops and ends the session with a DELETE, as a host that leaves.
func (p *player) leave() {
	p.end.Do(func() {
		p.stop()
		_ = p.Close(context.Background())
	})
}

// drop stops and closes the connection without a DELETE, as when a
// host's network goes.
func (p *player) drop() {
	p.end.Do(func() {
		p.stop()
		_ = p.PC.Close()
	})
}

// publishStatus publishes path with tryPublish and returns the WHIP status
// (201 when it worked, -1 when no answer came); a publisher that connected
// is closed when the test ends.
func (g *testGateway) publishStatus(t *testing.T, path, tok string) int {
	t.Helper()
	p, err := tryPublish(t, g, path, tok)
	if err == nil {
		t.Cleanup(func() { _ = p.Close(context.Background()) })
	}
	return statusOf(err)
}

// stillOpen counts the connections the server has not closed: a read
// that times out (20 ms) rather than ending.
func stillOpen(conns []net.Conn) int {
	open := 0
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				open++
			}
		}
	}
	return open
}

// idleConns opens up to n TCP connections to addr that send nothing; they
// are closed when the test ends. It stops at the first refused one.
func idleConns(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	var idle []net.Conn
	t.Cleanup(func() {
		for _, c := range idle {
			_ = c.Close()
		}
	})
	for range n {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		idle = append(idle, c)
	}
	return idle
}
