package lite

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/stun/v4"
)

// ErrNotConnected is returned by writes before DTLS is up or after the
// peer ended.
var ErrNotConnected = errors.New("lite: peer not connected")

// PeerParams describes the remote side from its offer, and what to call.
type PeerParams struct {
	RemoteUfrag, RemotePwd string
	// Fingerprints are the offer's a=fingerprint values ("sha-256 AB:..."):
	// the DTLS client's certificate must match one.
	Fingerprints []string
	// OnConnected runs once, when SRTP is ready.
	OnConnected func()
	// OnRTCP runs on the socket's reading goroutine for every compound
	// RTCP packet the peer sends: it must not block.
	OnRTCP func(pkts []rtcp.Packet)
	// OnClose runs once when the peer ends, with why.
	OnClose func(reason string)
	// CC turns on send-side congestion control (twcc.go) when its ExtID is set.
	CC CC
}

type iceCreds struct {
	localUfrag, localPwd   string
	remoteUfrag, remotePwd string
}

type remote struct {
	ap  netip.AddrPort
	ua  *net.UDPAddr // the same, for sendmmsg (kept to avoid an allocation per packet)
	tcp *tcpPath     // set: the path is this ICE-TCP connection, not UDP
}

// sendTo sends one datagram on the path.
func (p *Peer) sendTo(r *remote, b []byte) error {
	if r.tcp != nil {
		r.tcp.send(b)
		return nil
	}
	_, err := p.t.conn.WriteToUDPAddrPort(b, r.ap)
	return err
}

// Peer is one viewer's transport: ICE-lite state, the DTLS server and the
// SRTP contexts. It has no goroutine on the packet path: media is written
// by the fan-out workers, and what the viewer sends is handled by the
// goroutine that reads the shared socket.
type Peer struct {
	t   *Transport
	p   PeerParams
	ice atomic.Pointer[iceCreds]
	sel atomic.Pointer[remote] // where media goes; nil until a check

	created    int64
	lastCheck  atomic.Int64 // unix ns of the last valid binding request
	connected  atomic.Bool
	nominated  atomic.Bool
	nudges     atomic.Int32
	tieBreaker uint64

	vconn *peerConn
	dconn *dtls.Conn

	// wmu guards out: the worker, the NACK path and sender
	// reports all encrypt with the same context.
	wmu  sync.Mutex
	out  *srtp.Context
	whdr rtp.Header

	// rmu guards in: RTCP comes from the UDP reader, or from
	// an ICE-TCP connection's reader.
	rmu sync.Mutex
	in  *srtp.Context

	Feedback Feedback
	cc       *cc // nil without transport-cc

	closeOnce sync.Once
	done      chan struct{}
	endReason atomic.Pointer[string]
}

// NewPeer registers a peer with fresh local ICE credentials and starts its
// DTLS server, which waits for the client's first flight.
func (t *Transport) NewPeer(p PeerParams) (*Peer, error) {
	if p.RemoteUfrag == "" || p.RemotePwd == "" {
		return nil, errors.New("lite: offer has no ICE credentials")
	}
	if len(p.Fingerprints) == 0 {
		return nil, errors.New("lite: offer has no DTLS fingerprint")
	}
	peer := &Peer{t: t, p: p, created: time.Now().UnixNano(), done: make(chan struct{}), cc: newCC(p.CC)}
	peer.ice.Store(&iceCreds{localUfrag: randString(8), localPwd: randString(24),
		remoteUfrag: p.RemoteUfrag, remotePwd: p.RemotePwd})
	peer.vconn = newPeerConn(peer)
	var tb [8]byte
	_, _ = rand.Read(tb[:])
	peer.tieBreaker = binary.BigEndian.Uint64(tb[:])
	if err := t.register(peer); err != nil {
		return nil, err
	}
	cfg := &dtls.Config{
		Certificates:           []tls.Certificate{t.cert},
		SRTPProtectionProfiles: []dtls.SRTPProtectionProfile{dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80},
		ClientAuth:             dtls.RequireAnyClientCert,
		ExtendedMasterSecret:   dtls.RequestExtendedMasterSecret,
		InsecureSkipVerify:     true, // self-signed: checked against the offer's fingerprint instead
		VerifyPeerCertificate:  peer.verifyFingerprint,
	}
	dc, err := dtls.Server(peer.vconn, peer.vconn.raddr, cfg)
	if err != nil {
		t.unregister(peer)
		return nil, fmt.Errorf("lite: dtls: %w", err)
	}
	peer.dconn = dc
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		peer.handshake()
	}()
	return peer, nil
}

