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
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/pion/ice/v4"
	"github.com/pion/rtcp"
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
