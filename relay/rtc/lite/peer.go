package lite

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
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

	// hs is the DTLS server until the viewer has shown it finished the
	// handshake; then only rec is kept (dtlsrecord.go). Both change under
	// life, and are read without it on the packet path.
	hs  atomic.Pointer[dtlsServer]
	rec atomic.Pointer[dtlsRecords]
	// srtcpSeen: an SRTCP packet from the viewer opened, so it has our
	// Finished and will not retransmit its last flight: hs can go.
	srtcpSeen   atomic.Bool
	connectedAt atomic.Int64

	// life orders the end of the handshake against Close: a peer closed
	// during the handshake never becomes connected.
	life   sync.Mutex
	closed bool

	// wmu guards out and gcm: the worker, the NACK path and sender
	// reports all encrypt with the same context.
	wmu  sync.Mutex
	out  *srtp.Context
	gcm  *gcmSealer // RTP under the AES-GCM profile (srtpgcm.go); nil: out seals RTP too
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
	vconn := newPeerConn(peer)
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
		CipherSuites:           dtlsSuites,
		InsecureSkipVerify:     true, // self-signed: checked against the offer's fingerprint instead
		VerifyPeerCertificate:  peer.verifyFingerprint,
	}
	dc, err := dtls.Server(vconn, vconn.raddr, cfg)
	if err != nil {
		t.unregister(peer)
		return nil, fmt.Errorf("lite: dtls: %w", err)
	}
	hs := &dtlsServer{vconn: vconn, conn: dc}
	peer.hs.Store(hs)
	vconn.onClose = func() { peer.dtlsClosed(hs) }
	if !t.spawn(func() { peer.handshake(hs) }) {
		// The Conn has started nothing yet (its handshake is lazy).
		vconn.close()
		t.unregister(peer)
		return nil, errors.New("lite: transport closed")
	}
	return peer, nil
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
		p.life.Lock()
		p.closed = true
		p.connected.Store(false)
		hs := p.hs.Swap(nil)
		rec := p.rec.Swap(nil)
		p.life.Unlock()
		close(p.done)
		switch {
		case hs != nil:
			_ = hs.conn.Close() // sends close_notify itself
			hs.vconn.close()
		case rec != nil:
			p.sendCloseNotify(rec)
		}
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

// handshake runs the DTLS handshake and sets up SRTP. Nothing waits on
// the DTLS connection afterwards: until it is released (release), the
// connection itself handles the viewer's alerts and closes its packet conn
// on one (peerConn.Close); after, they are recognised where the viewer's
// datagrams arrive (onPacket).
func (p *Peer) handshake(hs *dtlsServer) {
	ctx, cancel := context.WithTimeout(p.t.ctx, p.t.p.HandshakeTimeout)
	err := hs.conn.HandshakeContext(ctx)
	cancel()
	if err != nil {
		p.end("dtls handshake: " + err.Error())
		return
	}
	if err := p.startSRTP(hs.conn); err != nil {
		p.end("srtp: " + err.Error())
		return
	}
	if testHookConnected != nil {
		testHookConnected(p)
	}
	p.life.Lock()
	if p.closed {
		p.life.Unlock()
		return
	}
	p.connectedAt.Store(time.Now().UnixNano())
	p.connected.Store(true)
	p.life.Unlock()
	if p.p.OnConnected != nil {
		p.p.OnConnected()
	}
}

// testHookConnected, if set by a test, runs between the handshake and the
// peer becoming connected.
var testHookConnected func(*Peer)

func (p *Peer) startSRTP(dc *dtls.Conn) error {
	prof, ok := dc.SelectedSRTPProtectionProfile()
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
	state, ok := dc.ConnectionState()
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
	var gcm *gcmSealer
	if profile == srtp.ProtectionProfileAeadAes128Gcm {
		if gcm, err = newGCMSealer(cfg.Keys.LocalMasterKey, cfg.Keys.LocalMasterSalt); err != nil {
			return err
		}
	}
	in, err := srtp.CreateContext(cfg.Keys.RemoteMasterKey, cfg.Keys.RemoteMasterSalt, profile,
		srtp.SRTCPReplayProtection(256))
	if err != nil {
		return err
	}
	p.wmu.Lock()
	p.out, p.gcm = out, gcm
	p.wmu.Unlock()
	p.rmu.Lock()
	p.in = in
	p.rmu.Unlock()
	return nil
}

// onPacket takes a non-STUN datagram from one of the peer's addresses.
func (p *Peer) onPacket(b []byte, from netip.AddrPort) {
	switch {
	case b[0] >= 20 && b[0] <= 63: // DTLS
		hs, rec := p.hs.Load(), p.rec.Load()
		if hs == nil && rec == nil && p.connected.Load() {
			// release is between dropping the DTLS server and keeping
			// its records (or could not keep them): wait for it, so that
			// a close_notify sent then still counts. hs is read before
			// rec, so a datagram pushed to a server being dropped is seen
			// by release's drain or here.
			p.life.Lock()
			hs, rec = p.hs.Load(), p.rec.Load()
			p.life.Unlock()
		}
		if hs != nil {
			hs.vconn.push(b)
		}
		if rec == nil {
			rec = p.rec.Load()
		}
		if rec != nil && rec.viewerEnded(b) {
			p.end("dtls closed by the viewer")
		}
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
		p.srtcpSeen.Store(true)
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
	if p.gcm != nil {
		if pkt, ok, err := p.gcm.seal(dst, n, h.SSRC, h.SequenceNumber); ok {
			return pkt, err
		}
	}
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
