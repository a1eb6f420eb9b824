// Package lite is livegate's own transport for WebRTC viewers: once an
// answer is sent, a viewer is a small Peer on the shared UDP port instead of
// a pion PeerConnection. It is ICE-lite (it answers STUN binding requests,
// including consent freshness, and never sends checks of its own), a DTLS
// server (pion/dtls) over a per-peer packet conn demultiplexed from the
// shared socket, and SRTP/SRTCP contexts (pion/srtp) used directly, without
// an interceptor chain. The fan-out writes into per-worker batches that go
// out with one sendmmsg per packet for all of a worker's viewers.
//
// Packets for pion's sessions (publishers, relay links, viewers on the pion
// fallback) pass through untouched: the transport wraps the shared socket
// that pion's UDP mux reads, and keeps only what belongs to its peers.
package lite

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/pion/stun/v4"
)

// Params configures a Transport.
type Params struct {
	// Conn is the shared UDP socket (also read by pion's UDP mux through
	// PacketConn).
	Conn *net.UDPConn
	// ConsentTimeout ends a peer that sent no valid STUN binding request
	// for this long (RFC 7675 consent freshness; default 15 s: browsers
	// refresh every 5 s or so).
	ConsentTimeout time.Duration
	// HandshakeTimeout bounds ICE plus DTLS after the answer (default 15 s).
	HandshakeTimeout time.Duration
	Logger           *slog.Logger
}

// Transport owns the lite peers on one shared UDP socket.
type Transport struct {
	p      Params
	conn   *net.UDPConn
	cert   tls.Certificate
	fp     string // SHA-256 fingerprint of cert, SDP form
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.RWMutex
	byUfrag map[string]*Peer
	byAddr  map[netip.AddrPort]*Peer
	peers   map[*Peer]struct{}

	batches batches
	tcp     atomic.Bool // WrapTCP was called
}

// New starts a transport on p.Conn. Close stops it (the socket stays open:
// its owner closes it).
func New(p Params) (*Transport, error) {
	if p.Conn == nil {
		return nil, errors.New("lite: no UDP socket")
	}
	if p.ConsentTimeout <= 0 {
		p.ConsentTimeout = 15 * time.Second
	}
	if p.HandshakeTimeout <= 0 {
		p.HandshakeTimeout = 15 * time.Second
	}
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	// One certificate for every peer: its fingerprint is in each answer,
	// and a fresh key per viewer would only cost a key generation each.
	cert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		return nil, fmt.Errorf("lite: certificate: %w", err)
	}
	sum := sha256.Sum256(cert.Certificate[0])
	ctx, cancel := context.WithCancel(context.Background())
	t := &Transport{
		p: p, conn: p.Conn, cert: cert, fp: colonHex(sum[:]), ctx: ctx, cancel: cancel,
		byUfrag: map[string]*Peer{}, byAddr: map[netip.AddrPort]*Peer{}, peers: map[*Peer]struct{}{},
	}
	t.batches.init(p.Conn)
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		t.sweep()
	}()
	return t, nil
}

// Fingerprint is the sha-256 fingerprint of the DTLS certificate, as in
// an SDP a=fingerprint line after "sha-256 ".
func (t *Transport) Fingerprint() string { return t.fp }

// LocalAddr is the shared socket's address.
func (t *Transport) LocalAddr() *net.UDPAddr { return t.conn.LocalAddr().(*net.UDPAddr) }

// Close ends every peer and stops the transport.
func (t *Transport) Close() {
	// Cancelled under mu: spawn checks ctx under mu before wg.Add, so no
	// goroutine is added once Wait below may be waiting.
	t.mu.Lock()
	t.cancel()
	t.mu.Unlock()
	t.mu.RLock()
	list := make([]*Peer, 0, len(t.peers))
	for p := range t.peers {
		list = append(list, p)
	}
	t.mu.RUnlock()
	for _, p := range list {
		p.Close()
	}
	t.wg.Wait()
}

// spawn runs f on a goroutine that Close waits for, or reports false
// (and f does not run) once Close has begun.
func (t *Transport) spawn(f func()) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.ctx.Err() != nil {
		return false
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		f()
	}()
	return true
}

// Peers is the number of live peers.
func (t *Transport) Peers() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.peers)
}

// sweep ends peers whose consent expired or whose handshake took too long,
// and releases the DTLS servers of connected peers (Peer.release).
// One goroutine for all peers: a per-peer timer would cost a goroutine
// wake-up each.
func (t *Transport) sweep() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var expired, release []*Peer
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now().UnixNano()
		expired, release = expired[:0], release[:0]
		t.mu.RLock()
		for p := range t.peers {
			if why := p.expired(now); why != "" {
				p.endReason.CompareAndSwap(nil, &why)
				expired = append(expired, p)
			} else if p.releasable(now) {
				release = append(release, p)
			}
		}
		t.mu.RUnlock()
		for _, p := range expired {
			p.Close()
		}
		for _, p := range release {
			p.release()
		}
		clear(expired)
		clear(release)
	}
}

