package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/pion/ice/v4"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/stun/v4"
	"golang.org/x/net/ipv4"
)

// The light client: a WHEP viewer that is not a PeerConnection. One UDP
// socket and one reader goroutine per viewer; ICE as the controlling
// agent (checks to the answer's candidates, answers to the server's
// checks, consent every few seconds), DTLS through pion/dtls over a packet
// conn fed from the socket, SRTP through pion/srtp, receiver reports and
// NACKs out. The reader reads with recvmmsg and takes each datagram's
// kernel receive time as its arrival, so that the tool's own backlog does
// not count as gateway latency.

const (
	liteBatch     = 16   // datagrams per recvmmsg
	liteBufSize   = 1600 // larger datagrams are truncated and dropped
	liteDTLSQueue = 64   // DTLS datagrams waiting for the handshake

	liteTick           = 100 * time.Millisecond // NACK cadence, as pion's generator
	liteReportInterval = time.Second
	liteConsent        = 5 * time.Second
	liteCheckInterval  = 50 * time.Millisecond // ICE check retransmission
	liteMaxNACKTries   = 5
	liteMaxNACKs       = 512 // sequence numbers awaiting repair
	liteEarlyMax       = 512 // datagrams kept until the keys are set
	// litePriority is the PRIORITY of the checks: a peer-reflexive
	// candidate's (type preference 110), as browsers send.
	litePriority = 110<<24 | 65535<<8 | 255
)

// liteCert is the DTLS certificate every light viewer of the run shares
// (one ECDSA key generation, not one per viewer).
var liteCert = sync.OnceValues(func() (tls.Certificate, error) { return selfsign.GenerateSelfSigned() })

// liteConn is one light viewer's transport.
type liteConn struct {
	v    *viewer
	sock *net.UDPConn
	bpc  *ipv4.PacketConn
	// kernelTS: the socket stamps datagrams (SO_TIMESTAMPNS).
	kernelTS bool
	http     *http.Client
	resource string // the WHEP session, for DELETE

	localUfrag, localPwd string
	tieBreaker           uint64
	ans                  atomic.Pointer[liteAnswer] // set before the first check
	remote               atomic.Pointer[netip.AddrPort]
	iceOK                chan struct{}
	iceOnce              sync.Once

	dtlsPC *dtlsPacketConn
	dc     *dtls.Conn

	rx    atomic.Pointer[srtp.Context] // decrypts; the reader's alone
	tx    *srtp.Context                // encrypts RTCP: the setup goroutine's until ready, then the reader's
	ready atomic.Bool
	ssrc  uint32 // the viewer's own RTCP sender SSRC

	closed atomic.Bool
	lastRx atomic.Int64 // UnixNano of the last datagram batch
}

// liteCounters are the light clients' counts of what they dropped.
type liteCounters struct {
	bad      atomic.Uint64 // malformed, truncated, unknown first byte, unknown payload type
	srtp     atomic.Uint64 // SRTP that did not decrypt (or replayed)
	early    atomic.Uint64 // media before the keys beyond what is kept for them
	dtlsDrop atomic.Uint64 // DTLS datagrams dropped because the queue was full
	readTS   atomic.Uint64 // datagrams stamped with the read time (no kernel time)
}

// openLiteViewer connects one light WHEP session and waits until its
// DTLS handshake is done and the keys are in place.
func (b *bench) openLiteViewer(ctx context.Context, id int) (*viewer, error) {
	v := &viewer{id: id, b: b, connected: make(chan struct{}), down: make(chan struct{})}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.connectTimeout)
	defer cancel()
	cert, err := liteCert()
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	sock, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	// Room for a keyframe burst while the reader is descheduled.
	_ = sock.SetReadBuffer(1 << 20)
	c := &liteConn{
		v: v, sock: sock, bpc: ipv4.NewPacketConn(sock), kernelTS: enableRxTimestamps(sock),
		http:       &http.Client{Transport: b.transport, Timeout: b.cfg.connectTimeout},
		localUfrag: randICE(8), localPwd: randICE(24), tieBreaker: randUint64(),
		iceOK: make(chan struct{}), ssrc: uint32(randUint64()) | 1,
	}
	c.dtlsPC = newDTLSPacketConn(c)
	v.conn = c
	v.readers.Add(1)
	go func() {
		defer v.readers.Done()
		c.readLoop()
	}()
	fail := func(err error) (*viewer, error) {
		v.close()
		return nil, err
	}

	la := sock.LocalAddr().(*net.UDPAddr).AddrPort()
	local := netip.AddrPortFrom(la.Addr().Unmap(), la.Port())
	sum := sha256.Sum256(cert.Certificate[0])
	offer := liteOffer(c.localUfrag, c.localPwd, colonHex(sum[:]), local, b.cfg.nack)
	answer, err := c.post(ctx, b.whepURL, offer)
	if err != nil {
		return fail(err)
	}
	a, err := parseLiteAnswer(answer)
	if err != nil {
		return fail(err)
	}
	c.ans.Store(a)

	if err := c.connectICE(ctx); err != nil {
		return fail(err)
	}
	if err := c.handshake(ctx, cert); err != nil {
		return fail(err)
	}
	v.connectedAt = time.Now()
	v.connOnce.Do(func() { close(v.connected) })
	return v, nil
}

