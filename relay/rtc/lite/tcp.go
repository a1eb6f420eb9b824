package lite

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/pion/stun/v4"
)

// ICE-TCP (RFC 6544, passive side, RFC 4571 framing). The TCP listener is
// shared with pion's ICE-TCP mux: WrapTCP returns the listener pion must be
// given, which keeps the connections whose first STUN request names a lite
// peer and hands every other one to pion, bytes intact.
//
// A TCP viewer costs more than a UDP one (a reader and a writer goroutine,
// a copy per packet into its bounded write queue): networks that drop UDP
// are the exception.

const (
	tcpFirstFrameTimeout = 10 * time.Second
	tcpQueue             = 512 // packets queued toward one TCP viewer; beyond, dropped
)

// WrapTCP makes the transport serve lite peers over ICE-TCP on ln. Give
// the returned listener to pion's TCP mux.
func (t *Transport) WrapTCP(ln net.Listener) net.Listener {
	t.tcp.Store(true)
	l := &tcpListener{Listener: ln, t: t, conns: make(chan net.Conn), done: make(chan struct{})}
	l.ctx, l.cancel = context.WithCancel(t.ctx)
	// Not in t.wg: it ends when the listener's owner (pion's TCP mux,
	// closed after the transport) closes it.
	go l.acceptLoop()
	return l
}

type tcpListener struct {
	net.Listener
	t     *Transport
	conns chan net.Conn // for pion
	done  chan struct{}
	once  sync.Once
	err   error // set by end, before done is closed
	// ctx ends with the listener or the transport: connections still
	// being classified are cut then rather than at their first frame's
	// timeout.
	ctx    context.Context
	cancel context.CancelFunc
}

func (l *tcpListener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			l.end(err)
			return
		}
		go l.classify(c)
	}
}

// classify reads the first frame of a connection: a binding request for a
// lite peer keeps it here, anything else goes to pion.
func (l *tcpListener) classify(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(tcpFirstFrameTimeout))
	stop := context.AfterFunc(l.ctx, func() { _ = c.SetReadDeadline(time.Now()) })
	frame, raw, err := readFrame(c, nil)
	if !stop() || err != nil {
		_ = c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	if p := l.t.peerForSTUN(frame); p != nil {
		l.t.serveTCP(p, c, frame)
		return
	}
	select {
	case l.conns <- &replayConn{Conn: c, pending: raw}:
	case <-l.done:
		_ = c.Close()
	case <-l.t.ctx.Done():
		_ = c.Close()
	}
}

func (l *tcpListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, l.err // written before done was closed
	}
}

func (l *tcpListener) Close() error {
	err := l.Listener.Close()
	l.end(net.ErrClosed)
	return err
}

// end records why the listener stopped, once, and only then closes done:
// Accept reads err after done, so the write is published by the close.
func (l *tcpListener) end(err error) {
	l.once.Do(func() {
		l.err = err
		close(l.done)
		l.cancel()
	})
}

// replayConn gives pion back the bytes read to classify the connection.
type replayConn struct {
	net.Conn
	pending []byte
}

func (c *replayConn) Read(b []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// readFrame reads one RFC 4571 frame; raw is the frame with its length.
func readFrame(r io.Reader, buf []byte) (frame, raw []byte, err error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr[:]))
	if cap(buf) < n+2 {
		buf = make([]byte, n+2)
	}
	buf = buf[:n+2]
	copy(buf, hdr[:])
	if _, err := io.ReadFull(r, buf[2:]); err != nil {
		return nil, nil, err
	}
	return buf[2:], buf, nil
}

// peerForSTUN returns the lite peer a binding request is addressed to.
func (t *Transport) peerForSTUN(b []byte) *Peer {
	if len(b) == 0 || b[0] >= 4 || !stun.IsMessage(b) {
		return nil
	}
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if m.Decode() != nil || m.Type != stun.BindingRequest {
		return nil
	}
	var user stun.Username
	if user.GetFrom(m) != nil {
		return nil
	}
	local, _, _ := strings.Cut(string(user), ":")
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.byUfrag[local]
}

// tcpPath is one ICE-TCP connection of a peer.
type tcpPath struct {
	conn net.Conn
	from netip.AddrPort
	out  chan []byte
	done chan struct{}
	once sync.Once
}

func (tp *tcpPath) close() {
	tp.once.Do(func() {
		close(tp.done)
		_ = tp.conn.Close()
	})
}

// send queues one datagram (copied, framed), dropping it when the
// connection is behind: a slow viewer never blocks the fan-out.
func (tp *tcpPath) send(b []byte) {
	if len(b) > 0xffff {
		return
	}
	f := make([]byte, 2+len(b))
	binary.BigEndian.PutUint16(f, uint16(len(b)))
	copy(f[2:], b)
	select {
	case tp.out <- f:
	case <-tp.done:
	default:
	}
}

// serveTCP runs a lite peer's TCP connection until it or the peer ends.
func (t *Transport) serveTCP(p *Peer, c net.Conn, first []byte) {
	from, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	tp := &tcpPath{conn: c, from: from, out: make(chan []byte, tcpQueue), done: make(chan struct{})}
	writer := func() {
		defer tp.close()
		for {
			select {
			case f := <-tp.out:
				if _, err := c.Write(f); err != nil {
					return
				}
			case <-tp.done:
				return
			case <-p.done:
				return
			case <-t.ctx.Done():
				return
			}
		}
	}
	if !t.spawn(writer) {
		_ = c.Close() // the transport is closing
		return
	}
	defer tp.close()
	p.onTCP(first, tp)
	buf := make([]byte, 0, 1502)
	for {
		frame, _, err := readFrame(c, buf)
		if err != nil {
			if r := p.sel.Load(); r != nil && r.tcp == tp {
				p.end("ICE-TCP connection closed")
			}
			return
		}
		p.onTCP(frame, tp)
	}
}