func (t *Transport) register(p *Peer) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ctx.Err() != nil {
		return errors.New("lite: transport closed")
	}
	if _, dup := t.byUfrag[p.ice.Load().localUfrag]; dup {
		return errors.New("lite: ufrag collision")
	}
	t.byUfrag[p.ice.Load().localUfrag] = p
	t.peers[p] = struct{}{}
	return nil
}

func (t *Transport) unregister(p *Peer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.peers, p)
	for u, q := range t.byUfrag {
		if q == p {
			delete(t.byUfrag, u)
		}
	}
	for a, q := range t.byAddr {
		if q == p {
			delete(t.byAddr, a)
		}
	}
}

// restartICE moves p to new local credentials (an ICE restart): the old
// ufrag stops being answered.
func (t *Transport) restartICE(p *Peer, old, creds *iceCreds) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, dup := t.byUfrag[creds.localUfrag]; dup {
		return errors.New("lite: ufrag collision")
	}
	delete(t.byUfrag, old.localUfrag)
	t.byUfrag[creds.localUfrag] = p
	p.ice.Store(creds)
	return nil
}

// learn routes packets from addr to p (a remote candidate that passed a
// connectivity check).
func (t *Transport) learn(p *Peer, addr netip.AddrPort) {
	t.mu.RLock()
	q := t.byAddr[addr]
	t.mu.RUnlock()
	if q == p {
		return
	}
	t.mu.Lock()
	if _, live := t.peers[p]; live {
		t.byAddr[addr] = p
	}
	t.mu.Unlock()
}

// handle takes a datagram read from the shared socket if it belongs to a
// lite peer; false leaves it to pion.
func (t *Transport) handle(b []byte, from netip.AddrPort) bool {
	if len(b) == 0 {
		return false
	}
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	if b[0] < 4 { // RFC 7983: STUN
		return t.handleSTUN(b, from)
	}
	t.mu.RLock()
	p := t.byAddr[from]
	t.mu.RUnlock()
	if p == nil {
		return false
	}
	p.onPacket(b, from)
	return true
}

func (t *Transport) handleSTUN(b []byte, from netip.AddrPort) bool {
	if !stun.IsMessage(b) {
		return false
	}
	m := &stun.Message{Raw: b}
	if err := m.Decode(); err != nil {
		return false
	}
	if m.Type != stun.BindingRequest {
		// Indications (keepalives) and answers to our nudges (see
		// Peer.nudge) from a known address are ours.
		t.mu.RLock()
		p := t.byAddr[from]
		t.mu.RUnlock()
		return p != nil
	}
	var user stun.Username
	if err := user.GetFrom(m); err != nil {
		return false
	}
	local, _, ok := strings.Cut(string(user), ":")
	if !ok {
		return false
	}
	t.mu.RLock()
	p := t.byUfrag[local]
	t.mu.RUnlock()
	if p == nil {
		return false
	}
	p.onBinding(m, from, nil)
	return true
}

// PacketConn is the shared socket as pion's UDP mux must see it: reads
// skip the datagrams of lite peers.
func (t *Transport) PacketConn() net.PacketConn { return &demuxConn{t: t, UDPConn: t.conn} }

// demuxConn filters the shared socket for pion. It implements pion's
// AddrPortReaderWriter so the mux keeps its allocation-free reads.
type demuxConn struct {
	t *Transport
	*net.UDPConn
}

func (c *demuxConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	for {
		n, addr, err := c.UDPConn.ReadFromUDPAddrPort(b)
		if err != nil {
			return n, addr, err
		}
		if !c.t.handle(b[:n], addr) {
			return n, addr, nil
		}
	}
}

func (c *demuxConn) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	return c.UDPConn.WriteToUDPAddrPort(b, addr)
}

func (c *demuxConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, addr, err := c.ReadFromAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(addr), nil
}

func colonHex(b []byte) string {
	const hexd = "0123456789ABCDEF"
	var s strings.Builder
	for i, c := range b {
		if i > 0 {
			s.WriteByte(':')
		}
		s.WriteByte(hexd[c>>4])
		s.WriteByte(hexd[c&15])
	}
	return s.String()
}

// ServesTCP reports whether the transport takes ICE-TCP connections (see
// WrapTCP).
func (t *Transport) ServesTCP() bool { return t.tcp.Load() }
