package lite

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
)

func (p *Peer) verifyFingerprint(raw [][]byte, _ [][]*x509.Certificate) error {
	if len(raw) == 0 {
		return errors.New("no client certificate")
	}
	sum := sha256.Sum256(raw[0])
	got := colonHex(sum[:])
	for _, f := range p.p.Fingerprints {
		algo, v, _ := strings.Cut(strings.TrimSpace(f), " ")
		if strings.EqualFold(algo, "sha-256") && strings.EqualFold(strings.TrimSpace(v), got) {
			return nil
		}
	}
	return errors.New("client certificate does not match the offer's fingerprint")
}

// dtlsServer is a peer's DTLS server during the handshake.
type dtlsServer struct {
	vconn *peerConn
	conn  *dtls.Conn
	// released is set by release before the peer drops the server: the
	// Conn may still act on a record it read just before its packet conn
	// closed, and closes that conn only on a close_notify or fatal alert
	// (or when the peer closes it, which a released server never is).
	released atomic.Bool
}

// dtlsHold is how long a connected peer keeps its DTLS server when the
// viewer sends no RTCP: long enough for a client that missed our last
// flight to retransmit its own several times (DTLS doubles its timer from
// 1 s).
const dtlsHold = 30 * time.Second

// releasable reports whether the sweeper should release the peer's DTLS
// server.
func (p *Peer) releasable(now int64) bool {
	if p.hs.Load() == nil || !p.connected.Load() {
		return false
	}
	return p.srtcpSeen.Load() || now-p.connectedAt.Load() > int64(dtlsHold)
}

// release drops the DTLS server of a connected peer and keeps what its
// close_notify and the viewer's alerts need (dtlsrecord.go). The server's
// goroutines end when their packet conn closes; closing it does not send
// anything, so the viewer sees no difference.
//
// A viewer's close_notify is not lost around the release: one the Conn
// reads as it is dropped ends the peer through dtlsClosed (released), one
// still queued for it is examined here once the records are kept, and one
// arriving in between waits for them in onPacket.
func (p *Peer) release() {
	if p.releaseLocked() {
		p.end("dtls closed by the viewer")
	}
}

// releaseLocked does release's work under life and reports whether a
// datagram queued for the dropped server ended the association.
func (p *Peer) releaseLocked() bool {
	p.life.Lock()
	defer p.life.Unlock()
	hs := p.hs.Load()
	if p.closed || hs == nil || !p.connected.Load() {
		return false
	}
	if st, ok := hs.conn.ConnectionState(); !ok || !suiteSupported(st.CipherSuiteID) {
		return false // not a suite dtlsRecords handles: keep the Conn
	}
	hs.released.Store(true)
	p.hs.Store(nil) // before the close: onPacket stops handing datagrams to it
	if testHookReleasing != nil {
		testHookReleasing(p, hs, false)
	}
	hs.vconn.close() // from here on the Conn sends nothing
	if testHookReleasing != nil {
		testHookReleasing(p, hs, true)
	}
	rec, err := snapshotDTLS(hs.conn)
	if err != nil {
		// The peer still works, but ends without a close_notify and
		// ignores the viewer's.
		p.t.p.Logger.Warn("lite: dtls state after the handshake", "err", err)
		return false
	}
	p.rec.Store(rec)
	ended := false
	for {
		select {
		case b := <-hs.vconn.in:
			ended = ended || rec.viewerEnded(b)
			continue
		default:
		}
		return ended
	}
}

// testHookReleasing, if set by a test, runs in release just after the
// peer dropped its DTLS server (closed false) and after the server's
// packet conn closed (closed true).
var testHookReleasing func(p *Peer, hs *dtlsServer, closed bool)

// dtlsClosed is the peer's DTLS server closing its packet conn: after the
// handshake that is the viewer's close_notify or fatal alert (a failed
// handshake is reported by handshake), also when the server read it just
// as the peer released it. The peer's own Close clears connected first.
// It runs on the server's goroutine, which the peer's Close waits for:
// hence the goroutine.
func (p *Peer) dtlsClosed(hs *dtlsServer) {
	if !p.connected.Load() || (p.hs.Load() != hs && !hs.released.Load()) {
		return
	}
	p.t.spawn(func() { p.end("dtls closed by the viewer") })
}