// LocalCredentials are the ICE ufrag and password of the answer.
func (p *Peer) LocalCredentials() (ufrag, pwd string) {
	c := p.ice.Load()
	return c.localUfrag, c.localPwd
}

// RemoteUfrag is the viewer's current ICE ufrag.
func (p *Peer) RemoteUfrag() string { return p.ice.Load().remoteUfrag }

// Restart is an ICE restart: new remote credentials, new local ones. DTLS
// and SRTP carry on.
func (p *Peer) Restart(remoteUfrag, remotePwd string) (ufrag, pwd string, err error) {
	old := p.ice.Load()
	c := &iceCreds{localUfrag: randString(8), localPwd: randString(24), remoteUfrag: remoteUfrag, remotePwd: remotePwd}
	if err := p.t.restartICE(p, old, c); err != nil {
		return "", "", err
	}
	return c.localUfrag, c.localPwd, nil
}

// Done is closed when the peer has ended.
func (p *Peer) Done() <-chan struct{} { return p.done }

// Connected reports whether SRTP is up.
func (p *Peer) Connected() bool { return p.connected.Load() }

// RemoteAddr is where media goes (zero before the first check).
func (p *Peer) RemoteAddr() netip.AddrPort {
	if r := p.sel.Load(); r != nil {
		return r.ap
	}
	return netip.AddrPort{}
}

// Close ends the peer (a DTLS close_notify tells the viewer). Idempotent.
func (p *Peer) Close() {
	p.closeOnce.Do(func() {
		why := "closed"
		if r := p.endReason.Load(); r != nil {
			why = *r
		}
		p.connected.Store(false)
		close(p.done)
		if p.dconn != nil {
			_ = p.dconn.Close()
		}
		p.vconn.close()
		p.t.unregister(p)
		if p.p.OnClose != nil {
			p.p.OnClose(why)
		}
	})
}

func (p *Peer) end(why string) {
	p.endReason.CompareAndSwap(nil, &why)
	p.Close()
}

// expired says why the sweeper should end the peer, or "".
func (p *Peer) expired(now int64) string {
	last := p.lastCheck.Load()
	switch {
	case !p.connected.Load() && now-p.created > int64(p.t.p.HandshakeTimeout):
		return "did not connect in time"
	case last != 0 && now-last > int64(p.t.p.ConsentTimeout):
		return "consent expired"
	case last == 0 && now-p.created > int64(p.t.p.ConsentTimeout)+int64(p.t.p.HandshakeTimeout):
		return "no connectivity check"
	}
	return ""
}

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

// handshake runs the DTLS handshake, sets up SRTP, and then keeps reading
// the DTLS connection so that a close_notify (or a retransmitted client
// flight) is handled. It only reads DTLS records, never media.
func (p *Peer) handshake() {
	ctx, cancel := context.WithTimeout(p.t.ctx, p.t.p.HandshakeTimeout)
	err := p.dconn.HandshakeContext(ctx)
	cancel()
	if err != nil {
		p.end("dtls handshake: " + err.Error())
		return
	}
	if err := p.startSRTP(); err != nil {
		p.end("srtp: " + err.Error())
		return
	}
	p.connected.Store(true)
	if p.p.OnConnected != nil {
		p.p.OnConnected()
	}
	// The rest runs on a fresh goroutine: this one's stack grew for the
	// handshake's cryptography, and a parked goroutine keeps its stack.
	p.t.wg.Add(1)
	go func() {
		defer p.t.wg.Done()
		p.watchDTLS()
	}()
}

// watchDTLS reads the DTLS connection until it ends: a close_notify from
// the viewer ends the peer. Nothing but alerts (and data channel messages,
// which are dropped) comes this way.
func (p *Peer) watchDTLS() {
	b := make([]byte, 1500)
	for {
		if _, err := p.dconn.Read(b); err != nil {
			if strings.Contains(err.Error(), "buffer is too small") {
				continue
			}
			if errors.Is(err, dtls.ErrConnClosed) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "EOF") {
				p.end("dtls closed by the viewer")
			} else {
				p.end("dtls: " + err.Error())
			}
			return
		}
	}
}

