package rtmp

import (
	"bytes"
	"errors"
	"net"
	"sync"
)

// pumpConn reads its connection on its own goroutine into a buffer, so
// that the push loop can tell whether the server sent anything before it
// calls the RTMP client's Read. gortmplib answers pings and acknowledges
// from inside Read, writing on the same buffered writer as the media: Read
// must therefore run on the goroutine that writes, and only when it will
// not block for long.
type pumpConn struct {
	net.Conn
	mu   sync.Mutex
	cond *sync.Cond
	buf  bytes.Buffer
	err  error
}

func newPumpConn(c net.Conn) *pumpConn {
	p := &pumpConn{Conn: c}
	p.cond = sync.NewCond(&p.mu)
	go p.pump()
	return p
}

// maxUnread bounds what the server may send between two polls (acks and
// pings are a few bytes; a server flooding us ends the session).
const maxUnread = 1 << 20

var errFlood = errors.New("rtmp server sent over 1 MiB without being read")

func (p *pumpConn) pump() {
	b := make([]byte, 16<<10)
	for {
		n, err := p.Conn.Read(b)
		p.mu.Lock()
		p.buf.Write(b[:n])
		if err == nil && p.buf.Len() > maxUnread {
			err = errFlood
			_ = p.Conn.Close()
		}
		if err != nil {
			p.err = err
		}
		p.cond.Broadcast()
		p.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (p *pumpConn) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.buf.Len() == 0 && p.err == nil {
		p.cond.Wait()
	}
	if p.buf.Len() > 0 {
		return p.buf.Read(b)
	}
	return 0, p.err
}

// readable reports whether bytes (or an error) wait to be read.
func (p *pumpConn) readable() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.buf.Len() > 0 || p.err != nil
}