// post sends the offer and returns the answer; the session resource is
// kept for DELETE.
func (c *liteConn) post(ctx context.Context, url, offer string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(offer))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/sdp")
	start := time.Now()
	resp, err := c.http.Do(req)
	c.v.postAt, c.v.answerAt = start, time.Now()
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	loc, err := resp.Location()
	if err != nil {
		return "", fmt.Errorf("answer without Location: %w", err)
	}
	if h := loc.Hostname(); parseIP(h) == nil || !parseIP(h).IsLoopback() {
		return "", fmt.Errorf("session resource %s is not on a loopback address", loc)
	}
	c.resource = loc.String()
	return string(body), nil
}

// connectICE sends checks (with USE-CANDIDATE: the client is the
// controlling agent and nominates the first pair that works) to every
// candidate until one answers. The server's own checks are answered by
// the reader meanwhile.
func (c *liteConn) connectICE(ctx context.Context) error {
	a := c.ans.Load()
	t := time.NewTicker(liteCheckInterval)
	defer t.Stop()
	for {
		for _, to := range a.cands {
			c.sendCheck(a, to, true)
		}
		select {
		case <-c.iceOK:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("ICE: no answer to checks within %v", c.v.b.cfg.connectTimeout)
		case <-t.C:
		}
	}
}

func (c *liteConn) sendCheck(a *liteAnswer, to netip.AddrPort, nominate bool) {
	setters := []stun.Setter{
		stun.TransactionID, stun.BindingRequest,
		stun.NewUsername(a.ufrag + ":" + c.localUfrag),
		ice.AttrControlling(c.tieBreaker), ice.PriorityAttr(litePriority),
	}
	if nominate {
		setters = append(setters, ice.UseCandidate())
	}
	setters = append(setters, stun.NewShortTermIntegrity(a.pwd), stun.Fingerprint)
	m, err := stun.Build(setters...)
	if err != nil {
		return
	}
	_, _ = c.sock.WriteToUDPAddrPort(m.Raw, to)
}