func (p *Peer) startSRTP() error {
	prof, ok := p.dconn.SelectedSRTPProtectionProfile()
	if !ok {
		return errors.New("no SRTP profile negotiated")
	}
	var profile srtp.ProtectionProfile
	switch prof {
	case dtls.SRTP_AEAD_AES_128_GCM:
		profile = srtp.ProtectionProfileAeadAes128Gcm
	case dtls.SRTP_AES128_CM_HMAC_SHA1_80:
		profile = srtp.ProtectionProfileAes128CmHmacSha1_80
	default:
		return fmt.Errorf("unsupported SRTP profile %#x", prof)
	}
	state, ok := p.dconn.ConnectionState()
	if !ok {
		return errors.New("no DTLS state")
	}
	cfg := srtp.Config{Profile: profile}
	if err := cfg.ExtractSessionKeysFromDTLS(&state, false); err != nil {
		return err
	}
	out, err := srtp.CreateContext(cfg.Keys.LocalMasterKey, cfg.Keys.LocalMasterSalt, profile)
	if err != nil {
		return err
	}
	in, err := srtp.CreateContext(cfg.Keys.RemoteMasterKey, cfg.Keys.RemoteMasterSalt, profile,
		srtp.SRTCPReplayProtection(256))
	if err != nil {
		return err
	}
	p.wmu.Lock()
	p.out = out
	p.wmu.Unlock()
	p.rmu.Lock()
	p.in = in
	p.rmu.Unlock()
	return nil
}

// onBinding answers a STUN binding request addressed to this peer's ufrag,
// from a UDP address or (tcp set) over an ICE-TCP connection.
func (p *Peer) onBinding(m *stun.Message, from netip.AddrPort, tcp *tcpPath) {
	c := p.ice.Load()
	var user stun.Username
	if err := user.GetFrom(m); err != nil {
		return
	}
	if _, rem, _ := strings.Cut(string(user), ":"); rem != c.remoteUfrag {
		return // an old ICE session's check, or someone guessing
	}
	if err := stun.NewShortTermIntegrity(c.localPwd).Check(m); err != nil {
		return
	}
	resp, err := stun.Build(stun.NewTransactionIDSetter(m.TransactionID), stun.BindingSuccess,
		&stun.XORMappedAddress{IP: from.Addr().AsSlice(), Port: int(from.Port())},
		stun.NewShortTermIntegrity(c.localPwd), stun.Fingerprint)
	if err != nil {
		return
	}
	here := &remote{ap: from, tcp: tcp}
	if tcp == nil {
		here.ua = net.UDPAddrFromAddrPort(from)
		p.t.learn(p, from)
	}
	_ = p.sendTo(here, resp.Raw)
	p.lastCheck.Store(time.Now().UnixNano())
	// ICE-lite: the viewer (controlling) nominates; until it does, its
	// first working path is where DTLS answers go.
	nominated := m.Contains(stun.AttrUseCandidate)
	if cur := p.sel.Load(); cur == nil || (nominated && (cur.ap != from || cur.tcp != tcp)) {
		p.sel.Store(here)
	}
	if nominated {
		p.nominated.Store(true)
	} else if !p.nominated.Load() && p.nudges.Add(1) <= maxNudges {
		p.nudge(c, here)
	}
}

// maxNudges bounds the binding requests a peer sends before nomination.
const maxNudges = 4

// nudge sends the viewer a binding request on a path its check just
// proved. A lite agent need not check anything, but some full agents
// (pion's among them) nominate a pair only on their next check tick (200
// ms) unless the other side sends a request on it: this one lets them
// nominate at once. The answer is read and dropped by the transport.
func (p *Peer) nudge(c *iceCreds, r *remote) {
	req, err := stun.Build(stun.TransactionID, stun.BindingRequest,
		stun.NewUsername(c.remoteUfrag+":"+c.localUfrag),
		iceControlled(p.tieBreaker), icePriority(1853824767),
		stun.NewShortTermIntegrity(c.remotePwd), stun.Fingerprint)
	if err != nil {
		return
	}
	_ = p.sendTo(r, req.Raw)
}

type iceControlled uint64

func (v iceControlled) AddTo(m *stun.Message) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(v))
	m.Add(stun.AttrICEControlled, b[:])
	return nil
}

type icePriority uint32

func (v icePriority) AddTo(m *stun.Message) error {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(v))
	m.Add(stun.AttrPriority, b[:])
	return nil
}