// sendCloseNotify tells the viewer the association is over, with the
// records kept after release.
func (p *Peer) sendCloseNotify(rec *dtlsRecords) {
	r := p.sel.Load()
	if r == nil {
		return
	}
	if b, err := rec.closeNotify(); err == nil {
		_ = p.sendTo(r, b)
	}
}

// peerConn is the per-peer packet conn the DTLS server runs on: records
// come from the shared socket's reader, answers go to the peer's selected
// address.
type peerConn struct {
	p      *Peer
	raddr  *net.UDPAddr // what DTLS sees as the remote: stable for its checks
	in     chan []byte
	wake   chan struct{}
	dl     atomic.Int64
	closed chan struct{}
	once   sync.Once
	// wmu orders sends against close: once close has returned, nothing
	// more leaves through this conn (see dtlsrecord.go on nonces).
	wmu      sync.RWMutex
	isClosed bool
	onClose  func() // set before the DTLS server starts
}

func newPeerConn(p *Peer) *peerConn {
	return &peerConn{p: p, raddr: &net.UDPAddr{IP: net.IPv4zero}, in: make(chan []byte, 16),
		wake: make(chan struct{}, 1), closed: make(chan struct{})}
}

// push hands a DTLS record to the DTLS server, dropping it if the server
// is behind (DTLS retransmits).
func (c *peerConn) push(b []byte) {
	select {
	case c.in <- append([]byte(nil), b...):
	default:
	}
}

func (c *peerConn) close() {
	c.wmu.Lock()
	c.isClosed = true
	c.wmu.Unlock()
	c.once.Do(func() { close(c.closed) })
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "lite: i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func (c *peerConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		var timer *time.Timer
		var tc <-chan time.Time
		if d := c.dl.Load(); d != 0 {
			left := time.Until(time.Unix(0, d))
			if left <= 0 {
				return 0, nil, timeoutError{}
			}
			timer = time.NewTimer(left)
			tc = timer.C
		}
		select {
		case pkt := <-c.in:
			if timer != nil {
				timer.Stop()
			}
			return copy(b, pkt), c.raddr, nil
		case <-c.wake:
		case <-tc:
		case <-c.closed:
			if timer != nil {
				timer.Stop()
			}
			return 0, nil, net.ErrClosed
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

func (c *peerConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	c.wmu.RLock()
	defer c.wmu.RUnlock()
	if c.isClosed {
		return 0, net.ErrClosed
	}
	r := c.p.sel.Load()
	if r == nil {
		return len(b), nil // no path yet: DTLS retransmits
	}
	return len(b), c.p.sendTo(r, b)
}

// Close is the DTLS server closing its packet conn: when it has read the
// viewer's close_notify or a fatal alert, on an error, or when the peer
// closes it.
func (c *peerConn) Close() error {
	c.close()
	if c.onClose != nil {
		c.onClose()
	}
	return nil
}
func (c *peerConn) LocalAddr() net.Addr           { return c.p.t.conn.LocalAddr() }
func (c *peerConn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }
func (c *peerConn) SetWriteDeadline(time.Time) error {
	return nil // writes never block: the socket drops when full
}

func (c *peerConn) SetReadDeadline(t time.Time) error {
	if t.IsZero() {
		c.dl.Store(0)
	} else {
		c.dl.Store(t.UnixNano())
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return nil
}

// bufs are the scratch buffers of the paths that do not write into a
// worker's batch (NACK answers, RTCP in and out, ICE-TCP): shared rather
// than two per peer, which would cost every viewer 3 KB for rare work.
var bufs = sync.Pool{New: func() any { b := make([]byte, slotSize); return &b }}

func getBuf() *[]byte  { return bufs.Get().(*[]byte) }
func putBuf(b *[]byte) { bufs.Put(b) }