// handshake runs DTLS in the role the answer left to the client, checks
// the server's certificate against the answer's fingerprint, and sets up
// SRTP. The first receiver report goes out at once: the gateway keeps a
// viewer's DTLS state until its first SRTCP.
func (c *liteConn) handshake(ctx context.Context, cert tls.Certificate) error {
	a := c.ans.Load()
	remote := net.UDPAddrFromAddrPort(*c.remote.Load())
	cfg := &dtls.Config{
		Certificates:           []tls.Certificate{cert},
		InsecureSkipVerify:     true, // self-signed: the fingerprint is the check
		ClientAuth:             dtls.RequireAnyClientCert,
		SRTPProtectionProfiles: []dtls.SRTPProtectionProfile{dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80},
		ExtendedMasterSecret:   dtls.RequestExtendedMasterSecret,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("no certificate")
			}
			sum := sha256.Sum256(raw[0])
			for _, fp := range a.fingerprints {
				if bytes.Equal(fp, sum[:]) {
					return nil
				}
			}
			return errors.New("certificate does not match the answer's fingerprint")
		},
	}
	var (
		dc  *dtls.Conn
		err error
	)
	if a.dtlsServer {
		dc, err = dtls.Server(c.dtlsPC, remote, cfg)
	} else {
		dc, err = dtls.Client(c.dtlsPC, remote, cfg)
	}
	if err != nil {
		return fmt.Errorf("DTLS: %w", err)
	}
	c.dc = dc
	if err := dc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("DTLS handshake: %w", err)
	}
	state, ok := dc.ConnectionState()
	if !ok {
		return errors.New("DTLS: no connection state")
	}
	sp, ok := dc.SelectedSRTPProtectionProfile()
	if !ok {
		return errors.New("DTLS: no SRTP profile negotiated")
	}
	var profile srtp.ProtectionProfile
	switch sp {
	case dtls.SRTP_AEAD_AES_128_GCM:
		profile = srtp.ProtectionProfileAeadAes128Gcm
	case dtls.SRTP_AES128_CM_HMAC_SHA1_80:
		profile = srtp.ProtectionProfileAes128CmHmacSha1_80
	default:
		return fmt.Errorf("DTLS: unexpected SRTP profile %v", sp)
	}
	keys := srtp.Config{Profile: profile}
	if err := keys.ExtractSessionKeysFromDTLS(&state, !a.dtlsServer); err != nil {
		return fmt.Errorf("SRTP keys: %w", err)
	}
	window := c.v.b.cfg.replayWindow
	if window == 0 {
		window = 1024
	}
	rx, err := srtp.CreateContext(keys.Keys.RemoteMasterKey, keys.Keys.RemoteMasterSalt, profile,
		srtp.SRTPReplayProtection(window))
	if err != nil {
		return fmt.Errorf("SRTP: %w", err)
	}
	c.tx, err = srtp.CreateContext(keys.Keys.LocalMasterKey, keys.Keys.LocalMasterSalt, profile)
	if err != nil {
		return fmt.Errorf("SRTCP: %w", err)
	}
	c.rx.Store(rx)
	c.sendRTCP([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: c.ssrc}})
	// From here on tx belongs to the reader.
	c.ready.Store(true)
	return nil
}

// sendRTCP encrypts and sends RTCP to the nominated remote.
func (c *liteConn) sendRTCP(pkts []rtcp.Packet) {
	raw, err := rtcp.Marshal(pkts)
	if err != nil {
		return
	}
	enc, err := c.tx.EncryptRTCP(nil, raw, nil)
	if err != nil {
		return
	}
	if to := c.remote.Load(); to != nil {
		_, _ = c.sock.WriteToUDPAddrPort(enc, *to)
	}
}

// up reports whether the session still looks alive: not closed, and
// something arrived within the last few seconds.
func (c *liteConn) up() bool {
	return !c.closed.Load() && time.Since(time.Unix(0, c.lastRx.Load())) < 5*time.Second
}

// close ends the session: DELETE, then a DTLS close_notify, then the
// socket (which ends the reader).
func (c *liteConn) close(ctx context.Context) error {
	var err error
	if c.resource != "" {
		err = c.delete(ctx)
	}
	c.closed.Store(true)
	if c.dc != nil {
		_ = c.dc.Close() // close_notify; also closes the packet conn
	}
	c.dtlsPC.Close()
	_ = c.sock.Close()
	return err
}

func (c *liteConn) delete(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, c.resource, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("DELETE: HTTP %d", resp.StatusCode)
	}
	return nil
}

// liteTestDrop, set by tests only, drops video packets (viewer, sequence
// number) as the network would, before decryption.
var liteTestDrop func(viewer int, seq uint16) bool

// liteReader is the reader goroutine's own state.
type liteReader struct {
	c        *liteConn
	h        rtp.Header
	video    videoRx
	vSSRC    uint32
	aSSRC    uint32
	haveV    bool
	haveA    bool
	stun     stun.Message
	nacks    []nackEntry
	early    []earlyPacket // media that arrived before the keys
	nackSeqs []uint16
	// Receiver report state: expected and received at the last report.
	lastExp, lastRecv [2]uint64
	lastReport        time.Time
	lastConsent       time.Time
	nextTick          time.Time
}

type earlyPacket struct {
	p  []byte
	at time.Time
}

type nackEntry struct {
	seq   uint16
	tries uint8
}