// onTCP takes one frame from an ICE-TCP connection of the peer.
func (p *Peer) onTCP(b []byte, tp *tcpPath) {
	if len(b) == 0 {
		return
	}
	if b[0] < 4 {
		if !stun.IsMessage(b) {
			return
		}
		m := &stun.Message{Raw: append([]byte(nil), b...)}
		if m.Decode() == nil && m.Type == stun.BindingRequest {
			p.onBinding(m, tp.from, tp)
		}
		return
	}
	p.onPacket(b, tp.from)
}

// onPacket takes a non-STUN datagram from one of the peer's addresses.
func (p *Peer) onPacket(b []byte, from netip.AddrPort) {
	switch {
	case b[0] >= 20 && b[0] <= 63: // DTLS
		p.vconn.push(b)
	case b[0] >= 128 && b[0] <= 191 && len(b) >= 8 && b[1] >= 192 && b[1] <= 223: // RTCP
		p.rmu.Lock()
		var pkts []rtcp.Packet
		plain, err := []byte(nil), errors.New("no SRTP yet")
		if p.in != nil {
			buf := getBuf()
			defer putBuf(buf)
			plain, err = p.in.DecryptRTCP((*buf)[:0], b, nil)
		}
		if err == nil {
			pkts, err = rtcp.Unmarshal(plain)
		}
		p.rmu.Unlock()
		if err != nil {
			return
		}
		p.Feedback.note(pkts)
		p.cc.onRTCP(p, pkts)
		if p.p.OnRTCP != nil {
			p.p.OnRTCP(pkts)
		}
	}
}

// WriteRTP encrypts and sends one packet at once (NACK answers, tests).
func (p *Peer) WriteRTP(h *rtp.Header, payload []byte) error {
	r := p.sel.Load()
	if r == nil || !p.connected.Load() {
		return ErrNotConnected
	}
	p.wmu.Lock()
	buf := getBuf()
	defer putBuf(buf)
	pkt, err := p.seal((*buf)[:0], h, payload)
	if err == nil {
		err = p.sendTo(r, pkt)
	}
	p.wmu.Unlock()
	return err
}

// QueueRTP encrypts one packet into worker w's batch; Transport.Flush(w)
// sends it (with everything else the worker queued).
func (p *Peer) QueueRTP(w int, h *rtp.Header, payload []byte) error {
	r := p.sel.Load()
	if r == nil || !p.connected.Load() {
		return ErrNotConnected
	}
	if r.tcp != nil {
		return p.WriteRTP(h, payload)
	}
	bt := p.t.batches.get(w)
	slot := p.t.batches.slot(bt)
	p.wmu.Lock()
	pkt, err := p.seal(slot, h, payload)
	p.wmu.Unlock()
	if err != nil {
		p.t.batches.dropped.Add(1)
		return err
	}
	p.t.batches.commit(bt, pkt, r.ua)
	return nil
}

// seal writes h and payload into dst (capacity slotSize) and encrypts them
// in place. wmu must be held.
func (p *Peer) seal(dst []byte, h *rtp.Header, payload []byte) ([]byte, error) {
	h = p.cc.stamp(h, len(payload))
	n := h.MarshalSize()
	if n+len(payload)+32 > cap(dst) {
		return nil, errors.New("lite: packet too large")
	}
	dst = dst[:n+len(payload)]
	if _, err := h.MarshalTo(dst); err != nil {
		return nil, err
	}
	copy(dst[n:], payload)
	return p.out.EncryptRTP(dst[:0], dst, &p.whdr)
}

// WriteRTCP encrypts and sends a compound RTCP packet (sender reports).
func (p *Peer) WriteRTCP(pkts []rtcp.Packet) error {
	r := p.sel.Load()
	if r == nil || !p.connected.Load() {
		return ErrNotConnected
	}
	raw, err := rtcp.Marshal(pkts)
	if err != nil {
		return err
	}
	p.wmu.Lock()
	buf := getBuf()
	defer putBuf(buf)
	out, err := p.out.EncryptRTCP((*buf)[:0], raw, nil)
	if err == nil {
		err = p.sendTo(r, out)
	}
	p.wmu.Unlock()
	return err
}

func randString(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[b[i]&63]
	}
	return string(b)
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

func (c *peerConn) close() { c.once.Do(func() { close(c.closed) }) }

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
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	r := c.p.sel.Load()
	if r == nil {
		return len(b), nil // no path yet: DTLS retransmits
	}
	return len(b), c.p.sendTo(r, b)
}

func (c *peerConn) Close() error                  { c.close(); return nil }
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