// readLoop reads the socket until it is closed: STUN, DTLS (to the
// handshake's queue), SRTP and SRTCP, by first byte (RFC 7983).
func (c *liteConn) readLoop() {
	r := &liteReader{c: c}
	msgs := make([]ipv4.Message, liteBatch)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, liteBufSize)}
		if rxOOBSize > 0 {
			msgs[i].OOB = make([]byte, rxOOBSize)
		}
	}
	counts := &c.v.b.lite
	errorsInARow := 0
	for {
		n, err := c.bpc.ReadBatch(msgs, 0)
		now := time.Now()
		if err != nil {
			if c.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				// Transient errors (an ICMP report, an interrupted
				// call) are retried; a socket that only fails is not.
				if errorsInARow++; errorsInARow > 100 {
					return
				}
				continue
			}
		} else {
			errorsInARow = 0
			c.lastRx.Store(now.UnixNano())
		}
		for i := range n {
			m := &msgs[i]
			if m.Flags&syscall.MSG_TRUNC != 0 || m.N == 0 {
				counts.bad.Add(1)
				continue
			}
			at := now
			if c.kernelTS {
				if ts, ok := rxTimestamp(m.OOB[:m.NN]); ok {
					at = ts
				} else {
					counts.readTS.Add(1)
				}
			} else {
				counts.readTS.Add(1)
			}
			from := addrPort(m.Addr)
			r.datagram(m.Buffers[0][:m.N], from, at)
		}
		if !now.Before(r.nextTick) {
			r.tick(now)
			r.nextTick = now.Add(liteTick)
			_ = c.sock.SetReadDeadline(r.nextTick)
		}
	}
}

func addrPort(a net.Addr) netip.AddrPort {
	if ua, ok := a.(*net.UDPAddr); ok {
		ap := ua.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

func (r *liteReader) datagram(p []byte, from netip.AddrPort, at time.Time) {
	c := r.c
	counts := &c.v.b.lite
	switch b0 := p[0]; {
	case b0 < 4:
		r.onSTUN(p, from)
	case b0 >= 20 && b0 < 64:
		c.dtlsPC.push(p)
	case b0 >= 128 && b0 < 192:
		if len(p) < 12 {
			counts.bad.Add(1)
			return
		}
		if pt := p[1]; pt >= 192 && pt <= 223 {
			return // SRTCP (sender reports): not needed
		}
		r.onRTP(p, at)
	default:
		counts.bad.Add(1)
	}
}

func (r *liteReader) onRTP(p []byte, at time.Time) {
	c := r.c
	counts := &c.v.b.lite
	rx := c.rx.Load()
	if rx == nil {
		// The server's media can overtake the end of the handshake on
		// the client's side: keep it (bounded) for when the keys are set,
		// or the first keyframe would be cut.
		if len(r.early) < liteEarlyMax {
			r.early = append(r.early, earlyPacket{p: bytes.Clone(p), at: at})
		} else {
			counts.early.Add(1)
		}
		return
	}
	r.flushEarly(rx)
	r.decrypt(rx, p, at)
}

// flushEarly handles the media kept from before the keys, in order.
func (r *liteReader) flushEarly(rx *srtp.Context) {
	if r.early == nil {
		return
	}
	early := r.early
	r.early = nil
	for _, e := range early {
		r.decrypt(rx, e.p, e.at)
	}
}

func (r *liteReader) decrypt(rx *srtp.Context, p []byte, at time.Time) {
	c := r.c
	counts := &c.v.b.lite
	a := c.ans.Load()
	hn, ok := rtpHeaderLen(p)
	if !ok {
		counts.bad.Add(1)
		return
	}
	if liteTestDrop != nil && int(p[1]&0x7f) == a.videoPT && liteTestDrop(c.v.id, binary.BigEndian.Uint16(p[2:])) {
		return
	}
	// In place: the buffer is the reader's and is reused after this.
	out, err := rx.DecryptRTP(p, p, &r.h)
	if err != nil || hn > len(out) {
		counts.srtp.Add(1)
		return
	}
	switch int(r.h.PayloadType) {
	case a.videoPT:
		r.vSSRC, r.haveV = r.h.SSRC, true
		gap := c.v.onVideo(&r.video, &r.h, rtpPayload(out, &r.h, hn), at)
		if gap > 0 && c.v.b.cfg.nack {
			r.addNACKs(r.h.SequenceNumber, gap)
		}
	case a.audioPT:
		r.aSSRC, r.haveA = r.h.SSRC, true
		c.v.onAudio(&r.h)
	default:
		counts.bad.Add(1)
	}
}

// rtpHeaderLen is the length of an RTP packet's header (fixed part,
// CSRCs, extension), false if the packet is shorter.
func rtpHeaderLen(p []byte) (int, bool) {
	if len(p) < 12 {
		return 0, false
	}
	n := 12 + 4*int(p[0]&0x0f)
	if p[0]&0x10 != 0 {
		if len(p) < n+4 {
			return 0, false
		}
		n += 4 + 4*int(binary.BigEndian.Uint16(p[n+2:]))
	}
	return n, n <= len(p)
}

// addNACKs records the gap before seq for repair, bounded: when the list
// is full the oldest go first.
func (r *liteReader) addNACKs(seq uint16, gap int) {
	gap = min(gap, liteMaxNACKs)
	for i := gap; i >= 1; i-- {
		if len(r.nacks) == liteMaxNACKs {
			r.nacks = r.nacks[:copy(r.nacks, r.nacks[1:])]
		}
		r.nacks = append(r.nacks, nackEntry{seq: seq - uint16(i)})
	}
}

// onSTUN handles the server's checks (answered with the local password)
// and the answers to the client's own (checked with the remote one).
func (r *liteReader) onSTUN(p []byte, from netip.AddrPort) {
	c := r.c
	m := &r.stun
	m.Raw = append(m.Raw[:0], p...)
	if err := m.Decode(); err != nil {
		c.v.b.lite.bad.Add(1)
		return
	}
	switch m.Type {
	case stun.BindingRequest:
		var user stun.Username
		if err := user.GetFrom(m); err != nil || !strings.HasPrefix(string(user), c.localUfrag+":") {
			return
		}
		if err := stun.NewShortTermIntegrity(c.localPwd).Check(m); err != nil {
			return
		}
		resp, err := stun.Build(stun.NewTransactionIDSetter(m.TransactionID), stun.BindingSuccess,
			&stun.XORMappedAddress{IP: from.Addr().AsSlice(), Port: int(from.Port())},
			stun.NewShortTermIntegrity(c.localPwd), stun.Fingerprint)
		if err == nil {
			_, _ = c.sock.WriteToUDPAddrPort(resp.Raw, from)
		}
	case stun.BindingSuccess:
		a := c.ans.Load()
		if a == nil {
			return
		}
		if err := stun.NewShortTermIntegrity(a.pwd).Check(m); err != nil {
			return
		}
		c.iceOnce.Do(func() {
			c.remote.Store(&from)
			close(c.iceOK)
		})
	}
}

// tick runs the timers: NACKs for what is still missing, a receiver
// report a second, consent every few seconds.
func (r *liteReader) tick(now time.Time) {
	c := r.c
	if !c.ready.Load() {
		return
	}
	r.flushEarly(c.rx.Load())
	if r.lastReport.IsZero() {
		r.lastReport, r.lastConsent = now, now
	}
	// A compound packet starts with the report; a NACK alone is a
	// reduced-size packet (rtcp-rsize is offered).
	var pkts []rtcp.Packet
	if now.Sub(r.lastReport) >= liteReportInterval {
		r.lastReport = now
		pkts = append(pkts, r.receiverReport())
	}
	if len(r.nacks) > 0 && r.haveV {
		if p := r.nackPacket(); p != nil {
			pkts = append(pkts, p)
		}
	}
	if len(pkts) > 0 {
		c.sendRTCP(pkts)
	}
	if now.Sub(r.lastConsent) >= liteConsent {
		r.lastConsent = now
		if to := c.remote.Load(); to != nil {
			c.sendCheck(c.ans.Load(), *to, false)
		}
	}
}

// nackPacket is a generic NACK for the sequence numbers still missing;
// each is asked for at most liteMaxNACKTries times.
func (r *liteReader) nackPacket() rtcp.Packet {
	v := r.c.v
	r.nackSeqs = r.nackSeqs[:0]
	keep := r.nacks[:0]
	v.mu.Lock()
	for _, e := range r.nacks {
		if v.st.video.has(e.seq) || e.tries >= liteMaxNACKTries {
			continue
		}
		e.tries++
		r.nackSeqs = append(r.nackSeqs, e.seq)
		keep = append(keep, e)
	}
	v.mu.Unlock()
	r.nacks = keep
	if len(r.nackSeqs) == 0 {
		return nil
	}
	v.b.nacked.Add(uint64(len(r.nackSeqs)))
	return &rtcp.TransportLayerNack{SenderSSRC: r.c.ssrc, MediaSSRC: r.vSSRC,
		Nacks: rtcp.NackPairsFromSequenceNumbers(r.nackSeqs)}
}

// receiverReport reports loss per stream from the viewer's own counts.
func (r *liteReader) receiverReport() rtcp.Packet {
	v := r.c.v
	rr := &rtcp.ReceiverReport{SSRC: r.c.ssrc}
	v.mu.Lock()
	for i, s := range []struct {
		have bool
		ssrc uint32
		t    *seqTracker
	}{{r.haveV, r.vSSRC, &v.st.video}, {r.haveA, r.aSSRC, &v.st.audio}} {
		if !s.have || !s.t.started {
			continue
		}
		exp, recv := s.t.expected(), s.t.received
		dExp, dRecv := exp-r.lastExp[i], recv-r.lastRecv[i]
		r.lastExp[i], r.lastRecv[i] = exp, recv
		var frac uint8
		if dExp > dRecv && dExp > 0 {
			frac = uint8(min(255, (dExp-dRecv)*256/dExp))
		}
		rr.Reports = append(rr.Reports, rtcp.ReceptionReport{
			SSRC: s.ssrc, FractionLost: frac, TotalLost: uint32(min(s.t.lost(), 1<<23-1)),
			LastSequenceNumber: uint32(s.t.highest - 1<<16),
		})
	}
	v.mu.Unlock()
	return rr
}

// dtlsPacketConn is the DTLS side of the socket: the reader pushes DTLS
// datagrams into a bounded queue, pion/dtls reads them from here and
// writes straight to the socket.
type dtlsPacketConn struct {
	c      *liteConn
	in     chan []byte
	closed chan struct{}
	once   sync.Once

	mu       sync.Mutex
	deadline time.Time
	wake     chan struct{} // closed when the deadline changes
}

func newDTLSPacketConn(c *liteConn) *dtlsPacketConn {
	return &dtlsPacketConn{c: c, in: make(chan []byte, liteDTLSQueue), closed: make(chan struct{}), wake: make(chan struct{})}
}

func (d *dtlsPacketConn) push(p []byte) {
	select {
	case d.in <- bytes.Clone(p):
	default:
		d.c.v.b.lite.dtlsDrop.Add(1)
	}
}

func (d *dtlsPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		d.mu.Lock()
		deadline, wake := d.deadline, d.wake
		d.mu.Unlock()
		var (
			expired <-chan time.Time
			t       *time.Timer
		)
		if !deadline.IsZero() {
			wait := time.Until(deadline)
			if wait <= 0 {
				return 0, nil, os.ErrDeadlineExceeded
			}
			t = time.NewTimer(wait)
			expired = t.C
		}
		select {
		case b := <-d.in:
			stop(t)
			var from net.Addr
			if ap := d.c.remote.Load(); ap != nil {
				from = net.UDPAddrFromAddrPort(*ap)
			}
			return copy(p, b), from, nil
		case <-d.closed:
			stop(t)
			return 0, nil, net.ErrClosed
		case <-expired:
			return 0, nil, os.ErrDeadlineExceeded
		case <-wake:
			stop(t)
		}
	}
}

func stop(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}

func (d *dtlsPacketConn) WriteTo(p []byte, _ net.Addr) (int, error) {
	select {
	case <-d.closed:
		return 0, net.ErrClosed
	default:
	}
	ap := d.c.remote.Load()
	if ap == nil {
		return 0, errors.New("no ICE path yet")
	}
	return d.c.sock.WriteToUDPAddrPort(p, *ap)
}

func (d *dtlsPacketConn) Close() error {
	d.once.Do(func() { close(d.closed) })
	return nil
}

func (d *dtlsPacketConn) LocalAddr() net.Addr { return d.c.sock.LocalAddr() }

func (d *dtlsPacketConn) SetDeadline(t time.Time) error { return d.SetReadDeadline(t) }

func (d *dtlsPacketConn) SetReadDeadline(t time.Time) error {
	d.mu.Lock()
	d.deadline = t
	close(d.wake)
	d.wake = make(chan struct{})
	d.mu.Unlock()
	return nil
}

func (d *dtlsPacketConn) SetWriteDeadline(time.Time) error { return nil }

// randICE is a random ICE ufrag or password (ice-char: ALPHA / DIGIT).
func randICE(n int) string {
	const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = chars[int(b[i])%len(chars)]
	}
	return string(b)
}

func randUint64() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:])
}

// colonHex is a fingerprint as SDP writes it: upper-case hex pairs
// separated by colons.
func colonHex(b []byte) string {
	s := strings.ToUpper(hex.EncodeToString(b))
	var out strings.Builder
	for i := 0; i < len(s); i += 2 {
		if i > 0 {
			out.WriteByte(':')
		}
		out.WriteString(s[i : i+2])
	}
	return out.String()
}
